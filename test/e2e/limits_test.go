package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testutil"
)

// limitsHandler answers ?buffered=N with N bytes in one res.end (node sets
// the Content-Length), ?streamed=N with N bytes written in 64 KB chunks (no
// Content-Length: chunked), and anything else with its process id.
const limitsHandler = instanceJS + `
import { once } from 'node:events';

export default async function (req, res) {
  const q = new URL(req.url, 'http://x').searchParams;
  if (q.has('buffered')) {
    return res.end(Buffer.alloc(Number(q.get('buffered')), 'b'));
  }
  if (q.has('streamed')) {
    const n = Number(q.get('streamed'));
    const chunk = Buffer.alloc(64 << 10, 's');
    res.setHeader('content-type', 'application/octet-stream');
    for (let sent = 0; sent < n; sent += chunk.length) {
      if (!res.write(chunk.subarray(0, Math.min(chunk.length, n - sent)))) await once(res, 'drain');
    }
    return res.end();
  }
  res.end(instance);
}
`

// headersOf returns n headers x-h<i> whose values are size bytes each.
func headersOf(n, size int) http.Header {
	h := http.Header{}
	for i := range n {
		h.Set(fmt.Sprintf("x-h%d", i), strings.Repeat("v", size))
	}
	return h
}

// limitCase is one request against a limit and what it must get.
type limitCase struct {
	name   string
	path   string // appended to the project's URL
	header http.Header
	status int
	code   string // the platform error's code unless status is 200
}

func checkLimits(t *testing.T, url string, tests []limitCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.header.Clone()
			if h == nil {
				h = http.Header{}
			}
			h.Set("accept", "application/json")
			r := mustSendWith(t, "GET", url+tt.path, h, "")
			if tt.status == 200 {
				if r.status != 200 {
					t.Errorf("got %d %.300s, want 200", r.status, r.body)
				}
				return
			}
			if err := checkPlatformError(r, tt.status, tt.code); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestLimits_Request(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "limits", map[string]string{"index.mjs": limitsHandler}))
	if w := mustSend(t, 30*time.Second, "GET", url, "", nil); w.status != 200 {
		t.Fatalf("warm-up: %d %s", w.status, w.body)
	}
	tests := []limitCase{
		{"one_header_under", "", headersOf(1, 15<<10), 200, ""},
		{"one_header_over", "", headersOf(1, 17<<10), 431, "REQUEST_HEADER_TOO_LARGE"},
		{"headers_under_in_sum", "", headersOf(2, 15<<10), 200, ""},
		{"headers_over_in_sum", "", headersOf(3, 15<<10), 431, "REQUEST_HEADER_TOO_LARGE"},
		{"url_under", "?q=" + strings.Repeat("u", 13<<10), nil, 200, ""},
		{"url_over", "?q=" + strings.Repeat("u", 15<<10), nil, 414, "URL_TOO_LONG"},
		{"url_and_headers_under", "?q=" + strings.Repeat("u", 13<<10), headersOf(2, 15<<10), 200, ""},
	}
	checkLimits(t, url, tests)
}

func TestLimits_Response(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "responses", map[string]string{"index.mjs": limitsHandler}))
	pid := mustSend(t, 30*time.Second, "GET", url, "", nil)
	if pid.status != 200 {
		t.Fatalf("warm-up: %d %s", pid.status, pid.body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	before := usage(ctx, t, s, "responses")

	t.Run("buffered_4MB", func(t *testing.T) {
		r := mustSend(t, 60*time.Second, "GET", url+"?buffered=4000000", "", nil)
		if r.status != 200 || len(r.body) != 4_000_000 || bytes.Count(r.body, []byte("b")) != len(r.body) {
			t.Errorf("got %d with %d bytes, want 200 with the 4000000 sent", r.status, len(r.body))
		}
	})
	t.Run("buffered_5MB", func(t *testing.T) {
		r := mustSend(t, 60*time.Second, "GET", url+"?buffered=5000000", "application/json", nil)
		if err := checkPlatformError(r, 500, "FUNCTION_RESPONSE_PAYLOAD_TOO_LARGE"); err != nil {
			t.Error(err)
		}
		// serve's log says why.
		testutil.Eventually(t, 10*time.Second, "serve logs the error", func() bool {
			return strings.Contains(s.Output(), "FUNCTION_RESPONSE_PAYLOAD_TOO_LARGE")
		})
	})
	t.Run("streamed_20MB", func(t *testing.T) {
		const n = 20_000_000
		r := mustSend(t, 120*time.Second, "GET", url+"?streamed="+strconv.Itoa(n), "", nil)
		if r.status != 200 || len(r.body) != n || bytes.Count(r.body, []byte("s")) != n {
			t.Errorf("got %d with %d bytes, want 200 with the %d written", r.status, len(r.body), n)
		}
		if cl := r.header.Get("content-length"); cl != "" {
			t.Errorf("content-length %q, want none: the response was streamed", cl)
		}
	})
	t.Run("same_instance_serves_after", func(t *testing.T) {
		r := mustSend(t, 30*time.Second, "GET", url, "", nil)
		if r.status != 200 || string(r.body) != string(pid.body) {
			t.Errorf("got %d %q, want 200 from the same process, pid %s", r.status, r.body, pid.body)
		}
	})
	t.Run("metered_as_500", func(t *testing.T) {
		// The warm-up's record may land after before was read, so count
		// from it: 4 invocations since, one of them an error.
		testutil.Eventually(t, 10*time.Second, "the invocations metered", func() bool {
			u := usage(ctx, t, s, "responses")
			return u.Invocations-before.Invocations >= 4
		})
		u := usage(ctx, t, s, "responses")
		if errs := u.Errors - before.Errors; errs != 1 {
			t.Errorf("%d errors metered, want 1: the 5 MB response's 500", errs)
		}
	})
}

// A Web style Response made from a string or bytes is a buffered response:
// it carries its Content-Length, and over the limit it is the platform's
// 500, while one built from a stream is not bounded.
func TestLimits_WebResponse(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "web-responses", map[string]string{"index.mjs": `
export default {
  fetch(request) {
    const q = new URL(request.url).searchParams;
    const n = Number(q.get('n'));
    switch (q.get('as')) {
      case 'string': return new Response('w'.repeat(n));
      case 'bytes': return new Response(new Uint8Array(n).fill(119));
      case 'json': return Response.json({ text: 'é'.repeat(n) });
      case 'stream': return new Response(new Blob(['w'.repeat(n)]).stream());
    }
    return new Response(null, { status: 204 });
  },
};
`}))
	tests := []struct {
		query  string
		status int
		length string // the Content-Length; "" for none
	}{
		{"?as=string&n=1000", 200, "1000"},
		{"?as=bytes&n=4000000", 200, "4000000"},
		{"?as=json&n=3", 200, "17"}, // {"text":"ééé"}, é in two bytes
		{"?as=stream&n=1000", 200, ""},
		{"?as=string&n=5000000", 500, ""},
		{"?as=stream&n=5000000", 200, ""},
		{"", 204, ""},
	}
	for _, tt := range tests {
		r := mustSend(t, 60*time.Second, "GET", url+tt.query, "application/json", nil)
		if tt.status == 500 {
			if err := checkPlatformError(r, 500, "FUNCTION_RESPONSE_PAYLOAD_TOO_LARGE"); err != nil {
				t.Errorf("%s: %v", tt.query, err)
			}
			continue
		}
		if r.status != tt.status || r.header.Get("content-length") != tt.length {
			t.Errorf("%s: %d with content-length %q, want %d with %q", tt.query, r.status, r.header.Get("content-length"), tt.status, tt.length)
		}
		if tt.length != "" && strconv.Itoa(len(r.body)) != tt.length {
			t.Errorf("%s: %d bytes of body, want %s", tt.query, len(r.body), tt.length)
		}
	}
}

func TestLimits_Flags(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{Args: []string{
		"--max-url-bytes", "1000",
		"--max-header-bytes", "2000",
		"--max-headers-bytes", "5000",
		"--max-response-bytes", "100000",
	}})
	url := s.Deploy(testutil.WriteProject(t, "flags", map[string]string{"index.mjs": limitsHandler}))
	if w := mustSend(t, 30*time.Second, "GET", url, "", nil); w.status != 200 {
		t.Fatalf("warm-up: %d %s", w.status, w.body)
	}
	tests := []limitCase{
		{"url_under", "?q=" + strings.Repeat("u", 900), nil, 200, ""},
		{"url_over", "?q=" + strings.Repeat("u", 1000), nil, 414, "URL_TOO_LONG"},
		{"one_header_under", "", headersOf(1, 1900), 200, ""},
		{"one_header_over", "", headersOf(1, 2000), 431, "REQUEST_HEADER_TOO_LARGE"},
		{"headers_over_in_sum", "", headersOf(3, 1900), 431, "REQUEST_HEADER_TOO_LARGE"},
		{"response_under", "?buffered=90000", nil, 200, ""},
		{"response_over", "?buffered=110000", nil, 500, "FUNCTION_RESPONSE_PAYLOAD_TOO_LARGE"},
		{"streamed_over", "?streamed=1000000", nil, 200, ""},
	}
	checkLimits(t, url, tests)
}

// Header limits raised with serve's flags reach the function: node's own
// bound does not cut them short.
func TestLimits_RaisedHeaderLimits(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{Args: []string{
		"--max-header-bytes", "200000",
		"--max-headers-bytes", "400000",
	}})
	url := s.Deploy(testutil.WriteProject(t, "big-headers", map[string]string{"index.mjs": `
export default (req, res) => res.end(String(req.headers['x-h0'].length));`}))
	r := mustSendWith(t, "GET", url, headersOf(1, 150000), "")
	if r.status != 200 || string(r.body) != "150000" {
		t.Errorf("a 150 KB header under a 200 KB limit: %d %q, want 200 and its length", r.status, r.body)
	}
}

// A client's connection stays open for its next request, and closes after
// --idle-timeout with none.
func TestLimits_IdleConnectionsClose(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{Args: []string{"--idle-timeout", "1s"}})
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	for i := range 2 {
		if _, err := io.WriteString(conn, "GET /nothing/ HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d on the same connection: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("request %d: got %d, want 404", i, resp.StatusCode)
		}
	}
	idle := time.Now()
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("got %v, want the connection closed (EOF)", err)
	}
	if d := time.Since(idle); d < 500*time.Millisecond {
		t.Errorf("closed after %s idle, want about 1 s", d)
	}
}
