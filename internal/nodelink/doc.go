// Package nodelink is the invoker's HTTP/1.1 client to one instance's node
// process: each invocation goes straight to node over a connection to one
// of its event loops, with no process between serve and node: a lane, a
// pair of FIFOs, where node takes one (see lane.go), else the loop's unix
// socket.
//
// Connections are pooled per event loop and carry one invocation at a time.
// A connection has no goroutine of its own: the invocation's goroutine
// writes the request and reads the response (a request body is written
// from a goroutine of its own, so that node may answer while it still
// streams in). A watch per client ends an invocation whose deadline passed
// or whose client went away by failing its connection's reads and writes;
// the connection then closes, which node sees as its request ending.
// node's common response, a keep-alive one with a Content-Length, is read
// with a third of http.ReadResponse's allocations; any other by it.
package nodelink
