// Package server is the composition root of `shoal serve`: it opens the
// store, the tunnel listener, the sandbox, the invoker, the log collector,
// the control API and the gateway, wires them together and runs them until
// its context ends, then shuts them down in order.
package server
