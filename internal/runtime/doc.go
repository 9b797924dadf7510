// Package runtime is the supervisor that runs inside an instance's sandbox.
//
// It starts node with the embedded bootstrap and the deployment's bundle;
// node serves invocations over HTTP/1.1 on a unix socket in the scratch
// folder (one per event loop, when the invoker asks for more loops:
// SetLoops), which serve's invoker reaches directly: no invocation passes
// through the runtime. It watches node (exit, startup failure, load), turns
// what node writes into tagged log records, and samples the instance for
// the reports the tunnel carries.
package runtime
