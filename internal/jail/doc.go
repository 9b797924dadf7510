// Package jail is the part of an instance's sandbox that runs inside it.
// serve starts the runtime in new user, mount, pid, ipc, uts and cgroup
// namespaces (package sandbox); the runtime then calls Enter, which builds
// the filesystem node sees (the system read-only, the deployment
// read-only, a private /tmp, a fresh /proc, nothing else of the host), and
// Lock, which sets no_new_privs and a seccomp filter that node inherits.
//
// The files serve hands over are inherited descriptors with fixed numbers
// (FdSync and the rest), so that nothing inside needs a path to the host's
// data folder.
package jail
