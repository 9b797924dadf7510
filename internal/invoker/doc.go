// Package invoker owns, per deployment and function, the set of live
// instances and their free slots. It routes each invocation to its function
// (package routes) and to one of the function's two lanes, keeping paths
// that hold the event loop apart from those that wait (lanes.go); picks an
// instance of the lane (the busiest one that still has a free slot, so the
// fewest stay busy); holds invocations in a short bounded queue while
// capacity starts; starts and stops instances as the scaler decides; sends
// each invocation straight to the instance's node (package nodelink), bounded
// by the function's maxDuration, and answers the ones the instance failed
// with a platform error; and reads the instance's reports on its tunnel.
package invoker
