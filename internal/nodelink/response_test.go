package nodelink

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/shoal-dev/shoal/internal/httphead"
)

// responses are what node may send, and whether readPlain reads them itself
// (the rest go to http.ReadResponse).
var responses = []struct {
	name, raw string
	plain     bool
}{
	{"node's hello", "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\nx-shoal-entry-ms: 0.1\r\nConnection: keep-alive\r\nKeep-Alive: timeout=600\r\nContent-Length: 13\r\n\r\nhello, world\n", true},
	{"pipelined bytes stay", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\n", true},
	{"empty body", "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", true},
	{"repeated header", "HTTP/1.1 200 OK\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\nvary: a\r\nContent-Length: 1\r\n\r\nx", true},
	{"long uncommon name", "HTTP/1.1 201 Created\r\nx-a-header-name-longer-than-thirty-two-bytes: v\r\nX-Custom: w\r\nContent-Length: 1\r\n\r\nx", true},
	{"spaces around values", "HTTP/1.1 500 Internal Server Error\r\nA:  \t v w \t \r\nB:\r\nC:x\r\nContent-Length: 3\r\n\r\nabc", true},
	{"no reason, bytes over 127", "HTTP/1.1 599 \xe2\x9c\x93\r\nX-Utf8: \xe2\x9c\x93\r\nContent-Length: 1\r\n\r\nx", true},
	{"truncated body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", true},
	{"keep-alive in any case", "HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx", true},

	{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", false},
	{"early hints first", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", false},
	{"no content", "HTTP/1.1 204 No Content\r\n\r\n", false},
	{"not modified", "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", false},
	{"switching protocols", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", false},
	{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", false},
	{"until close", "HTTP/1.1 200 OK\r\n\r\nall of it", false},
	{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", false},
	{"signed length", "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx", false},
	{"empty length", "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\nx", false},
	{"trailer", "HTTP/1.1 200 OK\r\nTrailer: X-T\r\nContent-Length: 1\r\n\r\nx", false},
	{"folded header", "HTTP/1.1 200 OK\r\nA: b\r\n c\r\nContent-Length: 1\r\n\r\nx", false},
	{"space before colon", "HTTP/1.1 200 OK\r\nA : b\r\nContent-Length: 1\r\n\r\nx", false},
	{"control byte in value", "HTTP/1.1 200 OK\r\nA: b\x01c\r\nContent-Length: 1\r\n\r\nx", false},
	{"LF in the reason", "HTTP/1.1 200 \n\r\nContent-Length: 0\r\n\r\n", false},
	{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 1\n\nx", false},
	{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", false},
	{"no reason", "HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx", false},
	{"bad status", "HTTP/1.1 2x0 OK\r\nContent-Length: 1\r\n\r\nx", false},
	{"garbage", "hello\r\n\r\n", false},
	{"nothing", "", false},
}

// read is what a caller gets of raw: the response without its body, the
// body, the errors, and what is left to read after it.
type read struct {
	resp            http.Response
	err, bodyErr    string
	body, remaining string
}

func readWith(f func(*bufio.Reader, *http.Request) (*http.Response, error), r io.Reader, method string) read {
	br := bufio.NewReaderSize(r, 4<<10)
	req, _ := http.NewRequest(method, "http://node/", nil)
	resp, err := f(br, req)
	var out read
	if err != nil {
		out.err = err.Error()
		return out
	}
	body, berr := io.ReadAll(resp.Body)
	if berr != nil {
		out.bodyErr = berr.Error()
	}
	out.body = string(body)
	rest, _ := io.ReadAll(br)
	out.remaining = string(rest)
	resp.Body = nil
	out.resp = *resp
	return out
}

func TestReadResponse_AsNetHTTP(t *testing.T) {
	for _, tc := range responses {
		t.Run(tc.name, func(t *testing.T) {
			for _, method := range []string{"GET", "HEAD"} {
				want := readWith(readNetHTTP, strings.NewReader(tc.raw), method)
				got := readWith(readResponse, strings.NewReader(tc.raw), method)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s: got\n%+v\nwant, as http.ReadResponse reads it,\n%+v", method, got, want)
				}
				// A head that comes a byte at a time is not whole in the
				// buffer: http.ReadResponse reads it.
				slow := readWith(readResponse, iotest.OneByteReader(strings.NewReader(tc.raw)), method)
				if !reflect.DeepEqual(slow, want) {
					t.Errorf("%s, a byte at a time: got\n%+v\nwant\n%+v", method, slow, want)
				}
			}
			req, _ := http.NewRequest("GET", "http://node/", nil)
			br := bufio.NewReader(strings.NewReader(tc.raw))
			br.Peek(1)
			if plain := readPlain(br, req) != nil; plain != tc.plain {
				t.Errorf("readPlain read it: %v, want %v", plain, tc.plain)
			}
		})
	}
}

func TestReadResponse_Errors(t *testing.T) {
	req, _ := http.NewRequest("GET", "http://node/", nil)
	// node closed the connection before answering.
	if _, err := readResponse(bufio.NewReader(strings.NewReader("")), req); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("empty: %v, want io.ErrUnexpectedEOF as from http.ReadResponse", err)
	}
	broken := errors.New("broken")
	if _, err := readResponse(bufio.NewReader(iotest.ErrReader(broken)), req); !errors.Is(err, broken) {
		t.Errorf("read error: %v, want %v", err, broken)
	}
}

func FuzzReadResponse(f *testing.F) {
	for _, tc := range responses {
		f.Add(tc.raw, false)
	}
	f.Fuzz(func(t *testing.T, raw string, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		want := readWith(readNetHTTP, strings.NewReader(raw), method)
		got := readWith(readResponse, strings.NewReader(raw), method)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got\n%+v\nwant, as http.ReadResponse reads it,\n%+v", got, want)
		}
	})
}

// BenchmarkReadResponse reads node's response to hello with readResponse
// (plain) and with http.ReadResponse alone (net/http).
func BenchmarkReadResponse(b *testing.B) {
	raw := responses[0].raw
	for _, bc := range []struct {
		name string
		read func(*bufio.Reader, *http.Request) (*http.Response, error)
	}{{"plain", readResponse}, {"net/http", readNetHTTP}} {
		b.Run(bc.name, func(b *testing.B) {
			r := strings.NewReader(raw)
			br := bufio.NewReaderSize(r, 4<<10)
			req, _ := http.NewRequest("GET", "http://node/", nil)
			buf := make([]byte, 64)
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(raw)
				br.Reset(r)
				resp, err := bc.read(br, req)
				if err != nil {
					b.Fatal(err)
				}
				if n, _ := io.ReadFull(resp.Body, buf[:resp.ContentLength]); n != 13 {
					b.Fatalf("body of %d bytes", n)
				}
			}
		})
	}
}

// A request whose context carries a httphead.Header, as fastlane's do, has
// its response's header read there: each response's header is the one
// map, holding nothing of the response before, and reading one allocates
// neither the map nor its values.
func TestReadPlain_IntoTheRequestsHeader(t *testing.T) {
	var hd httphead.Header
	req, _ := http.NewRequestWithContext(httphead.WithHeader(context.Background(), &hd), "GET", "http://node/", nil)
	read := func(req *http.Request, raw string) *http.Response {
		br := bufio.NewReader(strings.NewReader(raw))
		br.Peek(1)
		return readPlain(br, req)
	}
	first := read(req, "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nContent-Length: 0\r\n\r\n")
	second := read(req, "HTTP/1.1 201 Created\r\nC: 3\r\nContent-Length: 0\r\n\r\n")
	if first == nil || second == nil {
		t.Fatal("readPlain did not read a plain response")
	}
	if reflect.ValueOf(first.Header).UnsafePointer() != reflect.ValueOf(second.Header).UnsafePointer() {
		t.Error("the two responses' headers are two maps, want the one the request carries")
	}
	if want := (http.Header{"C": {"3"}, "Content-Length": {"0"}}); !reflect.DeepEqual(second.Header, want) {
		t.Errorf("the second response's header is %v, want %v", second.Header, want)
	}
	raw := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: x\r\nContent-Length: 0\r\n\r\n"
	alone, _ := http.NewRequest("GET", "http://node/", nil)
	without := testing.AllocsPerRun(100, func() { read(alone, raw) })
	with := testing.AllocsPerRun(100, func() { read(req, raw) })
	if with > without-3 {
		t.Errorf("reading into the request's header: %v allocations, against %v without; want 3 fewer (the map, its group, its values)", with, without)
	}
}
