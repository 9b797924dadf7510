package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// start serves srv on a unix socket, and carry on a loopback listener in
// front of it; it returns the listener's address.
func start(t *testing.T, srv *http.Server, carry func(net.Conn, string)) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "server.sock")
	sln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(sln)
	t.Cleanup(func() { srv.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serve(ln, sock, carry)
	return ln.Addr().String()
}

// TestRelay sends keep-alive HTTP requests through the relay to a server on
// a unix socket, and checks that the server's connection ends with the
// client's.
func TestRelay(t *testing.T) {
	var open atomic.Int32
	addr := start(t, &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, len(body))
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				open.Add(1)
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		},
	}, relay)

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	exchange(t, c, bufio.NewReader(c), "")
	if n := open.Load(); n != 1 {
		t.Errorf("%d connections to the server, want 1 for the client's", n)
	}
	c.Close()
	for deadline := time.Now().Add(10 * time.Second); open.Load() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the server's connection outlived the client's")
		}
	}
}

// TestRelay_Unreachable closes the client's connection when the server's
// socket cannot be reached.
func TestRelay_Unreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serve(ln, filepath.Join(t.TempDir(), "none.sock"), relay)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read %d bytes, %v; want EOF", n, err)
	}
}

// exchange sends, on c, a GET, a POST with a body larger than the hop's
// buffers, and a GET, to the echo of start's servers, checks that each
// answer's body is the echo followed by suffix, and returns the answers'
// headers.
func exchange(t *testing.T, c net.Conn, br *bufio.Reader, suffix string) []http.Header {
	t.Helper()
	var headers []http.Header
	big := strings.Repeat("x", 100<<10)
	for i, req := range []string{
		"GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: " + fmt.Sprint(len(big)) + "\r\n\r\n" + big,
		"GET /c HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		want := []string{"GET /a 0", "POST /b " + fmt.Sprint(len(big)), "GET /c 0"}[i] + suffix
		if string(body) != want {
			t.Errorf("request %d: body %q, want %q", i, body, want)
		}
		headers = append(headers, resp.Header)
	}
	return headers
}
