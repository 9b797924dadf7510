package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func startListener(t *testing.T) *Listener {
	t.Helper()
	l, err := Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return l
}

// serveInstance dials l as id and serves h on the tunnel until the test ends.
func serveInstance(t *testing.T, l *Listener, id, token string, h http.Handler) <-chan struct{} {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := Dial(ctx, l.Addr().String(), id, token)
	if err != nil {
		cancel()
		t.Fatalf("Dial: %v", err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		Serve(ctx, c, h)
	}()
	t.Cleanup(func() { cancel(); <-served })
	return served
}

func TestTunnel_RoundTrip(t *testing.T) {
	l := startListener(t)
	p := l.Expect("inst-1")
	serveInstance(t, l, "inst-1", p.Token(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("x-got", r.URL.Path)
		w.Write(append([]byte("echo:"), body...))
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := p.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	defer conn.Close()
	if got, want := conn.ID(), "inst-1"; got != want {
		t.Errorf("ID() = %q, want %q", got, want)
	}
	req, _ := http.NewRequest("POST", "http://instance/a/b", strings.NewReader("hello"))
	resp, err := conn.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got, want := string(body), "echo:hello"; got != want {
		t.Errorf("body = %q, want %q", got, want)
	}
	if got, want := resp.Header.Get("x-got"), "/a/b"; got != want {
		t.Errorf("path = %q, want %q", got, want)
	}
}

func TestTunnel_BadConnectionsAreDropped(t *testing.T) {
	l := startListener(t)
	p := l.Expect("good")
	tests := []struct {
		name  string
		hello string
	}{
		{"garbage", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"wrong_token", "SHOAL-TUNNEL/1 good wrongtoken\n"},
		{"unknown_id", "SHOAL-TUNNEL/1 other " + p.Token() + "\n"},
		{"too_long", "SHOAL-TUNNEL/1 good " + strings.Repeat("a", 300) + "\n"},
		{"no_newline_then_close", "SHOAL-TUNNEL/1 good " + p.Token()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte(tt.hello))
			if tt.name == "no_newline_then_close" {
				c.(*net.TCPConn).CloseWrite()
			}
			c.SetReadDeadline(time.Now().Add(HandshakeTimeout + 2*time.Second))
			n, err := c.Read(make([]byte, 16))
			if n != 0 || err == nil {
				t.Errorf("read = %d, %v; want the connection closed with no answer", n, err)
			}
		})
	}
	// The good instance still gets in after all that.
	serveInstance(t, l, "good", p.Token(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := p.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait after bad connections: %v", err)
	}
	conn.Close()
}

func TestTunnel_TokenIsOneTime(t *testing.T) {
	l := startListener(t)
	p := l.Expect("once")
	serveInstance(t, l, "once", p.Token(), http.NotFoundHandler())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := Dial(ctx, l.Addr().String(), "once", p.Token()); err == nil {
		t.Fatal("second Dial with the same token succeeded, want refused")
	}
}

func TestTunnel_SlowHandshakeDoesNotBlockOthers(t *testing.T) {
	l := startListener(t)
	slow, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.Write([]byte("SHOAL-TUN")) // and never more
	p := l.Expect("fast")
	serveInstance(t, l, "fast", p.Token(), http.NotFoundHandler())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := p.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait while another handshake hangs: %v", err)
	}
	conn.Close()
}

func TestTunnel_CancelResetsStream(t *testing.T) {
	l := startListener(t)
	p := l.Expect("c")
	cancelled := make(chan struct{})
	started := make(chan struct{})
	serveInstance(t, l, "c", p.Token(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		close(started)
		<-r.Context().Done()
		close(cancelled)
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rctx, rcancel := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(rctx, "GET", "http://instance/", nil)
	resp, err := conn.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	<-started
	rcancel()
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("handler context not cancelled after the invoker cancelled the request")
	}
}

func TestTunnel_DoneWhenInstanceGoes(t *testing.T) {
	l := startListener(t)
	p := l.Expect("d")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, l.Addr().String(), "d", p.Token())
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(ctx)
	served := make(chan struct{})
	go func() { defer close(served); Serve(sctx, c, http.NotFoundHandler()) }()
	conn, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if !conn.Usable() {
		t.Fatal("Usable() = false on a fresh connection")
	}
	scancel()
	<-served
	select {
	case <-conn.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the instance went away")
	}
	if conn.Usable() {
		t.Error("Usable() = true after the instance went away")
	}
}

func TestPending_WaitAfterClose(t *testing.T) {
	l, err := Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	p := l.Expect("x")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	cancel()
	<-done
	if _, err := p.Wait(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Wait after close = %v, want ErrClosed", err)
	}
}

func TestParseHello(t *testing.T) {
	tests := []struct {
		name, line, id, token string
		ok                    bool
	}{
		{"valid", "SHOAL-TUNNEL/1 abc-1 tok_EN\n", "abc-1", "tok_EN", true},
		{"no_newline", "SHOAL-TUNNEL/1 abc tok", "", "", false},
		{"wrong_version", "SHOAL-TUNNEL/2 abc tok\n", "", "", false},
		{"three_words", "SHOAL-TUNNEL/1 a b c\n", "", "", false},
		{"empty_id", "SHOAL-TUNNEL/1  tok\n", "", "", false},
		{"bad_char", "SHOAL-TUNNEL/1 a/b tok\n", "", "", false},
		{"crlf", "SHOAL-TUNNEL/1 a tok\r\n", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, token, err := parseHello([]byte(tt.line))
			if got := err == nil; got != tt.ok {
				t.Fatalf("parseHello(%q) err = %v, want ok=%v", tt.line, err, tt.ok)
			}
			if id != tt.id || token != tt.token {
				t.Errorf("parseHello(%q) = %q, %q, want %q, %q", tt.line, id, token, tt.id, tt.token)
			}
		})
	}
}

func FuzzParseHello(f *testing.F) {
	f.Add([]byte("SHOAL-TUNNEL/1 abc tok\n"))
	f.Add([]byte("SHOAL-TUNNEL/1 \n"))
	f.Add([]byte("\x00\xff"))
	f.Fuzz(func(t *testing.T, line []byte) {
		id, token, err := parseHello(line)
		if err != nil {
			return
		}
		again, err := formatHello(id, token)
		if err != nil {
			t.Fatalf("parsed %q but cannot format it back: %v", line, err)
		}
		if string(again) != string(line) {
			t.Fatalf("round trip %q -> %q", line, again)
		}
	})
}

func TestTunnel_Reports(t *testing.T) {
	l := startListener(t)
	p := l.Expect("inst-r")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := Dial(ctx, l.Addr().String(), "inst-r", p.Token())
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	served := make(chan struct{})
	go func() {
		defer close(served)
		Serve(ctx, c, WithReports(ctx, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "invoked")
		}), func() Report {
			i := n.Add(1)
			return Report{TS: i, CPUMs: 10 * i, Waited: []Waited{{ID: "w", From: i, To: i + 1}}}
		}, nil))
	}()
	conn := waitConn(t, p)

	// Invocations still reach the handler.
	req, _ := http.NewRequest("GET", "http://instance/", nil)
	resp, err := conn.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if body, _ := io.ReadAll(resp.Body); string(body) != "invoked" {
		t.Errorf("invocation got %q", body)
	}

	reports := make(chan Report, 100)
	streamed := make(chan error, 1)
	go func() { streamed <- conn.Reports(context.Background(), func(r Report) { reports <- r }) }()
	began := time.Now()
	for i := range 3 {
		select {
		case r := <-reports:
			if r.CPUMs != 10*r.TS || len(r.Waited) != 1 || r.Waited[0].To != r.TS+1 {
				t.Errorf("report %d: %+v", i, r)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no report within 5 s")
		}
	}
	if d := time.Since(began); d < ReportInterval {
		t.Errorf("3 reports in %v, want them %v apart", d, ReportInterval)
	}
	// The instance drains: the stream ends at once, not after DrainTimeout.
	cancel()
	select {
	case err := <-streamed:
		if err != nil {
			t.Errorf("Reports: %v", err)
		}
	case <-time.After(DrainTimeout / 2):
		t.Fatal("report stream held the drain")
	}
	<-served
}

// waitConn waits for p's instance to connect; the connection closes when
// the test ends.
func waitConn(t *testing.T, p *Pending) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestTunnel_IdleReportsSlowDown(t *testing.T) {
	l := startListener(t)
	p := l.Expect("inst-idle")
	var busy atomic.Bool
	serveInstance(t, l, "inst-idle", p.Token(), WithReports(context.Background(), http.NotFoundHandler(), func() Report {
		if busy.Load() {
			return Report{InFlight: 1}
		}
		return Report{}
	}, nil))
	conn := waitConn(t, p)
	var n atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	streamed := make(chan struct{})
	go func() {
		defer close(streamed)
		conn.Reports(ctx, func(Report) { n.Add(1) })
	}()
	time.Sleep(1500 * time.Millisecond)
	idle := n.Load()
	busy.Store(true)
	time.Sleep(1500 * time.Millisecond)
	busyReports := n.Load() - idle
	cancel()
	<-streamed
	// Idle: the first report and about one a second. Busy: about ten a
	// second (generous bounds: the machine is shared).
	if idle < 1 || idle > 4 {
		t.Errorf("%d reports in 1.5 s idle, want 2 or 3", idle)
	}
	if busyReports < 8 {
		t.Errorf("%d reports in 1.5 s busy, want about 15", busyReports)
	}
}

// TestTunnel_IdleSamplesSlowDown: with a working channel, an idle
// instance is sampled about once a second rather than ten times, and a
// signal on working gets the next report out at once.
func TestTunnel_IdleSamplesSlowDown(t *testing.T) {
	l := startListener(t)
	p := l.Expect("inst-idle")
	var busy atomic.Bool
	var samples atomic.Int64
	working := make(chan struct{}, 1)
	serveInstance(t, l, "inst-idle", p.Token(), WithReports(context.Background(), http.NotFoundHandler(), func() Report {
		samples.Add(1)
		if busy.Load() {
			return Report{InFlight: 1}
		}
		return Report{}
	}, working))
	conn := waitConn(t, p)
	reports := make(chan Report, 100)
	ctx, cancel := context.WithCancel(context.Background())
	streamed := make(chan struct{})
	go func() {
		defer close(streamed)
		conn.Reports(ctx, func(r Report) { reports <- r })
	}()
	defer func() { cancel(); <-streamed }()
	time.Sleep(1500 * time.Millisecond)
	// The first sample and one a second (generous: the machine is shared).
	if n := samples.Load(); n < 1 || n > 4 {
		t.Errorf("%d samples in 1.5 s idle, want 2 or 3", n)
	}
	// Signalled right after an idle report, so that without the signal
	// the report of work would be a second away.
	for len(reports) > 0 {
		<-reports
	}
	select {
	case <-reports:
	case <-time.After(5 * time.Second):
		t.Fatal("no idle report within 5 s")
	}
	busy.Store(true)
	signalled := time.Now()
	working <- struct{}{}
	for r := range reports {
		if r.InFlight == 1 {
			break
		}
	}
	if d := time.Since(signalled); d > IdleReportInterval/2 {
		t.Errorf("the report of work came %v after working said so, want it at once", d)
	}
	before := samples.Load()
	time.Sleep(time.Second)
	if n := samples.Load() - before; n < 5 {
		t.Errorf("%d samples in 1 s busy, want about 10", n)
	}
}

func TestTunnel_SetLoops(t *testing.T) {
	l := startListener(t)
	p := l.Expect("inst-loops")
	var asked atomic.Int64
	invoked := make(chan string, 10)
	serveInstance(t, l, "inst-loops", p.Token(), WithLoops(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		invoked <- r.URL.Path
	}), func(n int) error {
		if n == 13 {
			return errors.New("no room for 13")
		}
		asked.Store(int64(n))
		return nil
	}))
	conn := waitConn(t, p)
	ctx := context.Background()
	if err := conn.SetLoops(ctx, 3); err != nil || asked.Load() != 3 {
		t.Errorf("SetLoops(3) = %v, the instance got %d; want nil and 3", err, asked.Load())
	}
	if err := conn.SetLoops(ctx, 13); err == nil || !strings.Contains(err.Error(), "500") {
		t.Errorf("SetLoops(13) = %v, want the instance's refusal (500)", err)
	}
	if err := conn.SetLoops(ctx, 0); err == nil || !strings.Contains(err.Error(), "400") || asked.Load() != 3 {
		t.Errorf("SetLoops(0) = %v, the instance got %d; want a 400 and nothing asked", err, asked.Load())
	}
	if len(invoked) != 0 {
		t.Errorf("%d requests for loops reached the handler, want none", len(invoked))
	}
}

// TestListener_Adopt: a socket pair's end is adopted for an expected
// instance without hello or token once its runtime says it is ready, and
// carries invocations; an unexpected id, or a runtime that goes before it
// is ready, gets the connection closed.
func TestListener_Adopt(t *testing.T) {
	l := startListener(t)
	ours, theirs := net.Pipe()
	p := l.Expect("inst-a")
	l.Adopt("inst-a", ours)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	select {
	case <-p.ch:
		t.Fatal("the connection was handed over before the runtime was ready")
	case <-time.After(100 * time.Millisecond):
	}
	go func() {
		if err := Ready(theirs); err != nil {
			t.Error(err)
			return
		}
		Serve(ctx, theirs, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("adopted " + r.URL.Path))
		}))
	}()
	conn := waitConn(t, p)
	defer conn.Close()
	req, _ := http.NewRequest("GET", "http://instance/x", nil)
	resp, err := conn.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "adopted /x" {
		t.Errorf("body %q, want %q", body, "adopted /x")
	}

	for _, tt := range []struct {
		name  string
		ready bool
	}{{"unexpected_id", true}, {"not_ready", false}} {
		t.Run(tt.name, func(t *testing.T) {
			stray, other := net.Pipe()
			defer other.Close()
			l.Adopt("nobody", stray)
			if tt.ready {
				if err := Ready(other); err != nil {
					t.Fatal(err)
				}
			} else {
				other.Write([]byte("HELLO?\n"))
			}
			other.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := other.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("the peer read %v, want EOF (closed)", err)
			}
		})
	}
}
