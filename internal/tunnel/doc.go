// Package tunnel is the link between the invoker and an instance's runtime.
//
// The instance dials the invoker's internal listener, proves who it is with
// a one-time token, and then the connection is turned around: the invoker
// is the HTTP/2 client and the runtime the HTTP/2 server, one stream per
// invocation. HTTP/2 (golang.org/x/net/http2) gives multiplexing, flow
// control, streamed bodies and cancellation by stream reset; this package
// adds only the handshake. The wire format is in PROTOCOL.md.
package tunnel
