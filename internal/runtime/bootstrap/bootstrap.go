// Package bootstrap holds the JavaScript that runs first in every function
// instance's node process, embedded in the shoal binary. The bootstrap loads
// the user's bundle, serves its handler (Node style handler(req, res) or Web
// style fetch(request, ctx)) over HTTP/1.1 on a unix socket, runs each
// invocation in its own AsyncLocalStorage context, and reports readiness,
// load errors and every log line (tagged with its invocation id) as
// newline-delimited JSON on fd 3.
//
// The runtime starts it as
//
//	node --enable-source-maps BOOTSTRAP_PATH SOCKET_PATH BUNDLE_PATH
//
// with the bundle's folder as working directory and the write end of a pipe
// as fd 3. The full contract is the comment at the top of bootstrap.mjs.
package bootstrap

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
)

// Source is the bootstrap, an ES module for Node.js 20 or later that imports
// only node built-ins.
//
//go:embed bootstrap.mjs
var Source []byte

// FileName is the name Write gives the bootstrap in its folder.
const FileName = "bootstrap.mjs"

// Headers and error codes shared with the runtime.
const (
	// HeaderID carries the invocation id on every request to node.
	HeaderID = "x-shoal-id"
	// HeaderError is set on the responses the bootstrap writes itself.
	HeaderError = "x-shoal-error"
	// CodeInvocationFailed (status 500): the handler threw, its promise
	// rejected, or an uncaught exception happened in its context before it
	// responded.
	CodeInvocationFailed = "FUNCTION_INVOCATION_FAILED"
	// CodeNoResponse (status 502): the handler finished without responding.
	CodeNoResponse = "NO_RESPONSE_FROM_FUNCTION"
)

// Control message types written on fd 3.
const (
	TypeReady = "ready" // the server listens on the socket
	TypeError = "error" // the bundle could not be loaded or served; node exits 1
	TypeLog   = "log"   // one line of output
)

// Log streams of a TypeLog message.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
)

// Message is one line of the control pipe.
type Message struct {
	// Type is TypeReady, TypeError or TypeLog.
	Type string `json:"type"`
	// Msg is the error text (TypeError) or the line, without its newline
	// (TypeLog).
	Msg string `json:"msg,omitempty"`
	// ID is the invocation id of a log line; empty outside an invocation.
	ID string `json:"id,omitempty"`
	// Stream is StreamStdout or StreamStderr for a log line.
	Stream string `json:"stream,omitempty"`
	// TS is when the line was written, in milliseconds since the Unix epoch.
	TS int64 `json:"ts,omitempty"`
}

// Write writes Source to dir/bootstrap.mjs with mode 0o644 and returns that
// path. It writes a temporary file and renames it, so a node process that is
// starting from the same path never reads a partial file.
func Write(dir string) (string, error) {
	path := filepath.Join(dir, FileName)
	f, err := os.CreateTemp(dir, ".bootstrap-*.mjs")
	if err != nil {
		return "", fmt.Errorf("write bootstrap: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(Source)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("write bootstrap %s: %w", path, err)
	}
	return path, nil
}
