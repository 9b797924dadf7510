package bootstrap

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	readyTimeout = 10 * time.Second
	logTimeout   = 10 * time.Second
)

// instance is one real node process running the bootstrap on a test bundle.
type instance struct {
	// immutable after start
	cmd      *exec.Cmd
	socket   string
	client   *http.Client
	exited   chan struct{} // closed by the wait goroutine once node is gone
	readDone chan struct{} // closed by the control reader at EOF

	mu       sync.Mutex
	msgs     []Message     // guarded by mu: every control message so far
	changed  chan struct{} // guarded by mu: closed and replaced when msgs grows or at EOF
	eof      bool          // guarded by mu
	exitCode int           // guarded by mu; valid once exited is closed
	output   bytes.Buffer  // guarded by mu: node's own stdout and stderr
}

// lockedWriter appends node's stdout and stderr to inst.output.
type lockedWriter struct{ inst *instance }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.inst.mu.Lock()
	defer w.inst.mu.Unlock()
	return w.inst.output.Write(p)
}

// startNode writes bundle as index.mjs in a fresh folder, starts node on it
// with the bootstrap, and returns without waiting for ready. Cleanup kills
// node and waits for it and for the control reader.
func startNode(t testing.TB, bundle string) *instance {
	t.Helper()
	return startScript(t, "", bundle)
}

// startScript is startNode with script run in place of the bootstrap if it
// is not empty.
func startScript(t testing.TB, script, bundle string) *instance {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	dir := t.TempDir()
	bundlePath := filepath.Join(dir, "index.mjs")
	if err := os.WriteFile(bundlePath, []byte(bundle), 0o644); err != nil {
		t.Fatal(err)
	}
	bootPath, err := Write(dir)
	if err != nil {
		t.Fatalf("Write(%q): %v", dir, err)
	}
	if script != "" {
		bootPath = filepath.Join(dir, "script.mjs")
		if err := os.WriteFile(bootPath, []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Unix socket paths are limited to ~108 bytes; t.TempDir() paths can be longer.
	sockDir, err := os.MkdirTemp("", "shoal-bs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	socket := filepath.Join(sockDir, "node.sock")

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	inst := &instance{
		socket:   socket,
		exited:   make(chan struct{}),
		readDone: make(chan struct{}),
		changed:  make(chan struct{}),
	}
	cmd := exec.Command(node, bootPath, socket, bundlePath)
	cmd.Dir = dir
	cmd.ExtraFiles = []*os.File{w}
	killWithParent(cmd) // a test binary that panics or times out skips Cleanup
	cmd.Stdout = lockedWriter{inst}
	cmd.Stderr = lockedWriter{inst}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		t.Fatalf("start node: %v", err)
	}
	w.Close() // node holds the only write end now
	inst.cmd = cmd

	go inst.readControl(r)
	go func() {
		cmd.Wait()
		inst.mu.Lock()
		inst.exitCode = cmd.ProcessState.ExitCode()
		inst.mu.Unlock()
		close(inst.exited)
	}()

	transport := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConnsPerHost: 100,
		DisableCompression:  true,
	}
	inst.client = &http.Client{Transport: transport}

	t.Cleanup(func() {
		transport.CloseIdleConnections()
		select {
		case <-inst.exited:
		default:
			cmd.Process.Kill()
		}
		for _, ch := range []chan struct{}{inst.exited, inst.readDone} {
			select {
			case <-ch:
			case <-time.After(10 * time.Second):
				t.Errorf("node (pid %d) did not go away after kill", cmd.Process.Pid)
				return
			}
		}
		r.Close()
	})
	return inst
}

// readControl records every control line until EOF.
func (inst *instance) readControl(r io.Reader) {
	defer close(inst.readDone)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var m Message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			m = Message{Type: "unparsable", Msg: sc.Text()}
		}
		inst.mu.Lock()
		inst.msgs = append(inst.msgs, m)
		close(inst.changed)
		inst.changed = make(chan struct{})
		inst.mu.Unlock()
	}
	inst.mu.Lock()
	inst.eof = true
	close(inst.changed)
	inst.changed = make(chan struct{})
	inst.mu.Unlock()
}

// waitFor returns the first control message that matches, waiting up to
// timeout for it. ok is false if none arrived. match sees each message once,
// in order, with inst.mu held: it must not call other methods of inst.
func (inst *instance) waitFor(timeout time.Duration, match func(Message) bool) (m Message, ok bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		inst.mu.Lock()
		for ; seen < len(inst.msgs); seen++ {
			if match(inst.msgs[seen]) {
				m := inst.msgs[seen]
				inst.mu.Unlock()
				return m, true
			}
		}
		eof, changed := inst.eof, inst.changed
		inst.mu.Unlock()
		if eof {
			return Message{}, false
		}
		select {
		case <-changed:
		case <-deadline.C:
			return Message{}, false
		}
	}
}

// messages returns a copy of the control messages so far.
func (inst *instance) messages() []Message {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	return slices.Clone(inst.msgs)
}

func (inst *instance) nodeOutput() string {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	return inst.output.String()
}

// waitLog waits for a log record of invocation id whose text contains substr.
func (inst *instance) waitLog(t testing.TB, id, substr string) Message {
	t.Helper()
	m, ok := inst.waitFor(logTimeout, func(m Message) bool {
		return m.Type == TypeLog && m.ID == id && strings.Contains(m.Msg, substr)
	})
	if !ok {
		t.Fatalf("no log record with id %q containing %q; records: %v", id, substr, inst.messages())
	}
	return m
}

// startReady starts node on bundle and waits for its ready message.
func startReady(t testing.TB, bundle string) *instance {
	t.Helper()
	inst := startNode(t, bundle)
	waitReady(t, inst)
	return inst
}

func waitReady(t testing.TB, inst *instance) {
	t.Helper()
	m, ok := inst.waitFor(readyTimeout, func(m Message) bool { return m.Type == TypeReady || m.Type == TypeError })
	switch {
	case !ok:
		t.Fatalf("node not ready after %v; node output: %s", readyTimeout, inst.nodeOutput())
	case m.Type == TypeError:
		t.Fatalf("node reported an error instead of ready: %s", m.Msg)
	}
}

func (inst *instance) alive() bool {
	select {
	case <-inst.exited:
		return false
	default:
		return true
	}
}

// request is one HTTP exchange with node; the invocation id is id.
type request struct {
	method string
	path   string
	id     string
	body   []byte
}

type response struct {
	status     int
	statusLine string
	header     http.Header
	body       []byte
	bodyErr    error // reading the body failed: the response was cut off
}

func (inst *instance) do(ctx context.Context, r request) (*response, error) {
	method := r.method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://fn.test"+r.path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set(HeaderID, r.id)
	resp, err := inst.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := &response{status: resp.StatusCode, statusLine: resp.Status, header: resp.Header}
	out.body, out.bodyErr = io.ReadAll(resp.Body)
	return out, nil
}

func (inst *instance) mustDo(t testing.TB, r request) *response {
	t.Helper()
	resp, err := inst.do(context.Background(), r)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	return resp
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	for i := range 2 { // the second Write replaces the first file
		path, err := Write(dir)
		if err != nil {
			t.Fatalf("Write #%d: %v", i, err)
		}
		if want := filepath.Join(dir, FileName); path != want {
			t.Errorf("Write #%d path: got %q, want %q", i, path, want)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, Source) {
			t.Errorf("Write #%d: file differs from Source (%d bytes, want %d)", i, len(got), len(Source))
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fi.Mode().Perm(), os.FileMode(0o644); got != want {
			t.Errorf("Write #%d mode: got %v, want %v", i, got, want)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("folder after Write: got %d entries, want 1 (no temporary files left)", len(entries))
	}
	if _, err := Write(filepath.Join(dir, "missing")); err == nil {
		t.Errorf("Write into a missing folder: got nil error, want one")
	}
}

func TestBootstrap_Hello(t *testing.T) {
	tests := []struct {
		name        string
		bundle      string
		method      string // GET if empty
		wantStatus  int
		wantLine    string // resp.Status, if set
		wantBody    string
		wantHeaders map[string][]string
	}{
		{
			name:        "node-function",
			bundle:      `export default (req, res) => { res.setHeader('x-kind', 'node'); res.end('hi ' + req.url); };`,
			wantStatus:  200,
			wantBody:    "hi /a?b=1",
			wantHeaders: map[string][]string{"X-Kind": {"node"}},
		},
		{
			name:       "node-async-function",
			bundle:     `export default async (req, res) => { await null; res.end('hi ' + req.url); };`,
			wantStatus: 200,
			wantBody:   "hi /a?b=1",
		},
		{
			name:       "node-sees-invocation-id",
			bundle:     `export default (req, res) => res.end('hi ' + req.headers['x-shoal-id']);`,
			wantStatus: 200,
			wantBody:   "hi inv-1",
		},
		{
			name:       "nested-default",
			bundle:     `export default { default: { default: (req, res) => res.end('hi ' + req.url) } };`,
			wantStatus: 200,
			wantBody:   "hi /a?b=1",
		},
		{
			name: "web-object",
			bundle: `export default {
				fetch(request) {
					const u = new URL(request.url);
					return new Response('hi ' + u.pathname + u.search + ' ' + request.headers.get('x-shoal-id'), {
						status: 201, statusText: 'Made',
						headers: [['x-kind', 'web'], ['set-cookie', 'a=1; Path=/'], ['set-cookie', 'b=2']],
					});
				},
			};`,
			wantStatus: 201,
			wantLine:   "201 Made",
			wantBody:   "hi /a?b=1 inv-1",
			wantHeaders: map[string][]string{
				"X-Kind":     {"web"},
				"Set-Cookie": {"a=1; Path=/", "b=2"},
			},
		},
		{
			name: "web-class-instance-keeps-this",
			bundle: `class App {
				constructor() { this.greeting = 'hi'; }
				async fetch(request) { return new Response(this.greeting + ' ' + new URL(request.url).pathname); }
			}
			export default new App();`,
			wantStatus: 200,
			wantBody:   "hi /a",
		},
		{
			name:       "web-named-fetch-export",
			bundle:     `export function fetch(request) { return new Response('hi ' + request.method); }`,
			wantStatus: 200,
			wantBody:   "hi GET",
		},
		{
			name:        "web-empty-body",
			bundle:      `export default { fetch: () => new Response(null, { status: 204, headers: { 'x-kind': 'empty' } }) };`,
			wantStatus:  204,
			wantBody:    "",
			wantHeaders: map[string][]string{"X-Kind": {"empty"}},
		},
		{
			// node's fetch (undici) is left unloaded for a Node style
			// handler: loading it costs every cold start ~30 ms.
			name: "node-function-loads-no-fetch",
			bundle: `export default (req, res) => res.end('undici loaded: ' +
				process.moduleLoadList.some((m) => m.includes('undici')));`,
			wantStatus: 200,
			wantBody:   "undici loaded: false",
		},
		{
			// The subclass, made at the first read of Response, notes a
			// string body's length.
			name:        "web-response-has-length",
			bundle:      `export default { fetch: () => new Response('sized') };`,
			wantStatus:  200,
			wantBody:    "sized",
			wantHeaders: map[string][]string{"Content-Length": {"5"}},
		},
		{
			// fetch loads node's Response without reading the global.
			name:       "web-returns-fetch-response",
			bundle:     `export default { fetch: () => fetch('data:text/plain,from%20fetch') };`,
			wantStatus: 200,
			wantBody:   "from fetch",
		},
		{
			name:        "web-head-drops-body",
			bundle:      `export default { fetch: (request) => new Response('a body', { headers: { 'x-method': request.method } }) };`,
			method:      http.MethodHead,
			wantStatus:  200,
			wantBody:    "",
			wantHeaders: map[string][]string{"X-Method": {"HEAD"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inst := startReady(t, tt.bundle)
			resp := inst.mustDo(t, request{method: tt.method, path: "/a?b=1", id: "inv-1"})
			if resp.status != tt.wantStatus {
				t.Errorf("status: got %d, want %d (body %q)", resp.status, tt.wantStatus, resp.body)
			}
			if tt.wantLine != "" && resp.statusLine != tt.wantLine {
				t.Errorf("status line: got %q, want %q", resp.statusLine, tt.wantLine)
			}
			if resp.bodyErr != nil {
				t.Errorf("reading body: %v", resp.bodyErr)
			}
			if got := string(resp.body); got != tt.wantBody {
				t.Errorf("body: got %q, want %q", got, tt.wantBody)
			}
			for k, want := range tt.wantHeaders {
				if got := resp.header.Values(k); !slices.Equal(got, want) {
					t.Errorf("header %s: got %q, want %q", k, got, want)
				}
			}
			if got := resp.header.Get(HeaderError); got != "" {
				t.Errorf("header %s: got %q, want none", HeaderError, got)
			}
		})
	}
}

func TestBootstrap_WebBodyIsStreamed(t *testing.T) {
	const gap = 300 * time.Millisecond
	inst := startReady(t, fmt.Sprintf(`
		const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
		export default {
			fetch() {
				const enc = new TextEncoder();
				let n = 0;
				const body = new ReadableStream({
					async pull(c) {
						if (n > 0) await sleep(%d);
						if (n < 3) c.enqueue(enc.encode('chunk ' + n++ + '\n'));
						else c.close();
					},
				});
				return new Response(body, { headers: { 'content-type': 'text/plain' } });
			},
		};`, gap.Milliseconds()))

	req, err := http.NewRequest(http.MethodGet, "http://fn.test/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(HeaderID, "stream-1")
	resp, err := inst.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	var lines []string
	var times []time.Time
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			lines = append(lines, line)
			times = append(times, time.Now())
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading body: %v", err)
		}
	}
	if want := []string{"chunk 0\n", "chunk 1\n", "chunk 2\n"}; !slices.Equal(lines, want) {
		t.Fatalf("body lines: got %q, want %q", lines, want)
	}
	// Chunks 1 and 2 each wait one gap, so if chunk 0 was sent as soon as it
	// was produced it arrived at least two gaps before the end.
	if got, min := times[2].Sub(times[0]), 2*gap-50*time.Millisecond; got < min {
		t.Errorf("first chunk arrived %v before the last, want at least %v (body was buffered)", got, min)
	}
}

func TestBootstrap_EchoBody(t *testing.T) {
	tests := []struct {
		name   string
		bundle string
	}{
		{
			name:   "node-pipe",
			bundle: `export default (req, res) => { res.writeHead(200, { 'content-type': 'application/octet-stream' }); req.pipe(res); };`,
		},
		{
			name: "node-buffered",
			bundle: `export default async (req, res) => {
				const chunks = [];
				for await (const c of req) chunks.push(c);
				res.end(Buffer.concat(chunks));
			};`,
		},
		{
			name:   "web-stream",
			bundle: `export default { fetch: (request) => new Response(request.body) };`,
		},
		{
			name:   "web-buffered",
			bundle: `export default { async fetch(request) { return new Response(await request.arrayBuffer()); } };`,
		},
	}
	payload := make([]byte, 1<<20)
	rand.Read(payload)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inst := startReady(t, tt.bundle)
			resp := inst.mustDo(t, request{method: http.MethodPost, path: "/echo", id: "echo-1", body: payload})
			if resp.status != http.StatusOK {
				t.Errorf("status: got %d, want 200", resp.status)
			}
			if resp.bodyErr != nil {
				t.Errorf("reading body: %v", resp.bodyErr)
			}
			if !bytes.Equal(resp.body, payload) {
				t.Errorf("body: got %d bytes, want the %d bytes sent", len(resp.body), len(payload))
			}
		})
	}
}

const nodeErrorsBundle = `
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export default function handler(req, res) {
	switch (req.url) {
	case '/slow':
		console.log('slow started');
		setTimeout(() => res.end('slow'), 300);
		return;
	case '/throw':
		res.setHeader('x-user', 'set before the throw');
		throw new Error('boom sync');
	case '/reject':
		return sleep(10).then(() => { throw new Error('boom async'); });
	case '/timer-throw':
		setTimeout(() => { throw new Error('boom timer'); }, 10);
		return;
	case '/data-throw':
		req.on('data', () => { throw new Error('boom data'); });
		return;
	case '/throw-after-headers':
		res.writeHead(200);
		res.write('partial');
		return sleep(10).then(() => { throw new Error('boom late'); });
	case '/unhandled':
		Promise.reject(new Error('nobody catches'));
		res.end('ok');
		return;
	case '/throw-after-response':
		// Attributed to the invocation, whose response is already complete.
		setTimeout(() => { throw new Error('boom untracked'); }, 10);
		res.end('ok');
		return;
	}
}
`

const webErrorsBundle = `
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export default {
	fetch(request, ctx) {
		switch (new URL(request.url).pathname) {
		case '/slow':
			console.log('slow started');
			return sleep(300).then(() => new Response('slow'));
		case '/throw':
			throw new Error('boom sync');
		case '/reject':
			return sleep(10).then(() => { throw new Error('boom async'); });
		case '/timer-throw':
			setTimeout(() => { throw new Error('boom timer'); }, 10);
			return new Promise(() => {});
		case '/body-error': {
			let n = 0;
			return new Response(new ReadableStream({
				async pull(c) {
					if (n++ === 0) { c.enqueue(new TextEncoder().encode('partial')); return; }
					await sleep(10);
					c.error(new Error('boom stream'));
				},
			}));
		}
		case '/unhandled':
			Promise.reject(new Error('nobody catches'));
			return new Response('ok');
		case '/wait-until-rejects':
			ctx.waitUntil(sleep(10).then(() => { throw new Error('boom later'); }));
			return new Response('ok');
		}
	},
};
`

func TestBootstrap_ErrorsStayInTheirInvocation(t *testing.T) {
	const concurrent = 10
	instances := map[string]*instance{
		"node": startReady(t, nodeErrorsBundle),
		"web":  startReady(t, webErrorsBundle),
	}
	tests := []struct {
		name       string
		shape      string
		path       string
		method     string
		wantStatus int
		wantCode   string // x-shoal-error
		wantCut    bool   // the body must end in an error (response destroyed)
		wantLog    string // a stderr record of the failing invocation contains this
	}{
		{name: "node-sync-throw", shape: "node", path: "/throw", wantStatus: 500, wantCode: CodeInvocationFailed, wantLog: "boom sync"},
		{name: "node-async-reject", shape: "node", path: "/reject", wantStatus: 500, wantCode: CodeInvocationFailed, wantLog: "boom async"},
		{name: "node-throw-in-timer", shape: "node", path: "/timer-throw", wantStatus: 500, wantCode: CodeInvocationFailed, wantLog: "boom timer"},
		{name: "node-throw-in-data-event", shape: "node", path: "/data-throw", method: http.MethodPost, wantStatus: 500, wantCode: CodeInvocationFailed, wantLog: "boom data"},
		{name: "node-throw-after-headers", shape: "node", path: "/throw-after-headers", wantStatus: 200, wantCut: true, wantLog: "boom late"},
		{name: "node-unhandled-rejection", shape: "node", path: "/unhandled", wantStatus: 200, wantLog: "nobody catches"},
		{name: "node-throw-after-response", shape: "node", path: "/throw-after-response", wantStatus: 200, wantLog: "boom untracked"},
		{name: "web-sync-throw", shape: "web", path: "/throw", wantStatus: 500, wantCode: CodeInvocationFailed, wantLog: "boom sync"},
		{name: "web-reject", shape: "web", path: "/reject", wantStatus: 500, wantCode: CodeInvocationFailed, wantLog: "boom async"},
		{name: "web-throw-in-timer", shape: "web", path: "/timer-throw", wantStatus: 500, wantCode: CodeInvocationFailed, wantLog: "boom timer"},
		{name: "web-body-stream-error", shape: "web", path: "/body-error", wantStatus: 200, wantCut: true, wantLog: "boom stream"},
		{name: "web-unhandled-rejection", shape: "web", path: "/unhandled", wantStatus: 200, wantLog: "nobody catches"},
		{name: "web-wait-until-rejects", shape: "web", path: "/wait-until-rejects", wantStatus: 200, wantLog: "boom later"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inst := instances[tt.shape]
			// Hold concurrent slow invocations in flight around the failing one.
			type result struct {
				id   string
				resp *response
				err  error
			}
			results := make(chan result, concurrent)
			for i := range concurrent {
				id := fmt.Sprintf("%s-slow-%d", tt.name, i)
				go func() {
					resp, err := inst.do(context.Background(), request{path: "/slow", id: id})
					results <- result{id, resp, err}
				}()
			}
			for i := range concurrent {
				inst.waitLog(t, fmt.Sprintf("%s-slow-%d", tt.name, i), "slow started")
			}

			id := tt.name + "-failing"
			r := request{method: tt.method, path: tt.path, id: id}
			if tt.method == http.MethodPost {
				r.body = []byte("some body")
			}
			resp := inst.mustDo(t, r)
			if resp.status != tt.wantStatus {
				t.Errorf("status: got %d, want %d", resp.status, tt.wantStatus)
			}
			if got := resp.header.Get(HeaderError); got != tt.wantCode {
				t.Errorf("header %s: got %q, want %q", HeaderError, got, tt.wantCode)
			}
			if tt.wantCode != "" {
				if len(resp.body) != 0 {
					t.Errorf("body: got %q, want empty", resp.body)
				}
				if got := resp.header.Get("X-User"); got != "" {
					t.Errorf("header X-User set by the failed handler: got %q, want it dropped", got)
				}
			}
			if got := resp.bodyErr != nil; got != tt.wantCut {
				t.Errorf("body cut off: got %v (err %v), want %v", got, resp.bodyErr, tt.wantCut)
			}
			m, ok := inst.waitFor(logTimeout, func(m Message) bool {
				return m.Type == TypeLog && strings.Contains(m.Msg, tt.wantLog)
			})
			if !ok {
				t.Fatalf("no log record containing %q", tt.wantLog)
			}
			if m.ID != id || m.Stream != StreamStderr {
				t.Errorf("log record %q: got id %q stream %q, want id %q stream %q", m.Msg, m.ID, m.Stream, id, StreamStderr)
			}

			for range concurrent {
				res := <-results
				switch {
				case res.err != nil:
					t.Errorf("concurrent invocation %s: %v", res.id, res.err)
				case res.resp.status != 200 || string(res.resp.body) != "slow":
					t.Errorf("concurrent invocation %s: got %d %q, want 200 %q", res.id, res.resp.status, res.resp.body, "slow")
				}
			}
			if !inst.alive() {
				t.Fatalf("node exited; output: %s", inst.nodeOutput())
			}
		})
	}
	for shape, inst := range instances {
		resp := inst.mustDo(t, request{path: "/slow", id: shape + "-after"})
		if resp.status != 200 {
			t.Errorf("%s: request after the failures: got status %d, want 200", shape, resp.status)
		}
	}
}

func TestBootstrap_NoResponse(t *testing.T) {
	tests := []struct {
		name       string
		bundle     string
		wantStatus int
		wantCode   string
		wantBody   string
	}{
		// A Node style handler may respond after it returned, as on Vercel:
		// from a timer, a stream it pipes, an event.
		{
			name:       "node-async-responds-after-resolving",
			bundle:     `export default async (req, res) => { await null; setTimeout(() => res.end('x'), 300); };`,
			wantStatus: 200,
			wantBody:   "x",
		},
		{
			name: "node-async-pipes-a-stream",
			bundle: `import fs from 'node:fs'; import { fileURLToPath } from 'node:url';
				export default async (req, res) => { fs.createReadStream(fileURLToPath(import.meta.url), { start: 0, end: 5 }).pipe(res); };`,
			wantStatus: 200,
			wantBody:   "import",
		},
		{
			name: "node-async-responds-from-an-event",
			bundle: `import { EventEmitter } from 'node:events';
				const bus = new EventEmitter();
				export default async (req, res) => { bus.once('ready', (v) => res.end(v)); setTimeout(() => bus.emit('ready', 'event'), 20); };`,
			wantStatus: 200,
			wantBody:   "event",
		},
		{
			name:       "node-sync-responds-later",
			bundle:     `export default (req, res) => { setTimeout(() => res.end('late'), 50); };`,
			wantStatus: 200,
			wantBody:   "late",
		},
		{
			name:       "node-async-responds-before-resolving",
			bundle:     `export default async (req, res) => { await new Promise((r) => setTimeout(r, 20)); res.end('done'); };`,
			wantStatus: 200,
			wantBody:   "done",
		},
		{
			name:       "web-returns-undefined",
			bundle:     `export default { fetch() { return undefined; } };`,
			wantStatus: 502,
			wantCode:   CodeNoResponse,
		},
		{
			name:       "web-async-resolves-undefined",
			bundle:     `export default { async fetch() {} };`,
			wantStatus: 502,
			wantCode:   CodeNoResponse,
		},
		{
			name:       "web-returns-a-string",
			bundle:     `export default { fetch: () => 'hello' };`,
			wantStatus: 502,
			wantCode:   CodeNoResponse,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inst := startReady(t, tt.bundle)
			resp := inst.mustDo(t, request{path: "/", id: "noresp-1"})
			if resp.status != tt.wantStatus {
				t.Errorf("status: got %d, want %d", resp.status, tt.wantStatus)
			}
			if got := resp.header.Get(HeaderError); got != tt.wantCode {
				t.Errorf("header %s: got %q, want %q", HeaderError, got, tt.wantCode)
			}
			if got := string(resp.body); got != tt.wantBody {
				t.Errorf("body: got %q, want %q", got, tt.wantBody)
			}
		})
	}
}

// TestBootstrap_LogsCarryInvocationID runs invocations that interleave their
// output across awaits, timers and request events, and checks that every line
// is tagged with the invocation that wrote it.
func TestBootstrap_LogsCarryInvocationID(t *testing.T) {
	const (
		rounds      = 2 // the second round reuses the keep-alive connections
		concurrent  = 50
		linesPerInv = 6
	)
	inst := startReady(t, `
		console.log('loaded at top level');
		const pause = () => new Promise((r) => setTimeout(r, Math.random() * 20));
		export default async (req, res) => {
			const id = req.headers['x-shoal-id'];
			const ended = new Promise((resolve) => {
				req.on('data', () => {});
				// 'end' is emitted by the HTTP parser, after the handler returned.
				req.on('end', () => { process.stderr.write('log 5 ' + id); resolve(); });
			});
			console.log('log %d %s', 0, id);
			await pause();
			console.error('log 1 ' + id);
			await pause();
			process.stdout.write('log 2 ' + id + '\nlog 3 ' + id + '\n');
			await new Promise((r) => setTimeout(() => { console.info('log 4 ' + id); r(); }, Math.random() * 20));
			await ended;
			res.end('ok');
		};`)

	for round := range rounds {
		errCh := make(chan error, concurrent)
		var wg sync.WaitGroup
		for i := range concurrent {
			id := fmt.Sprintf("r%d-inv-%02d", round, i)
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := inst.do(context.Background(), request{method: http.MethodPost, path: "/", id: id, body: []byte("body of " + id)})
				if err == nil && resp.status != 200 {
					err = fmt.Errorf("status %d", resp.status)
				}
				if err != nil {
					errCh <- fmt.Errorf("invocation %s: %w", id, err)
				}
			}()
		}
		wg.Wait()
		close(errCh)
		for err := range errCh {
			t.Error(err)
		}
	}

	// Every invocation's last line is written before its response, but the
	// records are read by another goroutine: wait for the last one expected.
	want, got := rounds*concurrent*linesPerInv, 0
	inst.waitFor(logTimeout, func(m Message) bool { // sees each message once
		if m.Type == TypeLog && strings.HasPrefix(m.Msg, "log ") {
			got++
		}
		return got >= want
	})

	wantStream := []string{StreamStdout, StreamStderr, StreamStdout, StreamStdout, StreamStdout, StreamStderr}
	perID := map[string][]bool{}
	sawTopLevel := false
	for _, m := range inst.messages() {
		if m.Type != TypeLog {
			continue
		}
		if m.Msg == "loaded at top level" {
			sawTopLevel = true
			if m.ID != "" || m.Stream != StreamStdout {
				t.Errorf("top-level record: got id %q stream %q, want id \"\" stream %q", m.ID, m.Stream, StreamStdout)
			}
			continue
		}
		var n int
		var id string
		if _, err := fmt.Sscanf(m.Msg, "log %d %s", &n, &id); err != nil || n < 0 || n >= linesPerInv {
			t.Errorf("unexpected record %+v", m)
			continue
		}
		if m.ID != id {
			t.Errorf("record %q: got id %q, want %q", m.Msg, m.ID, id)
		}
		if m.Stream != wantStream[n] {
			t.Errorf("record %q: got stream %q, want %q", m.Msg, m.Stream, wantStream[n])
		}
		if m.TS == 0 {
			t.Errorf("record %q has no ts", m.Msg)
		}
		if perID[id] == nil {
			perID[id] = make([]bool, linesPerInv)
		}
		if perID[id][n] {
			t.Errorf("record %q seen twice", m.Msg)
		}
		perID[id][n] = true
	}
	if !sawTopLevel {
		t.Errorf("no record for the top-level console.log")
	}
	if got, want := len(perID), rounds*concurrent; got != want {
		t.Errorf("invocations with records: got %d, want %d", got, want)
	}
	for id, seen := range perID {
		for n, ok := range seen {
			if !ok {
				t.Errorf("invocation %s: line %d missing", id, n)
			}
		}
	}
}

// TestBootstrap_ClientGone checks what user code sees when the client goes
// away mid-invocation, and that what it logs then still carries the id.
func TestBootstrap_ClientGone(t *testing.T) {
	tests := []struct {
		name    string
		bundle  string
		headers bool   // the response has started: cancel after reading its first line
		wantLog string // logged by the invocation once the client is gone
	}{
		{
			name: "web-request-signal-aborts",
			bundle: `export default {
				async fetch(request) {
					console.log('waiting');
					await new Promise((resolve) => request.signal.addEventListener('abort', resolve));
					console.log('aborted');
					return new Response('too late');
				},
			};`,
			wantLog: "aborted",
		},
		{
			name: "web-abort-listener",
			bundle: `export default {
				fetch(request) {
					console.log('waiting');
					request.signal.addEventListener('abort', () => console.log('abort event'));
					return new Promise(() => {});
				},
			};`,
			wantLog: "abort event",
		},
		{
			name: "web-body-stream-cancelled",
			bundle: `export default {
				fetch() {
					console.log('waiting');
					let n = 0;
					const body = new ReadableStream({
						async pull(c) {
							if (n > 0) await new Promise((r) => setTimeout(r, 50));
							c.enqueue(new TextEncoder().encode('tick ' + n++ + '\n'));
						},
						cancel() { console.log('body cancelled'); },
					});
					return new Response(body);
				},
			};`,
			headers: true,
			wantLog: "body cancelled",
		},
		{
			name: "node-res-close",
			bundle: `export default (req, res) => {
				console.log('waiting');
				res.on('close', () => console.log('res closed, finished=' + res.writableFinished));
			};`,
			wantLog: "res closed, finished=false",
		},
		{
			name: "node-res-close-while-streaming",
			bundle: `export default (req, res) => {
				console.log('waiting');
				res.write('tick 0\n');
				const timer = setInterval(() => res.write('tick\n'), 50);
				req.on('close', () => { clearInterval(timer); console.log('req closed'); });
			};`,
			headers: true,
			wantLog: "req closed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inst := startReady(t, tt.bundle)
			for i := range 2 { // the second time on a fresh connection of the same process
				id := fmt.Sprintf("%s-%d", tt.name, i)
				ctx, cancel := context.WithCancel(context.Background())
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://fn.test/", nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set(HeaderID, id)
				errCh := make(chan error, 1)
				go func() {
					resp, err := inst.client.Do(req)
					if err == nil {
						if tt.headers {
							_, err = bufio.NewReader(resp.Body).ReadString('\n')
						}
						resp.Body.Close()
					}
					errCh <- err
				}()
				inst.waitLog(t, id, "waiting")
				if tt.headers {
					if err := <-errCh; err != nil {
						t.Fatalf("reading the first line: %v", err)
					}
				}
				cancel()
				if !tt.headers {
					if err := <-errCh; !errors.Is(err, context.Canceled) {
						t.Errorf("cancelled request: got error %v, want context.Canceled", err)
					}
				}
				inst.waitLog(t, id, tt.wantLog)
			}
			if !inst.alive() {
				t.Fatalf("node exited; output: %s", inst.nodeOutput())
			}
		})
	}
}

func TestBootstrap_BadBundle(t *testing.T) {
	tests := []struct {
		name    string
		bundle  string
		wantMsg []string // the error message contains each
	}{
		{name: "number-default", bundle: `export default 42;`, wantMsg: []string{"number"}},
		{name: "object-without-fetch", bundle: `export default { handler() {} };`, wantMsg: []string{"object without a fetch method"}},
		{name: "no-default-export", bundle: `export const handler = () => {};`, wantMsg: []string{"no default export", "GET, HEAD"}},
		{name: "null-default", bundle: `export default null;`, wantMsg: []string{"null"}},
		{name: "throw-at-import", bundle: "const x = 1;\nthrow new Error('broken at import');\n", wantMsg: []string{"broken at import", "index.mjs"}},
		{name: "syntax-error", bundle: "export default (req, res) => {\n  res.end('hi'\n};\n", wantMsg: []string{"SyntaxError", "index.mjs:2", "missing )"}},
		{name: "missing-import", bundle: "import x from './nope.mjs';\nexport default x;\n", wantMsg: []string{"nope.mjs"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inst := startNode(t, tt.bundle)
			m, ok := inst.waitFor(readyTimeout, func(m Message) bool { return m.Type == TypeReady || m.Type == TypeError })
			if !ok {
				t.Fatalf("no control message; node output: %s", inst.nodeOutput())
			}
			if m.Type != TypeError {
				t.Fatalf("control message: got type %q, want %q", m.Type, TypeError)
			}
			for _, want := range tt.wantMsg {
				if !strings.Contains(m.Msg, want) {
					t.Errorf("error message %q does not contain %q", m.Msg, want)
				}
			}
			select {
			case <-inst.exited:
			case <-time.After(readyTimeout):
				t.Fatalf("node still running after reporting an error")
			}
			inst.mu.Lock()
			code := inst.exitCode
			inst.mu.Unlock()
			if code != 1 {
				t.Errorf("exit code: got %d, want 1", code)
			}
		})
	}
}

// bareNode is a plain node http server speaking the same start-up contract,
// the baseline the bootstrap's per-request cost is measured against.
const bareNode = `
import http from 'node:http';
import fs from 'node:fs';
const server = http.createServer({ requestTimeout: 0, headersTimeout: 0 }, (req, res) => res.end('hi'));
server.keepAliveTimeout = 600000;
server.listen(process.argv[2], () => fs.writeSync(3, '{"type":"ready"}\n'));
`

// BenchmarkBootstrap_Hello measures hello-world invocations through the
// bootstrap, against the same handler in a bare node server. node-cpu-us/op
// is node's own CPU time per request (from /proc, so Linux only).
func BenchmarkBootstrap_Hello(b *testing.B) {
	tests := []struct {
		name   string
		bundle string
		bare   bool
	}{
		{name: "bare-node", bare: true},
		{name: "node-style", bundle: `export default (req, res) => res.end('hi');`},
		{name: "node-style-async", bundle: `export default async (req, res) => { res.end('hi'); };`},
		{name: "web-style", bundle: `export default { fetch: () => new Response('hi') };`},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			var inst *instance
			if tt.bare {
				inst = startScript(b, bareNode, "")
			} else {
				inst = startNode(b, tt.bundle)
			}
			waitReady(b, inst)
			// Warm up the JIT and the connection pool.
			for range 2000 {
				if _, err := inst.do(context.Background(), request{path: "/", id: "warm"}); err != nil {
					b.Fatal(err)
				}
			}
			cpu0 := procCPU(inst.cmd.Process.Pid)
			b.ResetTimer()
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := inst.do(context.Background(), request{path: "/", id: "bench"})
					if err != nil || resp.status != 200 {
						b.Errorf("request: %v %v", resp, err)
						return
					}
				}
			})
			b.StopTimer()
			if cpu0 >= 0 {
				b.ReportMetric(float64((procCPU(inst.cmd.Process.Pid)-cpu0).Microseconds())/float64(b.N), "node-cpu-us/op")
			}
		})
	}
}

// procCPU returns the user+system CPU time of process pid, or -1.
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// Fields after the command (which may hold spaces) start after ") ".
	i := bytes.LastIndexByte(data, ')')
	fields := strings.Fields(string(data[i+2:]))
	var utime, stime int64
	fmt.Sscan(fields[11], &utime)
	fmt.Sscan(fields[12], &stime)
	return time.Duration(utime+stime) * (time.Second / 100) // USER_HZ is 100 on Linux
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name, bundle string
		config       string // the JSON Check returns; "" for none
		err          string // what the *CheckError says; "" for none
	}{
		{name: "no_config", bundle: `export default (req, res) => res.end();`},
		{name: "esm_config", bundle: `export default (req, res) => res.end(); export const config = { maxDuration: 5 };`, config: `{"maxDuration":5}`},
		{name: "cjs_style_config", bundle: `const h = (req, res) => res.end(); h.config = { memory: 256 }; export default h;`, config: `{"memory":256}`},
		{name: "logs_at_load", bundle: `console.error('{"type":"config","msg":"{}"}'); console.log("hi"); export default { fetch: () => new Response() }; export const config = { runtime: "nodejs" };`, config: `{"runtime":"nodejs"}`},
		{name: "cwd_and_env", bundle: `import fs from "node:fs"; if (!fs.existsSync("marker") || process.env.X !== "1") throw new Error("wrong cwd or env"); export default () => {};`},
		{name: "no_handler", bundle: `export const x = 1;`, err: "has no default export"},
		{name: "throws", bundle: `throw new Error("boom at load");`, err: "boom at load"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			bundle := filepath.Join(dir, "sub", "b.mjs")
			if err := os.MkdirAll(filepath.Dir(bundle), 0o755); err != nil {
				t.Fatal(err)
			}
			for name, body := range map[string]string{bundle: tt.bundle, filepath.Join(dir, "marker"): ""} {
				if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			checked, err := Check(t.Context(), "", bundle, dir, t.TempDir(), []string{"X=1"}, 0)
			if tt.err != "" {
				ce, ok := errors.AsType[*CheckError](err)
				if !ok || !strings.Contains(ce.Msg, tt.err) {
					t.Fatalf("Check error = %v, want a *CheckError saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if string(checked.Config) != tt.config || checked.CodeCache != nil {
				t.Errorf("config = %s and %d bytes of code cache, want %q and none (an ES module)", checked.Config, len(checked.CodeCache), tt.config)
			}
		})
	}
}

// The response says how long the handler's call took: the synchronous work
// before its first await.
func TestBootstrap_EntryHeader(t *testing.T) {
	spin := `const spin = (ms) => { const end = performance.now() + ms; while (performance.now() < end); };
const pause = (ms) => new Promise((r) => setTimeout(r, ms));
`
	// The handlers that compute spin 100 ms of wall time; those that wait
	// do next to nothing before their await, so anything under 100 ms
	// tells them apart, however loaded the machine.
	tests := []struct {
		name, bundle string
		min, max     float64 // ms
	}{
		{"node_sync", spin + `export default (req, res) => { spin(100); res.end('x'); };`, 100, 5000},
		{"node_async_after_work", spin + `export default async (req, res) => { spin(100); await pause(5); res.end('x'); };`, 100, 5000},
		{"node_waits", spin + `export default async (req, res) => { await pause(100); spin(1); res.end('x'); };`, 0, 90},
		{"web_sync", spin + `export default { fetch() { spin(100); return new Response('x'); } };`, 100, 5000},
		{"web_waits", spin + `export default { async fetch() { await pause(100); return new Response('x'); } };`, 0, 90},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inst := startReady(t, tt.bundle)
			r := inst.mustDo(t, request{path: "/", id: "e1"})
			v, err := strconv.ParseFloat(r.header.Get("x-shoal-entry-ms"), 64)
			if r.status != 200 || err != nil || v < tt.min || v > tt.max {
				t.Errorf("%d, x-shoal-entry-ms %q; want 200 and %g to %g ms", r.status, r.header.Get("x-shoal-entry-ms"), tt.min, tt.max)
			}
		})
	}
}

// TestBootstrap_StacksFollowTheSourceMap: a stack names the place in the
// source the bundle's map gives, and the map is read when a stack first
// needs it (this bundle writes its own map as it loads).
func TestBootstrap_StacksFollowTheSourceMap(t *testing.T) {
	const handler = "export default (req, res) => { res.end(new Error('where').stack); };\n"
	tests := []struct {
		name, bundle, want, notWant string
	}{
		{
			name: "mapped",
			// Line 4 (index 3), column 0 maps to src/orig.ts line 11.
			bundle: "import fs from 'node:fs';\nimport { fileURLToPath } from 'node:url';\n" +
				`fs.writeFileSync(fileURLToPath(import.meta.url) + '.map', JSON.stringify({ version: 3, sources: ['src/orig.ts'], names: [], mappings: ';;;AAUA' }));` + "\n" +
				handler,
			want:    "/src/orig.ts:11:1",
			notWant: "index.mjs:4",
		},
		{
			name:    "no_map",
			bundle:  handler,
			want:    "index.mjs:1:",
			notWant: "orig.ts",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inst := startReady(t, tt.bundle)
			resp := inst.mustDo(t, request{path: "/", id: "inv-1"})
			stack := string(resp.body)
			if resp.status != 200 || !strings.HasPrefix(stack, "Error: where\n    at ") ||
				!strings.Contains(stack, tt.want) || strings.Contains(stack, tt.notWant) {
				t.Errorf("%d, stack:\n%s\nwant it to name %q, not %q", resp.status, stack, tt.want, tt.notWant)
			}
		})
	}
}

// TestBootstrap_OwnResponseKept: a Response the function sets itself stays
// its own, after the bootstrap looked at a first returned value too.
func TestBootstrap_OwnResponseKept(t *testing.T) {
	inst := startReady(t, `class Mine { constructor() { this.status = 200; this.headers = new Headers({ 'x-mine': '1' }); this.body = null; } }
		globalThis.Response = Mine;
		export default { fetch: () => new Response('ignored') };`)
	for i := range 2 {
		resp := inst.mustDo(t, request{path: "/", id: fmt.Sprint("inv-", i)})
		if resp.status != 200 || resp.header.Get("X-Mine") != "1" {
			t.Errorf("request %d: %d, header %v; want 200 from the function's own Response", i, resp.status, resp.header)
		}
	}
}

// TestBootstrap_IdleLoopSleeps checks that a warm instance with nothing to
// do lets node's main thread sleep: its load reports go on once a second,
// not every 100 ms, and the 10 ms loop delay sampler stops until the next
// invocation, which starts both again.
func TestBootstrap_IdleLoopSleeps(t *testing.T) {
	inst := startReady(t, `export default (req, res) => res.end('ok');`)
	status := fmt.Sprintf("/proc/%d/task/%d/status", inst.cmd.Process.Pid, inst.cmd.Process.Pid)
	// wakeups counts the main thread's context switches so far.
	wakeups := func() int {
		b, err := os.ReadFile(status)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for line := range strings.Lines(string(b)) {
			k, v, _ := strings.Cut(line, ":")
			if k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches" {
				c, _ := strconv.Atoi(strings.TrimSpace(v))
				n += c
			}
		}
		return n
	}
	// per counts the wakeups in 2 s, as a rate per second.
	per := func() float64 {
		a := wakeups()
		time.Sleep(2 * time.Second)
		return float64(wakeups()-a) / 2
	}
	for round := range 2 {
		if resp := inst.mustDo(t, request{path: "/", id: fmt.Sprintf("idle-%d", round)}); resp.status != 200 {
			t.Fatalf("status %d", resp.status)
		}
		time.Sleep(300 * time.Millisecond) // a report or two finds the loop idle
		// The idle report is one a second; at work's 100 ms it would be
		// 10, and the sampler would add another 100.
		r := per()
		t.Logf("round %d: %.0f wakeups a second", round, r)
		if r > 8 {
			t.Errorf("round %d: node's main thread woke %.0f times a second while idle, want about 1", round, r)
		}
	}
}
