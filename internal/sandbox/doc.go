// Package sandbox starts and stops instance processes: `shoal runtime`
// started from the same binary, in its own process group, killed with its
// parent (so no instance outlives serve, even when serve is killed), with a
// clean environment that holds no platform secret but its one-time tunnel
// token. It forwards what the runtime writes to a log sink.
//
// It also isolates them, as far as the host allows (New works it out,
// trying each piece for real; Report says what applies):
//
//   - a cgroup per instance (v2 where delegated, else v1): memory, no swap,
//     tasks, CPU weight; its CPU time and peak memory are read back
//     (Process.Counted), and the runtime is handed the file that counts its
//     OOM kills;
//   - new user, mount, pid, ipc, uts and cgroup namespaces, in which the
//     runtime, root there and an unprivileged uid of its project's outside,
//     enters the jail (package jail) before node starts as another uid.
//
// The runtime starts first and waits on a socket while serve makes its
// cgroup and detached mounts, then receives them in one message: the two
// overlap. Better, Config.Spares runtimes are started ahead, before serve
// knows which instance each will be: in their namespaces and cgroup, with
// the part of the jail every instance shares built, they wait on that
// socket; Start hands one the instance (the message then carries its id,
// bundle and environment too), so a cold start skips the process start.
//
// Each instance has a scratch folder (node's sockets are in it) inside
// serve's own, in the temporary folder, which serve holds a lock on while
// it runs: a serve that starts removes those a killed serve left.
package sandbox
