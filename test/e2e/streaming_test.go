package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testutil"
)

// echoHandlers send the request body back as it arrives.
var echoHandlers = []struct{ name, handler string }{
	{"node_style", "export default function (req, res) {\n  req.pipe(res);\n}\n"},
	{"web_style", "export default {\n  fetch(request) {\n    return new Response(request.body);\n  },\n};\n"},
}

// chunkedBody returns a body of b that the client must send chunked: its
// length is unknown to net/http. The writer ends when b is written or the
// client stops reading.
func chunkedBody(b []byte) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		for off := 0; off < len(b); off += 32 << 10 {
			end := min(off+32<<10, len(b))
			if _, err := pw.Write(b[off:end]); err != nil {
				return
			}
		}
		pw.Close()
	}()
	return pr
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStreaming_BodyRoundTrips(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	want := randomBytes(t, 1<<20)
	for _, h := range echoHandlers {
		url := s.Deploy(testutil.WriteProject(t, "echo-"+strings.ReplaceAll(h.name, "_", "-"),
			map[string]string{"index.mjs": h.handler}))
		for _, chunked := range []bool{false, true} {
			name := h.name + "/content_length"
			if chunked {
				name = h.name + "/chunked"
			}
			t.Run(name, func(t *testing.T) {
				var body io.Reader = bytes.NewReader(want)
				if chunked {
					rc := chunkedBody(want)
					defer rc.Close()
					body = rc
				}
				r := mustSend(t, 60*time.Second, "POST", url, "", body)
				if r.status != 200 {
					t.Fatalf("status %d (%.200s), want 200", r.status, r.body)
				}
				if !bytes.Equal(r.body, want) {
					t.Errorf("echoed %d bytes, want the %d sent, unchanged (first difference at %d)",
						len(r.body), len(want), firstDiff(r.body, want))
				}
			})
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestStreaming_FirstChunkArrivesBeforeTheEnd(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	tests := []struct{ name, handler string }{
		{"web_style", `
const enc = new TextEncoder();
export default {
  fetch(request) {
    if (request.url.includes('warm')) return new Response('warm');
    const body = new ReadableStream({
      start(controller) {
        controller.enqueue(enc.encode('first\n'));
        setTimeout(() => { controller.enqueue(enc.encode('second\n')); controller.close(); }, 1500);
      },
    });
    return new Response(body, { headers: { 'content-type': 'text/plain' } });
  },
};
`},
		{"node_style", `
export default function (req, res) {
  if (req.url.includes('warm')) return res.end('warm');
  res.setHeader('content-type', 'text/plain');
  res.write('first\n');
  setTimeout(() => res.end('second\n'), 1500);
}
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := s.Deploy(testutil.WriteProject(t, "stream-"+strings.ReplaceAll(tt.name, "_", "-"),
				map[string]string{"index.mjs": tt.handler}))
			if w := mustSend(t, 30*time.Second, "GET", url+"?warm", "", nil); w.status != 200 {
				t.Fatalf("warm-up: %d %s", w.status, w.body)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
			start := time.Now()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d (%s), want 200", resp.StatusCode, b)
			}
			br := bufio.NewReader(resp.Body)
			first, err := br.ReadString('\n')
			firstAt := time.Since(start)
			if err != nil || first != "first\n" {
				t.Fatalf("first line %q, %v; want \"first\\n\"", first, err)
			}
			rest, err := io.ReadAll(br)
			total := time.Since(start)
			if err != nil || string(rest) != "second\n" {
				t.Errorf("rest %q, %v; want \"second\\n\"", rest, err)
			}
			if firstAt >= time.Second {
				t.Errorf("first chunk after %s, want under 1 s (the handler wrote it at once)", firstAt)
			}
			if total < 1500*time.Millisecond {
				t.Errorf("response ended after %s, want at least 1.5 s (the handler ends it then)", total)
			}
			t.Logf("first chunk after %s, end after %s", firstAt, total)
		})
	}
}

// countHandler answers the number of request body bytes it read.
const countHandler = `
export default function (req, res) {
  let n = 0;
  req.on('data', (c) => { n += c.length; });
  req.on('end', () => res.end(String(n)));
}
`

func TestStreaming_BodyOverLimitIs413(t *testing.T) {
	const limit = 1_000_000
	s := testutil.StartServe(t, testutil.ServeOptions{Args: []string{"--max-body-bytes", strconv.Itoa(limit)}})
	url := s.Deploy(testutil.WriteProject(t, "count", map[string]string{"index.mjs": countHandler}))
	if w := mustSend(t, 30*time.Second, "GET", url, "", nil); w.status != 200 {
		t.Fatalf("warm-up: %d %s", w.status, w.body)
	}
	tests := []struct {
		name    string
		size    int
		chunked bool
		want    int // status
	}{
		{"over_content_length", 2_000_000, false, 413},
		{"over_chunked", 2_000_000, true, 413},
		// The client is still sending long after the answer: it must still
		// read the 413, not a reset connection.
		{"far_over_chunked", 20_000_000, true, 413},
		{"far_over_content_length", 20_000_000, false, 413},
		{"under_content_length", 900_000, false, 200},
		{"under_chunked", 900_000, true, 200},
		{"at_limit_chunked", limit, true, 200},
		{"one_over_chunked", limit + 1, true, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := randomBytes(t, tt.size)
			var body io.Reader = bytes.NewReader(b)
			if tt.chunked {
				rc := chunkedBody(b)
				defer rc.Close()
				body = rc
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			r, err := send(ctx, "POST", url, "application/json", body)
			if err != nil {
				t.Fatalf("got no response: %v; want %d", err, tt.want)
			}
			if tt.want == 200 {
				if r.status != 200 || string(r.body) != strconv.Itoa(tt.size) {
					t.Errorf("got %d %q, want 200 %q", r.status, r.body, fmt.Sprint(tt.size))
				}
				return
			}
			if err := checkPlatformError(r, tt.want, "FUNCTION_PAYLOAD_TOO_LARGE"); err != nil {
				t.Error(err)
			}
		})
	}
}

// A client that stops taking a streamed response is cut off after
// --send-timeout, and the invocation ends: node sees its response close,
// long before maxDuration.
func TestStreaming_StalledClientIsCutOff(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{Args: []string{"--send-timeout", "1s"}})
	url := s.Deploy(testutil.WriteProject(t, "stalled", map[string]string{
		"index.mjs": `import { once } from 'node:events';
export default async function (req, res) {
  if (req.url.includes('warm')) return res.end('warm');
  res.on('close', () => console.log('closed after ' + sent + ' bytes'));
  const chunk = Buffer.alloc(64 << 10, 's');
  let sent = 0;
  while (!res.destroyed) {
    sent += chunk.length;
    if (!res.write(chunk)) await Promise.race([once(res, 'drain'), once(res, 'close')]);
  }
}
`,
		"shoal.json": `{ "maxDuration": 120 }`,
	}))
	if w := mustSend(t, 30*time.Second, "GET", url+"?warm", "", nil); w.status != 200 {
		t.Fatalf("warm-up: %d %s", w.status, w.body)
	}
	// A small receive buffer, set before the connection opens so that the
	// window fits it: the response fills it at once.
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		c.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10) })
		return err
	}}
	conn, err := d.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /stalled/ HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// The start of the answer, then nothing more.
	if _, err := io.ReadFull(conn, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	lctx, lcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer lcancel()
	testutil.Eventually(t, 30*time.Second, "the function's response closed", func() bool {
		out, _, _ := s.CLI(lctx, "logs", "stalled")
		return strings.Contains(out, "closed after ")
	})
	// And serve closed the client's connection: past what the kernel still
	// holds of the response, the client reads its end, not a deadline.
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(io.Discard, conn); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the client's connection is still open: %v", err)
	}
}
