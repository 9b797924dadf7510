// Package metering turns what the invoker saw (each invocation's start,
// first byte and end, each instance's start and stop) into what a function
// cost over any window:
//
//   - instance GB-s: instance busy time (at least one invocation in flight)
//     × memory, what an in-function-concurrency platform bills;
//   - provisioned GB-s: instance lifetime × memory, what the host held;
//   - classic GB-s: Σ invocation duration × memory, what one invocation
//     per instance would bill;
//   - savings: 1 − instance/classic.
//
// Busy time is not counted separately: it is the union of an instance's
// invocation intervals, so the figures follow from the records alone and
// overlapping invocations are counted once. Every figure is clipped to the
// window asked for. Records live in memory and start anew with serve.
package metering
