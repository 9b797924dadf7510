// Package runtime is the supervisor that runs inside an instance's sandbox.
//
// It starts node with the embedded bootstrap and the deployment's bundle,
// passes each invocation to node over HTTP/1.1 on a unix socket (one per
// event loop, when the invoker asks for more loops: SetLoops), enforces
// each invocation's deadline, watches node (exit, startup failure) and turns
// what node writes into tagged log records. It is an http.Handler; the
// tunnel package carries invocations to it.
package runtime
