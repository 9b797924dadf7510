package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/invoker"
)

func TestRoute(t *testing.T) {
	tests := []struct {
		name, host, path, project, rest string
		ok                              bool
	}{
		{"path", "127.0.0.1:3000", "/hello/a/b", "hello", "/a/b", true},
		{"path_root", "127.0.0.1:3000", "/hello/", "hello", "/", true},
		{"path_no_slash", "127.0.0.1:3000", "/hello", "hello", "/", true},
		{"host", "hello.localhost:3000", "/a/b", "hello", "/a/b", true},
		{"host_upper", "Hello.LOCALHOST", "/", "hello", "/", true},
		{"host_nested_is_path", "a.b.localhost:3000", "/x/y", "x", "/y", true},
		{"root", "127.0.0.1:3000", "/", "", "", false},
		{"api", "127.0.0.1:3000", "/_shoal/api/v1/projects", "", "", false},
		{"bare_localhost", "localhost:3000", "/p/q", "p", "/q", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			project, rest, ok := route(tt.host, tt.path)
			if project != tt.project || rest != tt.rest || ok != tt.ok {
				t.Errorf("route(%q, %q) = %q, %q, %v; want %q, %q, %v", tt.host, tt.path, project, rest, ok, tt.project, tt.rest, tt.ok)
			}
		})
	}
}

// invokerFunc is an Invoker made of a function.
type invokerFunc func(project string, r *http.Request) (*http.Response, error)

func (f invokerFunc) Invoke(project string, r *http.Request) (*http.Response, error) {
	return f(project, r)
}

func TestGateway_Errors(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		header string // x-shoal-error from the function instead of err
		status int
		code   string
	}{
		{"not_found", invoker.ErrNotFound, "", 404, CodeDeploymentNotFound},
		{"no_route", invoker.ErrNoRoute, "", 404, CodeNotFound},
		{"throttled", invoker.ErrThrottled, "", 503, CodeThrottled},
		{"start_failed", invoker.ErrStartFailed, "", 500, CodeInvocationFailed},
		{"instance_died", errors.New("stream reset"), "", 500, CodeInvocationFailed},
		{"fn_timeout", nil, CodeTimeout, 504, CodeTimeout},
		{"fn_no_response", nil, CodeNoResponse, 502, CodeNoResponse},
		{"fn_unknown_code", nil, "SOMETHING_NEW", 500, CodeInvocationFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := New(Config{}, invokerFunc(func(project string, r *http.Request) (*http.Response, error) {
				if tt.err != nil {
					return nil, tt.err
				}
				h := http.Header{}
				h.Set(ErrorHeader, tt.header)
				return &http.Response{StatusCode: 500, Header: h, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
			}), nil, nil)
			req := httptest.NewRequest("GET", "http://127.0.0.1/app/x", nil)
			req.Header.Set("accept", "application/json")
			w := httptest.NewRecorder()
			g.ServeHTTP(w, req)
			var body struct {
				Error struct{ Code, Message, ID string }
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if w.Code != tt.status || body.Error.Code != tt.code {
				t.Errorf("got %d %s, want %d %s", w.Code, body.Error.Code, tt.status, tt.code)
			}
			if id := w.Header().Get(IDHeader); id == "" || id != body.Error.ID {
				t.Errorf("x-shoal-id %q, body id %q: want the same, non-empty", id, body.Error.ID)
			}
			if tt.status == 503 && w.Header().Get("retry-after") == "" {
				t.Error("503 without retry-after")
			}
		})
	}
}

func TestGateway_TextErrors(t *testing.T) {
	g := New(Config{}, nil, nil, nil)
	w := httptest.NewRecorder()
	g.ServeHTTP(w, httptest.NewRequest("GET", "http://127.0.0.1/", nil))
	if w.Code != 404 || !strings.Contains(w.Body.String(), "Code: "+CodeNotFound) || !strings.HasPrefix(w.Header().Get("content-type"), "text/plain") {
		t.Errorf("got %d %q %q, want a 404 text error", w.Code, w.Header().Get("content-type"), w.Body)
	}
}

func TestGateway_PassesRequest(t *testing.T) {
	var got *http.Request
	g := New(Config{}, invokerFunc(func(project string, r *http.Request) (*http.Response, error) {
		if project != "app" {
			t.Errorf("project = %q, want app", project)
		}
		got = r
		h := http.Header{"Connection": {"x-conn-only"}, "X-Conn-Only": {"1"}, "Keep-Alive": {"timeout=5"}, "X-Made": {"yes"}}
		return &http.Response{StatusCode: 201, Header: h, Body: io.NopCloser(strings.NewReader("made")), Request: r}, nil
	}), nil, nil)
	req := httptest.NewRequest("POST", "http://127.0.0.1:3000/app/items?x=1", strings.NewReader("body"))
	req.Header.Set("x-shoal-id", "spoofed")
	req.Header.Set("x-shoal-error", "spoofed")
	req.Header.Set("x-shoal-lane", "spoofed") // would ask node for a lane (nodelink.LaneHeader)
	req.Header.Set("x-forwarded-for", "10.9.9.9")
	req.Header.Set("connection", "x-hop")
	req.Header.Set("x-hop", "1")
	req.Header.Set("x-kept", "1")
	w := httptest.NewRecorder()
	g.ServeHTTP(w, req)
	if w.Code != 201 || w.Body.String() != "made" {
		t.Fatalf("got %d %q, want 201 made", w.Code, w.Body)
	}
	for name, want := range map[string]string{"X-Forwarded-For": "192.0.2.1", "X-Forwarded-Host": "127.0.0.1:3000",
		"X-Forwarded-Proto": "http", "X-Kept": "1", "X-Hop": "", "Connection": ""} {
		if v := got.Header.Get(name); v != want {
			t.Errorf("function saw %s %q, want %q", name, v, want)
		}
	}
	for name, want := range map[string]string{"X-Made": "yes", "X-Conn-Only": "", "Keep-Alive": "", "Connection": ""} {
		if v := w.Header().Get(name); v != want {
			t.Errorf("client got %s %q, want %q", name, v, want)
		}
	}
	if got.URL.Path != "/items" || got.URL.RawQuery != "x=1" {
		t.Errorf("function saw %s?%s, want /items?x=1", got.URL.Path, got.URL.RawQuery)
	}
	if id := got.Header.Get(IDHeader); id == "spoofed" || id != w.Header().Get(IDHeader) {
		t.Errorf("function saw id %q, client %q: want the gateway's, the same", id, w.Header().Get(IDHeader))
	}
	if got.Header.Get(ErrorHeader) != "" {
		t.Error("client's x-shoal-error reached the function")
	}
	if got.Header.Get("x-shoal-lane") != "" {
		t.Error("client's x-shoal-lane reached the function")
	}
}

func TestGateway_BodyLimit(t *testing.T) {
	called := false
	g := New(Config{MaxBodyBytes: 10}, invokerFunc(func(project string, r *http.Request) (*http.Response, error) {
		called = true
		_, err := io.ReadAll(r.Body)
		return nil, err
	}), nil, nil)
	for _, tt := range []struct {
		name    string
		length  int64
		invoked bool // whether the invocation starts before the limit is seen
	}{{"declared", 11, false}, {"chunked", -1, true}} {
		t.Run(tt.name, func(t *testing.T) {
			called = false
			req := httptest.NewRequest("POST", "http://127.0.0.1/app/", strings.NewReader(strings.Repeat("x", 11)))
			req.ContentLength = tt.length
			w := httptest.NewRecorder()
			g.ServeHTTP(w, req)
			if w.Code != 413 || !strings.Contains(w.Body.String(), CodePayloadTooLarge) {
				t.Errorf("got %d %q, want 413 %s", w.Code, w.Body, CodePayloadTooLarge)
			}
			if got := w.Header().Get("connection"); got != "close" {
				t.Errorf("connection = %q, want close: the unread body must not be taken for the next request", got)
			}
			if called != tt.invoked {
				t.Errorf("invoker called = %v, want %v", called, tt.invoked)
			}
		})
	}
}

// okInvoker answers 200 "ok" and counts its invocations.
func okInvoker(calls *int) Invoker {
	return invokerFunc(func(project string, r *http.Request) (*http.Response, error) {
		*calls++
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok")), Request: r}, nil
	})
}

// platformError decodes a JSON platform error response.
func platformError(t *testing.T, w *httptest.ResponseRecorder) (code, msg, id string) {
	t.Helper()
	var body struct {
		Error struct{ Code, Message, ID string }
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q is not a JSON platform error: %v", w.Body, err)
	}
	if hid := w.Header().Get(IDHeader); hid == "" || hid != body.Error.ID {
		t.Errorf("x-shoal-id %q, body id %q: want the same, non-empty", hid, body.Error.ID)
	}
	return body.Error.Code, body.Error.Message, body.Error.ID
}

func TestGateway_URLLimit(t *testing.T) {
	const limit = 100
	// "/app/" + path + "?q=" + query: the whole request target counts,
	// the project's segment and the query included.
	target := func(n int) string {
		return "/app/" + strings.Repeat("p", n-len("/app/")-len("?q=")-10) + "?q=" + strings.Repeat("q", 10)
	}
	tests := []struct {
		name   string
		target string
		want   int
	}{
		{"at_limit", target(limit), 200},
		{"one_over", target(limit + 1), 414},
		{"far_over", target(limit * 10), 414},
		{"path_only_one_over", "/app/" + strings.Repeat("p", limit-len("/app/")+1), 414},
		{"escaped_counts_as_sent", "/app/" + strings.Repeat("%20", (limit-len("/app/"))/3+1), 414},
		{"escaped_at_limit", "/app/" + strings.Repeat("%20", (limit-len("/app/"))/3), 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			g := New(Config{MaxURLBytes: limit}, okInvoker(&calls), nil, nil)
			req := httptest.NewRequest("GET", "http://127.0.0.1"+tt.target, nil)
			req.Header.Set("accept", "application/json")
			w := httptest.NewRecorder()
			g.ServeHTTP(w, req)
			if w.Code != tt.want {
				t.Fatalf("target of %d bytes: got %d %q, want %d", len(tt.target), w.Code, w.Body, tt.want)
			}
			if tt.want == 200 {
				return
			}
			if code, msg, _ := platformError(t, w); code != CodeURLTooLong || !strings.Contains(msg, "100 bytes") {
				t.Errorf("got %s %q, want %s naming the limit", code, msg, CodeURLTooLong)
			}
			if calls != 0 {
				t.Errorf("invoker called %d times, want 0", calls)
			}
		})
	}
}

func TestGateway_HeaderLimits(t *testing.T) {
	const one, all = 100, 300
	// The request's Host header, 127.0.0.1, counts: 4 + 9 bytes.
	const host = len("host") + len("127.0.0.1")
	// headers returns n headers x-h<i> of size bytes each (name and value).
	headers := func(n, size int) http.Header {
		h := http.Header{}
		for i := range n {
			name := fmt.Sprintf("X-H%d", i)
			h.Set(name, strings.Repeat("v", size-len(name)))
		}
		return h
	}
	// fill returns headers of total bytes, none over one.
	fill := func(total int) http.Header {
		total -= host
		h := headers(total/90, 90)
		if rest := total % 90; rest > 0 {
			h.Set("X-Z", strings.Repeat("v", rest-len("X-Z")))
		}
		return h
	}
	tests := []struct {
		name    string
		header  http.Header
		want    int
		message string // in the 431's message
	}{
		{"one_at_limit", headers(1, one), 200, ""},
		{"one_over", headers(1, one+1), 431, "one header"},
		{"one_far_over", headers(1, 10*one), 431, "one header"},
		{"all_at_limit", fill(all), 200, ""},
		{"all_one_over", fill(all + 1), 431, "in all"},
		{"all_far_over", headers(20, 90), 431, "in all"},
		{"repeated_header_counts_each", http.Header{"X-Rep": {strings.Repeat("v", 90), strings.Repeat("v", 90), strings.Repeat("v", 90), strings.Repeat("v", 90)}}, 431, "in all"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			g := New(Config{MaxHeaderBytes: one, MaxHeadersBytes: all}, okInvoker(&calls), nil, nil)
			req := httptest.NewRequest("GET", "http://127.0.0.1/app/", nil)
			req.Header = tt.header
			w := httptest.NewRecorder()
			g.ServeHTTP(w, req)
			if w.Code != tt.want {
				t.Fatalf("got %d %q, want %d", w.Code, w.Body, tt.want)
			}
			if tt.want == 200 {
				return
			}
			// No accept header: the text form.
			body := w.Body.String()
			if !strings.Contains(body, "Code: "+CodeHeaderTooLarge) || !strings.Contains(body, tt.message) ||
				!strings.Contains(body, "ID: "+w.Header().Get(IDHeader)) || w.Header().Get(IDHeader) == "" {
				t.Errorf("body %q, want a text %s saying %q with the x-shoal-id", body, CodeHeaderTooLarge, tt.message)
			}
			if calls != 0 {
				t.Errorf("invoker called %d times, want 0", calls)
			}
		})
	}
}

// TestGateway_LimitsOverHTTP checks that the gateway, not net/http, answers
// requests over the header and URL limits when the server sets
// ServerMaxHeaderBytes, even with both near their limits at once.
func TestGateway_LimitsOverHTTP(t *testing.T) {
	calls := 0
	g := New(Config{}, okInvoker(&calls), nil, nil)
	srv := httptest.NewUnstartedServer(g)
	srv.Config.MaxHeaderBytes = g.ServerMaxHeaderBytes()
	srv.Start()
	defer srv.Close()
	// Many headers of 15 KB: each under the one-header limit.
	manyHeaders := func(n int) http.Header {
		h := http.Header{}
		for i := range n {
			h.Set(fmt.Sprintf("x-h%d", i), strings.Repeat("v", 15<<10))
		}
		return h
	}
	tests := []struct {
		name   string
		path   string
		header http.Header
		want   int
		code   string
	}{
		{"near_both_limits", "/app/" + strings.Repeat("p", DefaultMaxURLBytes-100), manyHeaders(2), 200, ""},
		{"url_over", "/app/" + strings.Repeat("p", DefaultMaxURLBytes), nil, 414, CodeURLTooLong},
		{"one_header_over", "/app/", http.Header{"X-Big": {strings.Repeat("v", DefaultMaxHeaderBytes)}}, 431, CodeHeaderTooLarge},
		{"all_headers_over", "/app/", manyHeaders(3), 431, CodeHeaderTooLarge},
		{"all_headers_twice_over_with_long_url", "/app/" + strings.Repeat("p", DefaultMaxURLBytes), manyHeaders(4), 414, CodeURLTooLong},
		// Far over: net/http stops reading and answers a bare 431.
		{"far_over_cut_off_early", "/app/", manyHeaders(20), 431, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest("GET", srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header[k] = v
			}
			req.Header.Set("accept", "application/json")
			before := calls
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.want {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("got %d %q, want %d", resp.StatusCode, b, tt.want)
			}
			if invoked := calls > before; invoked != (tt.want == 200) {
				t.Errorf("invoked %v, want %v", invoked, tt.want == 200)
			}
			if tt.code == "" {
				return
			}
			w := httptest.NewRecorder()
			w.Code = resp.StatusCode
			for k, v := range resp.Header {
				w.Header()[k] = v
			}
			io.Copy(w.Body, resp.Body)
			if code, _, _ := platformError(t, w); code != tt.code {
				t.Errorf("code %s, want %s", code, tt.code)
			}
		})
	}
}

// trackedBody is a response body that records its Close.
type trackedBody struct {
	io.Reader
	closed bool
}

func (b *trackedBody) Close() error { b.closed = true; return nil }

func TestGateway_ResponseLimit(t *testing.T) {
	const limit = 10
	tests := []struct {
		name   string
		method string
		length int64 // Content-Length the function declared; -1: streamed
		size   int   // bytes it sends
		want   int
	}{
		{"buffered_at_limit", "GET", limit, limit, 200},
		{"buffered_one_over", "GET", limit + 1, limit + 1, 500},
		{"buffered_far_over", "GET", 100 * limit, 100 * limit, 500},
		{"streamed_far_over", "GET", -1, 100 * limit, 200},
		{"head_over", "HEAD", limit + 1, 0, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var resp *http.Response
			body := &trackedBody{Reader: strings.NewReader(strings.Repeat("x", tt.size))}
			g := New(Config{MaxResponseBytes: limit}, invokerFunc(func(project string, r *http.Request) (*http.Response, error) {
				resp = &http.Response{StatusCode: 200, Header: http.Header{}, ContentLength: tt.length, Body: body, Request: r}
				return resp, nil
			}), nil, nil)
			req := httptest.NewRequest(tt.method, "http://127.0.0.1/app/", nil)
			req.Header.Set("accept", "application/json")
			w := httptest.NewRecorder()
			g.ServeHTTP(w, req)
			if w.Code != tt.want {
				t.Fatalf("got %d %q, want %d", w.Code, w.Body, tt.want)
			}
			if !body.closed {
				t.Error("the function's response body was not closed")
			}
			if tt.want == 200 {
				if w.Body.Len() != tt.size {
					t.Errorf("body of %d bytes, want the %d sent", w.Body.Len(), tt.size)
				}
				return
			}
			if code, msg, _ := platformError(t, w); code != CodeResponseTooLarge || !strings.Contains(msg, "10 bytes") {
				t.Errorf("got %s %q, want %s naming the limit", code, msg, CodeResponseTooLarge)
			}
			if resp.StatusCode != 500 {
				t.Errorf("response StatusCode %d when closed, want 500: the invocation is metered with it", resp.StatusCode)
			}
		})
	}
}

// paced is a response body of n chunks, one every gap (endless for n < 0);
// closed is closed when the gateway closes it.
type paced struct {
	n, sent int
	gap     time.Duration
	closed  chan struct{}
	once    sync.Once
}

func (p *paced) Read(b []byte) (int, error) {
	select {
	case <-p.closed:
		return 0, errors.New("read after close")
	default:
	}
	if p.sent == p.n {
		return 0, io.EOF
	}
	time.Sleep(p.gap)
	p.sent++
	return copy(b, bytes.Repeat([]byte{'x'}, 1<<10)), nil
}

func (p *paced) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

// serveBodies serves a gateway whose function answers each invocation with
// the next of bodies, with the send timeout given, over a real socket.
func serveBodies(t *testing.T, sendTimeout time.Duration, bodies ...io.ReadCloser) *httptest.Server {
	t.Helper()
	var mu sync.Mutex
	g := New(Config{SendTimeout: sendTimeout}, invokerFunc(func(project string, r *http.Request) (*http.Response, error) {
		mu.Lock()
		defer mu.Unlock()
		body := bodies[0]
		bodies = bodies[1:]
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: body, ContentLength: -1}, nil
	}), nil, nil)
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return srv
}

// A client that takes none of the response for the send timeout is cut
// off, and the function's response is closed: its invocation ends.
func TestGateway_SendTimeout(t *testing.T) {
	body := &paced{n: -1, closed: make(chan struct{})}
	srv := serveBodies(t, 200*time.Millisecond, body)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4 << 10)
	if _, err := io.WriteString(conn, "GET /app/ HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// Read the start of the answer, then nothing more.
	if _, err := io.ReadFull(conn, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-body.closed:
	case <-time.After(20 * time.Second):
		t.Fatal("the function's response is still open, with its client taking nothing")
	}
}

// A slow response that the client takes as it comes outlasts the send
// timeout: the timeout bounds each write, not the whole response. The
// connection's next answer, here a platform error, is not cut off by the
// deadline the last response left.
func TestGateway_SendTimeoutBoundsEachWrite(t *testing.T) {
	// 1.6 s of response under a 1 s timeout: each write has far more than
	// it needs, even on a loaded machine.
	srv := serveBodies(t, time.Second, &paced{n: 8, gap: 200 * time.Millisecond, closed: make(chan struct{})})
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	for i, tt := range []struct {
		path         string
		status, size int
	}{{"/app/", 200, 8 << 10}, {"/", 404, -1}} {
		if i == 1 {
			time.Sleep(1100 * time.Millisecond) // past the last write's deadline
		}
		if _, err := io.WriteString(conn, "GET "+tt.path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", tt.path, err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != tt.status || tt.size >= 0 && len(b) != tt.size {
			t.Fatalf("GET %s: %d, read %d bytes, %v; want %d, %d bytes", tt.path, resp.StatusCode, len(b), err, tt.status, tt.size)
		}
	}
}

// removeHopHeaders takes out each hop-by-hop header, alone or among
// others, and what Connection names; it leaves the rest.
func TestRemoveHopHeaders(t *testing.T) {
	for _, hop := range hopHeaders {
		h := http.Header{"Content-Type": {"text/plain"}, hop: {"x"}}
		removeHopHeaders(h)
		if _, ok := h[hop]; ok || len(h) != 1 {
			t.Errorf("%s: left %v", hop, h)
		}
	}
	h := http.Header{"Connection": {"keep-alive, X-Hop"}, "X-Hop": {"1"}, "X-End": {"2"}}
	removeHopHeaders(h)
	if len(h) != 1 || h.Get("X-End") != "2" {
		t.Errorf("left %v, want X-End alone", h)
	}
}
