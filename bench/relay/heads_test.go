package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestRelay_Heads sends keep-alive HTTP requests through the relay with
// -heads (rawhop) to a server on a unix socket: the server sees the added
// headers, the client gets the server's answers without their hop-by-hop
// headers and with an id and a date, and a response rawhop does not frame
// ends the connection.
func TestRelay_Heads(t *testing.T) {
	addr := start(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/chunked" {
			w.Write([]byte("a"))
			w.(http.Flusher).Flush()
			return
		}
		w.Header().Set("Connection", "keep-alive")
		w.Header().Set("Keep-Alive", "timeout=5")
		fmt.Fprintf(w, "%s %s %d %s %s", r.Method, r.URL.Path, len(body), r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Shoal-Id"))
	})}, rewrite)

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i, h := range exchange(t, c, br, " 127.0.0.1 0123456789abcdef") {
		if h.Get("Keep-Alive") != "" || h.Get("Connection") != "" || h.Get("X-Shoal-Id") == "" || h.Get("Date") == "" {
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
