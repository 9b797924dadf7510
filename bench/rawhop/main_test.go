package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRawhop sends keep-alive HTTP requests through rawhop to a server on a
// unix socket: the server sees the added headers, the client gets the
// server's answers without its hop-by-hop headers and with an id and a
// date, and a response rawhop does not frame ends the connection.
func TestRawhop(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "server.sock")
	sln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/chunked" {
			w.Write([]byte("a"))
			w.(http.Flusher).Flush()
			return
		}
		w.Header().Set("Connection", "keep-alive")
		w.Header().Set("Keep-Alive", "timeout=5")
		fmt.Fprintf(w, "%s %s %d %s %s", r.Method, r.URL.Path, len(body), r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Shoal-Id"))
	})}
	go srv.Serve(sln)
	t.Cleanup(func() { srv.Close() })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serve(ln, sock)

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	// A body larger than rawhop's buffers goes through in pieces.
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
		want := []string{"GET /a 0", "POST /b " + fmt.Sprint(len(big)), "GET /c 0"}[i] + " 127.0.0.1 0123456789abcdef"
		if string(body) != want {
			t.Errorf("request %d: body %q, want %q", i, body, want)
		}
		if h := resp.Header; h.Get("Keep-Alive") != "" || h.Get("Connection") != "" || h.Get("X-Shoal-Id") == "" || h.Get("Date") == "" {
			t.Errorf("request %d: header %v, want no Connection or Keep-Alive, an X-Shoal-Id and a Date", i, h)
		}
	}
	if _, err := io.WriteString(c, "GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if b, err := br.ReadByte(); err == nil {
		t.Fatalf("read %q after a chunked response, want the connection closed", b)
	}
}
