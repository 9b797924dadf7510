// Package limiter decides how many invocations one instance takes at once:
// its concurrency limit, between 1 and the function's max, learned from
// what the instance reports every ~100 ms. It is pure: the invoker feeds it
// signals with their time and applies the limit it returns.
//
// The rule is TCP's congestion control with a delay signal, as in TCP
// Vegas and Netflix's concurrency-limits, but the delay is measured where
// the queue is: node's event loop. Invocations in one process compete for
// nothing but that loop (and memory), so when the loop is free, more
// concurrency costs nothing and only saves instances; when callbacks that
// are ready to run wait for it, every invocation in the process waits too.
//
//   - Congestion: with at least two invocations in flight during the
//     interval, ready callbacks waited for the loop DelayBudget on average
//     while node computed at least QueueCPU of the time. The mean, not the
//     max: one long pause (a garbage collection, one slow callback) is not
//     a queue, and cutting on it only starts instances. A delay while node
//     hardly ran is the machine's doing (node was not scheduled), which
//     fewer invocations per process would not cure, only spread over more
//     processes. The limit drops at once to half of what was really in
//     flight (multiplicative decrease on the actual concurrency, not on a
//     limit that was never reached), and holds for Hold, so the next
//     signals show the new level before it moves again. In an instance's
//     first WarmUp a queue must show on two signals running: its first
//     invocations load what they use (the first fetch() compiles undici,
//     ~100 ms of CPU), a queue that passes and is no level to cut to; cut
//     on it, an I/O-bound function's new instances all started at the
//     cut limit, each queued on its own first fetch(), and a burst piled
//     up instances (15 for what one serves, in CI).
//   - Memory: resident memory at MemoryHigh of the function's size cuts the
//     limit by a quarter, and above MemoryGrow it does not grow.
//   - Growth: only when an invocation found the instance full during the
//     interval (it waited or went to another instance) and the loop had
//     headroom (mean delay under half the budget, busy and node's CPU both
//     under GrowUtilization). The limit grows by one per interval (additive
//     increase) from where it started or was last cut; Relearn after the
//     last congestion it doubles instead (slow start) up to the max, so a
//     function that turned I/O-bound again finds its level fast. A loop
//     with headroom grows its limit even when it was cut before: what
//     held it then has passed.
//
// A new instance starts at the limit its siblings learned (the median of
// theirs), or at the max when there is nothing learned yet: a burst on a
// new function then starts one instance, and the first congestion cuts it.
//
// Loops. An instance may run several event loops (worker threads, up to
// the function's MaxLoops), and the limit above is per loop: the
// instance's is the limit times the loops serving. The signals are read
// per loop: the busiest loop's delay and utilisation, invocations in
// flight spread over the loops, and for growth node's CPU spread over them
// too. A congestion still needs node as a whole to compute QueueCPU: with
// more loops than free CPUs, each loop computes less than that while its
// callbacks queue (tried: per-loop CPU let a CPU-bound function keep two
// invocations per loop on a busy host, p99 1.4-1.7x classic's). When the instance is full, its
// limit was cut by a congestion (or started below the max, learned so)
// and its loop has no headroom, the limiter asks for one more loop
// instead of growing the limit: more
// invocations on a loop would queue behind what holds it, while a new loop
// computes on another core, so it asks only while the host has
// LoopHostIdle of a CPU idle (on a busy host another loop only takes turns
// with the others, and costs switches). It waits for the loop to serve
// before asking for the next, holds for Hold after each, and stops growing
// loops near the memory size (MemoryGrow); loops are not taken back, an
// idle loop costs only memory. A new instance starts with one loop and
// learns its own (starting with its siblings' loops would start them all
// at once, on a host that may have no CPU for them). A function whose loops never queue keeps one. This is
// TCP's idea applied to a second resource: the limit per loop finds what
// one loop takes, the loops how many the work needs; each new loop is a
// second instance's capacity without a second instance's busy time.
//
// Why not a latency gradient (Vegas, Gradient2) on invocation latency:
// invocations of one function differ (routes, inputs, backends), so their
// latency moves for reasons concurrency has nothing to do with, while the
// event loop's delay moves exactly when invocations queue inside the
// process. Why not a fixed CPU threshold alone: a CPU-bound function at
// limit 1 also keeps the loop busy, which is fine; what hurts is a second
// invocation waiting behind the first, which is what the delay with two in
// flight shows.
//
// What one limit per instance cannot do: a function whose routes differ
// (one holds the loop for 50 ms, another waits on I/O) gets one limit for
// both, so an I/O invocation that shares a loop with a CPU-heavy one waits
// for it. Keeping them apart needs placement by route, not a limit.
package limiter
