// Package tunnel is the link between the invoker and an instance's runtime.
//
// The instance dials the invoker's internal listener, proves who it is with
// a one-time token (or is handed one end of a socket pair), and then the
// connection is turned around: the invoker is the HTTP/2 client and the
// runtime the HTTP/2 server. It carries the instance's control: its stream
// of reports, requests for more event loops, and its end (GOAWAY when node
// exits). Invocations do not pass through it: they go to node's sockets
// (package nodelink). HTTP/2 (golang.org/x/net/http2) gives the streams;
// this package adds only the handshake. The wire format is in PROTOCOL.md.
package tunnel
