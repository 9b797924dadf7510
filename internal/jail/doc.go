// Package jail is the part of an instance's sandbox that runs inside it.
// serve starts the runtime in new user, mount, pid, ipc, uts and cgroup
// namespaces (package sandbox); the runtime then calls Prepare and Enter,
// which build the filesystem node sees (the system read-only, the
// deployment read-only, a private /tmp, a fresh /proc, nothing else of the
// host), and Lock, which sets no_new_privs, Landlock and a seccomp filter
// that node inherits. Prepare does the part that is the same for every
// instance, so a spare runtime does it before it knows its instance;
// Receive then waits for what serve hands over.
//
// The files serve hands over come on an inherited socket with a fixed
// number (FdSetup), so that nothing inside needs a path to the host's data
// folder.
package jail
