// Package invoker owns, per deployment, the set of live instances and their
// free slots. It picks an instance for each invocation (the busiest one that
// still has a free slot, so the fewest stay busy), holds invocations in a
// short bounded queue while capacity starts, starts and stops instances as
// the scaler decides, and sends each invocation over the instance's tunnel.
package invoker
