// Package bootstrap holds the JavaScript that runs first in every function
// instance's node process, embedded in the shoal binary. The bootstrap loads
// the user's bundle, serves its handler (Node style handler(req, res) with
// Vercel's request and response helpers, Web style fetch(request, ctx), named
// method exports, or a server or app) over HTTP/1.1 on a unix socket, runs each
// invocation in its own AsyncLocalStorage context, and reports readiness,
// load errors and every log line (tagged with its invocation id) as
// newline-delimited JSON on fd 3.
//
// The runtime starts it as
//
//	node BOOTSTRAP_PATH SOCKET_PATH BUNDLE_PATH [OPTIONS_JSON]
//
// with the deployment folder as working directory, the write end of a pipe
// as fd 3 and, when OPTIONS_JSON names it, the read end of a command pipe on
// which the runtime asks for more event loops (worker threads, each serving
// on a socket of its own). The full contract is the comment at the top of
// bootstrap.mjs.
package bootstrap

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
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
	// TypeConfig carries, with --check, the bundle's `config` export as
	// JSON in Msg.
	TypeConfig = "config"
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
	if err := writeWhole(path, Source); err != nil {
		return "", fmt.Errorf("write bootstrap %s: %w", path, err)
	}
	return path, nil
}

// WriteCodeCache writes data as bundle's code cache (CodeCache), whole, as
// Write does: instances may be reading the one there.
func WriteCodeCache(bundle string, data []byte) error {
	return writeWhole(CodeCache(bundle), data)
}

// writeWhole writes data to a temporary file beside path, mode 0o644, and
// renames it to path.
func writeWhole(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
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
	}
	return err
}

// CheckError is what Check found wrong with a bundle: it does not load, or
// it exports nothing that can serve requests.
type CheckError struct{ Msg string }

func (e *CheckError) Error() string { return e.Msg }

// CodeCache is where the V8 code cache of a CommonJS bundle is: beside it.
// The deploy's check makes it (Checked.CodeCache) and instances read it;
// V8 takes it only from a node of the same version with the same flags
// (NodeFlags), and compiles the bundle itself otherwise.
func CodeCache(bundle string) string { return bundle + ".v8cache" }

// NodeFlags are node's flags, before the bootstrap's path, for an instance
// of memoryMB (0: node's defaults): its heap gets three quarters of it.
func NodeFlags(memoryMB int) []string {
	if memoryMB <= 0 {
		return nil
	}
	return []string{"--max-old-space-size=" + strconv.Itoa(memoryMB*3/4)}
}

// Checked is what Check found in a bundle that can serve.
type Checked struct {
	// Config is the bundle's `config` export as JSON, nil when it has none.
	Config json.RawMessage
	// CodeCache is V8's code cache for a CommonJS bundle, made by a node
	// with the flags of an instance of the memory checked with, after the
	// bundle loaded; nil for an ES module bundle.
	CodeCache []byte
}

// Check loads bundle in a node process the way an instance of memoryMB
// would, finds its handler and exits, without serving: a *CheckError says
// why the bundle could not serve. The bundle's top-level code runs, with
// env as its environment and dir as its working directory; scratch is a
// folder for the bootstrap file and the code cache. node is the node
// binary ("node" when empty).
func Check(ctx context.Context, node, bundle, dir, scratch string, env []string, memoryMB int) (Checked, error) {
	return CheckAs(ctx, node, bundle, dir, scratch, env, memoryMB, 0)
}

// CheckAs is Check with node running as uid (and gid) uid, when not 0.
func CheckAs(ctx context.Context, node, bundle, dir, scratch string, env []string, memoryMB, uid int) (Checked, error) {
	if node == "" {
		node = "node"
	}
	boot, err := Write(scratch)
	if err != nil {
		return Checked{}, err
	}
	cache := filepath.Join(scratch, "code-cache")
	os.Remove(cache)
	opts, err := json.Marshal(map[string]string{"codeCache": cache})
	if err != nil {
		return Checked{}, err
	}
	cmd := exec.CommandContext(ctx, node, append(NodeFlags(memoryMB), boot, "--check", bundle, string(opts))...)
	cmd.Dir = dir
	cmd.Env = env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	if uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}}
	}
	cmd.Cancel = func() error { return cmd.Process.Kill() }
	cmd.WaitDelay = time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	runErr := cmd.Run()
	if ctx.Err() != nil {
		return Checked{}, &CheckError{Msg: "loading the bundle did not finish in time"}
	}
	// Without fd 3 the control messages come on stderr, among what the
	// bundle wrote there: the error or the config is the last.
	var out Checked
	for _, line := range slices.Backward(bytes.Split(stderr.Bytes(), []byte("\n"))) {
		var m Message
		if json.Unmarshal(line, &m) != nil {
			continue
		}
		if m.Type == TypeError && runErr != nil {
			return Checked{}, &CheckError{Msg: m.Msg}
		}
		if m.Type == TypeConfig && runErr == nil {
			out.Config = json.RawMessage(m.Msg)
			break
		}
	}
	if runErr != nil {
		return Checked{}, fmt.Errorf("check bundle %s: %v: %s", bundle, runErr, bytes.TrimSpace(stderr.Bytes()))
	}
	if out.CodeCache, err = os.ReadFile(cache); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Checked{}, fmt.Errorf("check bundle %s: %w", bundle, err)
	}
	os.Remove(cache)
	return out, nil
}
