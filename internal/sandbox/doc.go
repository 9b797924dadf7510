// Package sandbox starts and stops instance processes: `shoal runtime`
// started from the same binary, in its own process group, killed with its
// parent (so no instance outlives serve, even when serve is killed), with a
// clean environment that holds no platform secret but its one-time tunnel
// token. It forwards what the runtime writes to a log sink.
//
// Isolation today is a process group and a private scratch folder; cgroups
// and namespaces come with the sandbox hardening work.
package sandbox
