// Package bench is `shoal bench`: it measures what in-function concurrency
// saves against the classic model (one invocation per instance) on the same
// traffic. It deploys each workload under workloads/ twice, as bench-NAME
// (concurrency on) and bench-NAME-classic ("concurrency": false), runs a
// backend the workloads call over real sockets, drives open-loop load at a
// set mean rate (Poisson arrivals by default) against both in interleaved
// slices, and reads the GB-s each slice cost from the control API.
package bench
