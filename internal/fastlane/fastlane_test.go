package fastlane

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/httphead"
	"golang.org/x/net/http2"
)

// via names who served r: the lane, or net/http after a hand-off (only
// net/http puts its server in the request's context).
func via(r *http.Request) string {
	if r.Context().Value(http.ServerContextKey) != nil {
		return "http"
	}
	return "lane"
}

// testHandler answers by path; every answer says who served it.
func testHandler(t *testing.T) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Via", via(r))
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("read body: %v", err)
		}
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, body)
	})
	mux.HandleFunc("/length", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Via", via(r))
		w.Header().Set("Content-Length", "5")
		w.WriteHeader(http.StatusAccepted)
		w.Write([]byte("hello"))
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Via", via(r))
		w.Write([]byte("one,"))
		http.NewResponseController(w).Flush()
		w.Write([]byte("two"))
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Via", via(r))
	})
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Via", via(r))
		w.WriteHeader(http.StatusNoContent)
		if _, err := w.Write([]byte("x")); !errors.Is(err, http.ErrBodyNotAllowed) {
			t.Errorf("write to a 204: %v, want ErrBodyNotAllowed", err)
		}
	})
	mux.HandleFunc("/short", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		w.Write([]byte("abc"))
	})
	mux.HandleFunc("/abort", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		w.Write([]byte("abc"))
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	})
	return mux
}

// start serves h on a loopback listener; serves is the lane's filter.
func start(t *testing.T, h http.Handler, serves func(*http.Request) bool, configure func(*http.Server)) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &protocols, ReadHeaderTimeout: 5 * time.Second}
	if configure != nil {
		configure(srv)
	}
	s := &Server{HTTP: srv, Serves: serves}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v, want ErrServerClosed", err)
		}
	})
	return s, ln.Addr().String()
}

// client is one raw connection to the server.
type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatal(err)
	}
}

// read reads one response to a request of method, with its whole body.
func (c *client) read(method string) (*http.Response, string) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("read response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("read body: %v", err)
	}
	return resp, string(body)
}

// eof waits for the server to close the connection.
func (c *client) eof() error {
	b, err := c.br.ReadByte()
	if err == nil {
		return fmt.Errorf("read %q, want the connection closed", b)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset") {
		return nil
	}
	return err
}

func get(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: example.test\r\n\r\n" }

func TestLane_ServesAndKeepsTheConnection(t *testing.T) {
	_, addr := start(t, testHandler(t), nil, nil)
	c := dial(t, addr)
	for i := range 3 {
		c.send(get(fmt.Sprintf("/n%d", i)))
		resp, body := c.read("GET")
		if resp.StatusCode != 200 || body != fmt.Sprintf("GET /n%d ", i) || resp.Header.Get("X-Via") != "lane" {
			t.Fatalf("request %d: %d %q via %q, want 200 from the lane", i, resp.StatusCode, body, resp.Header.Get("X-Via"))
		}
		// A body written whole before the handler returned gets its length,
		// a type and a date, as from net/http.
		if resp.ContentLength != int64(len(body)) || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || resp.Header.Get("Date") == "" {
			t.Fatalf("request %d: length %d type %q date %q", i, resp.ContentLength, resp.Header.Get("Content-Type"), resp.Header.Get("Date"))
		}
	}
}

func TestLane_Framing(t *testing.T) {
	_, addr := start(t, testHandler(t), nil, nil)
	c := dial(t, addr)

	c.send(get("/length"))
	resp, body := c.read("GET")
	if resp.StatusCode != 202 || body != "hello" || resp.ContentLength != 5 || len(resp.TransferEncoding) != 0 {
		t.Errorf("/length: %d %q length %d %v", resp.StatusCode, body, resp.ContentLength, resp.TransferEncoding)
	}

	c.send(get("/stream"))
	resp, body = c.read("GET")
	if body != "one,two" || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("/stream: %q, transfer encoding %v, want chunked", body, resp.TransferEncoding)
	}

	c.send(get("/empty"))
	resp, body = c.read("GET")
	if resp.StatusCode != 200 || body != "" || resp.ContentLength != 0 {
		t.Errorf("/empty: %d %q length %d", resp.StatusCode, body, resp.ContentLength)
	}

	c.send(get("/nocontent"))
	resp, body = c.read("GET")
	if resp.StatusCode != 204 || body != "" || len(resp.TransferEncoding) != 0 {
		t.Errorf("/nocontent: %d %q %v", resp.StatusCode, body, resp.TransferEncoding)
	}

	c.send("HEAD /length HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body = c.read("HEAD")
	if resp.StatusCode != 202 || body != "" || resp.ContentLength != 5 || resp.Header.Get("X-Via") != "lane" {
		t.Errorf("HEAD /length: %d %q length %d via %q", resp.StatusCode, body, resp.ContentLength, resp.Header.Get("X-Via"))
	}

	// After all of that the connection still carries a request.
	c.send(get("/last"))
	if resp, body = c.read("GET"); body != "GET /last " {
		t.Errorf("/last: %q", body)
	}
}

func TestLane_ShortOrAbortedResponseClosesTheConnection(t *testing.T) {
	_, addr := start(t, testHandler(t), nil, nil)
	for _, path := range []string{"/short", "/abort"} {
		c := dial(t, addr)
		c.send(get(path))
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		body, err := io.ReadAll(resp.Body)
		if string(body) != "abc" || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: body %q, %v; want abc and then the connection closed", path, body, err)
		}
	}
}

func TestLane_HandsOffWhatItDoesNotServe(t *testing.T) {
	_, addr := start(t, testHandler(t), func(r *http.Request) bool { return !strings.HasPrefix(r.URL.Path, "/api/") }, nil)
	cases := []struct {
		name, req, method, status, body string
	}{
		{"body", "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", "POST", "200", "POST /p abc"},
		{"chunked body", "PUT /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n", "PUT", "200", "PUT /p ab"},
		{"not served", get("/api/x"), "GET", "200", "GET /api/x "},
		{"HTTP/1.0", "GET /old HTTP/1.0\r\nHost: x\r\n\r\n", "GET", "200", "GET /old "},
		{"expect", "GET /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n", "GET", "200", "GET /e "},
		{"big head", "GET /big HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 6000) + "\r\n\r\n", "GET", "200", "GET /big "},
		{"no host", "GET /nohost HTTP/1.1\r\n\r\n", "GET", "400", ""},
		{"bad header", "GET /bad HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n", "GET", "400", ""},
		{"garbage", "NOT HTTP\r\n\r\n", "GET", "400", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			c.send(tc.req)
			resp, body := c.read(tc.method)
			if fmt.Sprint(resp.StatusCode) != tc.status || (tc.body != "" && body != tc.body) {
				t.Fatalf("%d %q, want %s %q", resp.StatusCode, body, tc.status, tc.body)
			}
			if tc.status == "200" && resp.Header.Get("X-Via") != "http" {
				t.Fatalf("served by %q, want net/http", resp.Header.Get("X-Via"))
			}
		})
	}
}

func TestLane_HandsOffMidConnection(t *testing.T) {
	_, addr := start(t, testHandler(t), nil, nil)
	c := dial(t, addr)
	// Pipelined: the lane serves the first, then hands the connection, with
	// the POST it read already, to net/http, which keeps it.
	c.send(get("/first") + "POST /second HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi" + get("/third"))
	for _, want := range []struct{ body, via string }{{"GET /first ", "lane"}, {"POST /second hi", "http"}, {"GET /third ", "http"}} {
		resp, body := c.read(strings.Fields(want.body)[0])
		if body != want.body || resp.Header.Get("X-Via") != want.via {
			t.Fatalf("%q via %q, want %q via %s", body, resp.Header.Get("X-Via"), want.body, want.via)
		}
	}
}

func TestLane_Pipelined(t *testing.T) {
	_, addr := start(t, testHandler(t), nil, nil)
	c := dial(t, addr)
	c.send(get("/a") + get("/b") + get("/c"))
	for _, p := range []string{"/a", "/b", "/c"} {
		if resp, body := c.read("GET"); body != "GET "+p+" " || resp.Header.Get("X-Via") != "lane" {
			t.Fatalf("%q via %q, want GET %s from the lane", body, resp.Header.Get("X-Via"), p)
		}
	}
}

func TestLane_HTTP2PriorKnowledge(t *testing.T) {
	_, addr := start(t, testHandler(t), nil, nil)
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://" + addr + "/h2")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.ProtoMajor != 2 || string(body) != "GET /h2 " || resp.Header.Get("X-Via") != "http" {
		t.Fatalf("%s %q via %q, want HTTP/2 from net/http", resp.Proto, body, resp.Header.Get("X-Via"))
	}
}

func TestLane_ConnectionClose(t *testing.T) {
	_, addr := start(t, testHandler(t), nil, nil)
	c := dial(t, addr)
	c.send("GET /bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	resp, body := c.read("GET")
	// ReadResponse takes "Connection: close" out of the header into Close.
	if body != "GET /bye " || !resp.Close || resp.Header.Get("X-Via") != "lane" {
		t.Fatalf("%q close %v via %q", body, resp.Close, resp.Header.Get("X-Via"))
	}
	if err := c.eof(); err != nil {
		t.Fatal(err)
	}
}

func TestLane_BareLineFeeds(t *testing.T) {
	_, addr := start(t, testHandler(t), nil, nil)
	c := dial(t, addr)
	c.send("GET /lf HTTP/1.1\nHost: x\n\n")
	if resp, body := c.read("GET"); resp.StatusCode != 200 || body != "GET /lf " {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}

// A client that leaves while its request is in flight ends the request's
// context, which is how the gateway ends its invocation.
func TestLane_ClientLeaving(t *testing.T) {
	ended := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			ended <- nil
		case <-time.After(10 * time.Second):
			ended <- errors.New("the request's context did not end in 10 s")
		}
	})
	_, addr := start(t, h, nil, nil)
	c := dial(t, addr)
	c.send(get("/wait"))
	time.Sleep(50 * time.Millisecond)
	c.c.Close()
	if err := <-ended; err != nil {
		t.Fatal(err)
	}
}

// A write deadline bounds a write that waits for a client that takes
// nothing, and one the response leaves in the past does not fail the
// connection's next response.
func TestLane_WriteDeadline(t *testing.T) {
	failed := make(chan error, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/flood", func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
		start := time.Now()
		_, err := w.Write(make([]byte, 64<<20))
		if err == nil {
			err = http.NewResponseController(w).Flush()
		}
		if err != nil && time.Since(start) < 250*time.Millisecond {
			err = fmt.Errorf("%w after %v, before the deadline", err, time.Since(start))
		}
		failed <- err
	})
	mux.HandleFunc("/brief", func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		w.Write([]byte("brief"))
	})
	_, addr := start(t, mux, nil, nil)

	c := dial(t, addr)
	c.c.(*net.TCPConn).SetReadBuffer(4 << 10)
	c.send(get("/flood"))
	select {
	case err := <-failed:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the write to a client that takes nothing: %v, want a deadline error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the write to a client that takes nothing still waits")
	}

	c = dial(t, addr)
	c.send(get("/brief"))
	c.read("GET")
	time.Sleep(200 * time.Millisecond) // past /brief's deadline
	c.send(get("/brief"))
	if resp, body := c.read("GET"); resp.StatusCode != 200 || body != "brief" {
		t.Fatalf("the next response: %d %q", resp.StatusCode, body)
	}
}

// The idle timeout counts from a connection's last request: requests that
// come closer together than it keep the connection, however long.
func TestLane_IdleTimeout(t *testing.T) {
	_, addr := start(t, testHandler(t), nil, func(s *http.Server) { s.IdleTimeout = time.Second })
	c := dial(t, addr)
	for i := range 5 {
		if i > 0 {
			time.Sleep(300 * time.Millisecond)
		}
		c.send(get("/x"))
		if resp, _ := c.read("GET"); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	start := time.Now()
	if err := c.eof(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 700*time.Millisecond || d > 10*time.Second {
		t.Fatalf("closed after %v, want about 1 s", d)
	}
}

func TestLane_ShutdownFinishesRequestsInFlight(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		w.Write([]byte("done " + r.URL.Path))
	})
	s, addr := start(t, h, nil, nil)
	idle := dial(t, addr)
	idle.send(get("/idle"))
	idle.read("GET")
	busy := dial(t, addr)
	busy.send(get("/slow"))
	<-entered

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	if err := idle.eof(); err != nil {
		t.Fatalf("idle connection: %v", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if _, body := busy.read("GET"); body != "done /slow" {
		t.Fatalf("in-flight request got %q", body)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("dial after Shutdown succeeded")
	}
}

// BenchmarkServe runs round trips of a small GET over loopback on one
// connection, through the lane and through net/http alone.
func BenchmarkServe(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		w.Write([]byte("hello"))
		http.NewResponseController(w).Flush()
	})
	for _, lane := range []bool{true, false} {
		name := "nethttp"
		if lane {
			name = "lane"
		}
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := &http.Server{Handler: h}
			if lane {
				s := &Server{HTTP: srv}
				go s.Serve(ln)
				defer s.Close()
			} else {
				go srv.Serve(ln)
				defer srv.Close()
			}
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			req := []byte(get("/"))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}

// Serve closes its listener at once when Close came first,
// as it does when a deploy fails before the server got to Serve.
func TestLane_CloseBeforeServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{HTTP: &http.Server{}}
	s.Close()
	if err := s.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve after Close: %v, want ErrServerClosed", err)
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Fatal("the listener is still open")
	}
}

// The lane's requests carry their connection's httphead.Header, where
// nodelink reads node's responses: the same one for each request on a
// connection, another on another connection.
func TestLane_RequestsCarryTheirConnectionsHeader(t *testing.T) {
	seen := make(chan *httphead.Header, 4)
	_, addr := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- httphead.HeaderFrom(r.Context())
		io.WriteString(w, "ok")
	}), nil, nil)
	var got []*httphead.Header
	for range 2 {
		c := dial(t, addr)
		for range 2 {
			c.send(get("/"))
			if _, body := c.read("GET"); body != "ok" {
				t.Fatalf("answer %q", body)
			}
			got = append(got, <-seen)
		}
	}
	if got[0] == nil || got[0] != got[1] || got[2] == nil || got[2] != got[3] || got[0] == got[2] {
		t.Errorf("the requests carried %p %p on one connection and %p %p on another, want one non-nil each", got[0], got[1], got[2], got[3])
	}
}

// A connection's requests share its context, which a request's end does
// not end; the connection's end does.
func TestLane_ConnectionContext(t *testing.T) {
	seen := make(chan context.Context, 2)
	_, addr := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Context()
		io.WriteString(w, "ok")
	}), nil, nil)
	c := dial(t, addr)
	var ctxs []context.Context
	for range 2 {
		c.send(get("/"))
		if _, body := c.read("GET"); body != "ok" {
			t.Fatalf("answer %q", body)
		}
		ctxs = append(ctxs, <-seen)
	}
	if ctxs[0] != ctxs[1] || ctxs[0].Err() != nil {
		t.Fatalf("the connection's requests had contexts %p (%v) and %p, want one, not ended", ctxs[0], ctxs[0].Err(), ctxs[1])
	}
	c.c.Close()
	select {
	case <-ctxs[0].Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the context outlived its connection by 10 s")
	}
}
