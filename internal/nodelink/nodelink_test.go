package nodelink

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// server is node's http server on unix sockets, answering by path:
//
//	/conn      the connection's number on this loop, and the loop's name
//	/echo      the request body back, streamed as it arrives
//	/headers   the request's headers as JSON
//	/hints     a 103 Early Hints, then "after hints"
//	/never     nothing; when the connection closes it says so on stdout
//	/stall     the headers and "started", then nothing, like /never
//	/big       1 MiB
//	/.shoal-lane  200, and no lane opened
const server = `
const http = require('node:http');
const fs = require('node:fs');
const [socket, name] = process.argv.slice(2);
let conns = 0;
const srv = http.createServer({ keepAliveTimeout: 600000 }, (req, res) => {
  if (req.socket.n === undefined) req.socket.n = ++conns;
  switch (req.url.split('?')[0]) {
  case '/conn': res.end(name + ' ' + req.socket.n); break;
  case '/echo': req.pipe(res); break;
  case '/headers': res.end(JSON.stringify({ headers: req.headers, url: req.url })); break;
  case '/hints': res.writeEarlyHints({ link: '</a.css>; rel=preload' }); res.end('after hints'); break;
  case '/never': res.on('close', () => console.log('closed ' + req.url)); break;
  case '/stall': res.write('started'); res.on('close', () => console.log('closed ' + req.url)); break;
  case '/big': res.end(Buffer.alloc(1 << 20, 'x')); break;
  case '/.shoal-lane': res.end(); break; // says yes, and opens no lane
  default: res.statusCode = 404; res.end();
  }
});
srv.listen(socket, () => console.log('listening'));
`

// startNode starts node's server on socket, named name, and returns what it
// prints, line by line.
func startNode(t *testing.T, socket, name string) <-chan string {
	t.Helper()
	script := filepath.Join(t.TempDir(), "server.js")
	if err := os.WriteFile(script, []byte(server), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", script, socket, name)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Skipf("node: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l := <-lines:
		if l != "listening" {
			t.Fatalf("node said %q", l)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("node did not listen")
	}
	return lines
}

func socketPath(t *testing.T) string {
	// A unix socket path is limited to 107 bytes; TempDir's may be longer.
	dir, err := os.MkdirTemp("", "nodelink")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "node.sock")
}

func request(t *testing.T, method, path string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, "http://fn.localhost"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// call sends req and returns the response's status and body.
func call(t *testing.T, c *Client, req *http.Request) (int, string) {
	t.Helper()
	resp, err := c.RoundTrip(req, time.Now().Add(20*time.Second))
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.URL.Path, err)
	}
	return resp.StatusCode, string(b)
}

// sawRequestEnd fails t unless node says next, within 10 s, that its
// request for path ended.
func sawRequestEnd(t *testing.T, out <-chan string, path string) {
	t.Helper()
	select {
	case l := <-out:
		if l != "closed "+path {
			t.Errorf("node said %q, want %q", l, "closed "+path)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("node did not see its request for %s end", path)
	}
}

func TestClient_ReusesConnections(t *testing.T) {
	sock := socketPath(t)
	startNode(t, sock, "main")
	c := New(sock)
	defer c.Close()
	for i := range 5 {
		if _, got := call(t, c, request(t, "GET", "/conn", nil)); got != "main 1" {
			t.Fatalf("call %d: got %q, want %q (one connection, reused)", i, got, "main 1")
		}
	}
	// A body closed before its end takes its connection with it.
	resp, err := c.RoundTrip(request(t, "GET", "/big", nil), time.Now().Add(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Read(make([]byte, 10))
	resp.Body.Close()
	if _, got := call(t, c, request(t, "GET", "/conn", nil)); got != "main 2" {
		t.Fatalf("after a body left unread: got %q, want %q", got, "main 2")
	}
}

func TestClient_Bodies(t *testing.T) {
	sock := socketPath(t)
	startNode(t, sock, "main")
	c := New(sock)
	defer c.Close()
	big := strings.Repeat("0123456789abcdef", 1<<18) // 4 MiB: more than the socket buffers hold
	tests := []struct {
		name    string
		body    string
		chunked bool // length unknown
	}{
		{"known_length", "hello", false},
		{"chunked", "hello", true},
		{"duplex", big, false},
		{"duplex_chunked", big, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(tt.body)
			if tt.chunked {
				body = io.MultiReader(body) // hides the length from NewRequest
			}
			status, got := call(t, c, request(t, "POST", "/echo", body))
			if status != 200 || got != tt.body {
				t.Errorf("got %d and %d bytes, want 200 and %d bytes", status, len(got), len(tt.body))
			}
		})
	}
	// The connection survived them all.
	if _, got := call(t, c, request(t, "GET", "/conn", nil)); got != "main 1" {
		t.Errorf("got %q, want %q", got, "main 1")
	}
}

func TestClient_Headers(t *testing.T) {
	sock := socketPath(t)
	startNode(t, sock, "main")
	c := New(sock)
	defer c.Close()
	req := request(t, "POST", "/headers?q=1", nil)
	req.Header.Set("X-Shoal-Id", "inv1")
	req.Header.Set("Connection", "upgrade")
	req.Header.Set("Expect", "100-continue")
	req.Header.Add("Accept", "a")
	req.Header.Add("Accept", "b")
	_, got := call(t, c, req)
	for _, want := range []string{`"host":"fn.localhost"`, `"x-shoal-id":"inv1"`, `"accept":"a, b"`, `"content-length":"0"`, `"url":"/headers?q=1"`} {
		if !strings.Contains(got, want) {
			t.Errorf("node saw %s, want %s in it", got, want)
		}
	}
	for _, unwanted := range []string{"expect", "upgrade"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("node saw %s, want no %s", got, unwanted)
		}
	}
}

func TestClient_SkipsEarlyHints(t *testing.T) {
	sock := socketPath(t)
	startNode(t, sock, "main")
	c := New(sock)
	defer c.Close()
	if status, got := call(t, c, request(t, "GET", "/hints", nil)); status != 200 || got != "after hints" {
		t.Errorf("got %d %q, want 200 %q", status, got, "after hints")
	}
}

func TestClient_Deadline(t *testing.T) {
	sock := socketPath(t)
	out := startNode(t, sock, "main")
	c := New(sock)
	defer c.Close()
	began := time.Now()
	_, err := c.RoundTrip(request(t, "GET", "/never", nil), time.Now().Add(300*time.Millisecond))
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
	if took := time.Since(began); took < 250*time.Millisecond || took > 10*time.Second {
		t.Errorf("took %s, want about 300 ms", took)
	}
	sawRequestEnd(t, out, "/never")
	// The broken connection is not reused.
	if _, got := call(t, c, request(t, "GET", "/conn", nil)); got != "main 2" {
		t.Errorf("got %q, want %q", got, "main 2")
	}
}

// The watch ends an invocation whose response started too, and stops once
// none is in flight.
func TestClient_DeadlineMidBody(t *testing.T) {
	sock := socketPath(t)
	out := startNode(t, sock, "main")
	c := New(sock)
	defer c.Close()
	began := time.Now()
	resp, err := c.RoundTrip(request(t, "GET", "/stall", nil), time.Now().Add(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, ErrTimeout) || string(b) != "started" {
		t.Fatalf("read %q, %v; want %q, ErrTimeout", b, err, "started")
	}
	if took := time.Since(began); took < 250*time.Millisecond || took > 10*time.Second {
		t.Errorf("took %s, want about 300 ms", took)
	}
	sawRequestEnd(t, out, "/stall")
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(WatchEvery) {
		c.mu.Lock()
		watching := c.watch.Running()
		c.mu.Unlock()
		if !watching {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the watch still runs with nothing in flight")
		}
	}
}

func TestClient_ContextEndsTheInvocation(t *testing.T) {
	sock := socketPath(t)
	out := startNode(t, sock, "main")
	c := New(sock)
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := c.RoundTrip(request(t, "GET", "/never", nil).WithContext(ctx), time.Now().Add(20*time.Second))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	sawRequestEnd(t, out, "/never")
}

func TestClient_Unreached(t *testing.T) {
	c := New(socketPath(t)) // nothing listens there
	defer c.Close()
	_, err := c.RoundTrip(request(t, "GET", "/conn", nil), time.Now().Add(10*time.Second))
	if !errors.Is(err, ErrUnreached) {
		t.Errorf("got %v, want ErrUnreached", err)
	}
}

func TestClient_NodeGoesAway(t *testing.T) {
	sock := socketPath(t)
	script := filepath.Join(t.TempDir(), "server.js")
	os.WriteFile(script, []byte(server), 0o600)
	cmd := exec.Command("node", script, sock, "main")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Skipf("node: %v", err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	br := bufio.NewReader(out)
	br.ReadString('\n')
	c := New(sock)
	defer c.Close()
	call(t, c, request(t, "GET", "/conn", nil)) // one pooled connection
	errc := make(chan error, 1)
	go func() {
		_, err := c.RoundTrip(request(t, "GET", "/never", nil), time.Now().Add(20*time.Second))
		errc <- err
	}()
	time.Sleep(200 * time.Millisecond)
	cmd.Process.Kill()
	cmd.Wait()
	// In flight: it reached node, so it failed, and not as unreached.
	if err := <-errc; err == nil || errors.Is(err, ErrUnreached) || errors.Is(err, ErrTimeout) {
		t.Errorf("in flight: got %v, want a broken connection", err)
	}
	// After: nothing can reach node.
	if _, err := c.RoundTrip(request(t, "GET", "/conn", nil), time.Now().Add(10*time.Second)); !errors.Is(err, ErrUnreached) {
		t.Errorf("after: got %v, want ErrUnreached", err)
	}
}

func TestClient_Loops(t *testing.T) {
	sock := socketPath(t)
	startNode(t, sock, "main")
	startNode(t, sock+".1", "one")
	c := New(sock)
	defer c.Close()
	c.SetLoops(3) // loop 2 never serves: its share goes to the others
	// Invocations held in flight spread over the loops that serve.
	var bodies []io.ReadCloser
	seen := map[string]int{}
	for range 4 {
		resp, err := c.RoundTrip(request(t, "GET", "/conn", nil), time.Now().Add(20*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, resp.Body)
	}
	for _, b := range bodies {
		got, _ := io.ReadAll(b)
		b.Close()
		seen[strings.Fields(string(got))[0]]++
	}
	if seen["main"] != 2 || seen["one"] != 2 {
		t.Errorf("invocations per loop: %v, want 2 on main and 2 on one", seen)
	}
}

func TestClient_Closed(t *testing.T) {
	sock := socketPath(t)
	startNode(t, sock, "main")
	c := New(sock)
	call(t, c, request(t, "GET", "/conn", nil))
	c.Close()
	if _, err := c.RoundTrip(request(t, "GET", "/conn", nil), time.Now().Add(10*time.Second)); !errors.Is(err, ErrClosed) {
		t.Errorf("got %v, want ErrClosed", err)
	}
}

// TestClient_LanesFallBackToTheSocket: a client with lanes sends a loop's
// first invocation over the socket's connection and asks for a lane after
// it; a node that says it took the lane but did not open it leaves the
// client on its socket, with no FIFO left behind.
func TestClient_LanesFallBackToTheSocket(t *testing.T) {
	sock := socketPath(t)
	startNode(t, sock, "main")
	c := NewLanes(sock)
	defer c.Close()
	if _, got := call(t, c, request(t, "GET", "/conn", nil)); got != "main 1" {
		t.Fatalf("first call: got %q, want %q", got, "main 1")
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		c.mu.Lock()
		state := c.loops[0].lanes
		c.mu.Unlock()
		if state == laneRefused {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the loop's lanes are %d after 10 s, want %d (refused)", state, laneRefused)
		}
	}
	// Connection 2 asked for the lane; 3 is the socket's connection that
	// replaced it.
	for i := range 3 {
		if _, got := call(t, c, request(t, "GET", "/conn", nil)); got != "main 1" && got != "main 3" {
			t.Fatalf("call %d: got %q, want main 1 or main 3", i, got)
		}
	}
	if left, _ := filepath.Glob(sock + ".lane-*"); len(left) != 0 {
		t.Errorf("lane FIFOs left: %q", left)
	}
}
