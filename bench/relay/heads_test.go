package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
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
	})}, rewriter(dialSocket))

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

// TestRelay_HeadsOverLanes sends keep-alive requests through rawlane
// (-heads -lanes) to bench/hello-node.mjs, the node hello.sh measures
// against: each client connection's requests reach node over a lane of
// its own (DialLane fails where node answers the lane's request without
// taking the lane), and the lane's FIFOs are gone from beside the socket
// once node has them open.
func TestRelay_HeadsOverLanes(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	sock := filepath.Join(t.TempDir(), "node.sock")
	cmd := exec.Command(node, "../hello-node.mjs", "0", sock)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), sock) {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("node did not listen on its socket within 30 s")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serve(ln, sock, rewriter(dialLane))

	for i := range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for j := range 3 {
			if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("connection %d, request %d: %v (the relay's lane failed?)", i, j, err)
			}
			body, _ := io.ReadAll(resp.Body)
			if string(body) != "hello, world\n" || resp.Header.Get("X-Shoal-Id") == "" {
				t.Errorf("connection %d, request %d: %q with header %v, want hello's answer with an id", i, j, body, resp.Header)
			}
		}
	}
	if left, _ := filepath.Glob(sock + ".lane-*"); len(left) != 0 {
		t.Errorf("lane FIFOs left beside the socket: %q", left)
	}
}
