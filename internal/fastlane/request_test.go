package fastlane

import (
	"bufio"
	"bytes"
	"net/http"
	"reflect"
	"testing"
)

// requests are heads a client may send, and whether parsePlain parses them
// itself (the rest go to http.ReadRequest).
var requests = []struct {
	name, raw string
	plain     bool
}{
	{"wrk's", "GET /hello/ HTTP/1.1\r\nHost: 127.0.0.1:4101\r\n\r\n", true},
	{"curl's", "GET /hello/?a=1&b=%20 HTTP/1.1\r\nHost: hello.localhost:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n", true},
	{"a browser's", "GET /p/x.js HTTP/1.1\r\nhost: a.localhost\r\nconnection: keep-alive\r\nAccept-Encoding: gzip, br\r\n" +
		"Cookie: a=1\r\ncookie: b=2\r\nsec-fetch-mode: no-cors\r\nX-A-Header-Name-Longer-Than-32-Bytes: v\r\n\r\n", true},
	{"connection close", "HEAD / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n", true},
	{"spaces around values", "DELETE /a;b,c:d@e$f HTTP/1.1\r\nHost:a\r\nX-A:  \t v w \t \r\nX-B:\r\n\r\n", true},
	{"bytes over 127 in a value", "GET / HTTP/1.1\r\nHost: a\r\nX-Utf8: \xe2\x9c\x93\r\n\r\n", true},
	{"an empty query", "GET /a? HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"a query with a question mark", "GET /a?b?c#d HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"a custom method", "PURGE /a HTTP/1.1\r\nHost: a\r\n\r\n", true},

	{"escaped path", "GET /a%20b HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"path net/url would escape", "GET /a!b HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"fragment in the path", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"absolute target", "GET http://a/b HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"connect", "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\n\r\n", false},
	{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false},
	{"no host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", false},
	{"empty host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", false},
	{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", false},
	{"content length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", false},
	{"chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", false},
	{"pragma", "GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n", false},
	{"expect", "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n", false},
	{"upgrade", "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", false},
	{"folded header", "GET / HTTP/1.1\r\nHost: a\r\nA: b\r\n c\r\n\r\n", false},
	{"space before colon", "GET / HTTP/1.1\r\nHost: a\r\nA : b\r\n\r\n", false},
	{"control byte in value", "GET / HTTP/1.1\r\nHost: a\r\nA: b\x01c\r\n\r\n", false},
	{"bare LF", "GET / HTTP/1.1\nHost: a\n\n", false},
	{"bare LF in a line", "GET / HTTP/1.1\r\nHost: a\nB: c\r\n\r\n", false},
	{"two spaces", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"lower-case proto", "GET / http/1.1\r\nHost: a\r\n\r\n", false},
	{"garbage", "hello\r\n\r\n", false},
	{"nothing", "", false},
}

// readWithNetHTTP is what http.ReadRequest makes of raw, or nil.
func readWithNetHTTP(raw string) *http.Request {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader([]byte(raw))))
	if err != nil {
		return nil
	}
	return req
}

// TestParsePlain parses all the requests one after the other into one
// storage, as a connection does (what one request left there, read whole
// or not, must not show in the next), and each into storage of its own.
func TestParsePlain(t *testing.T) {
	shared := new(plain)
	for _, tc := range requests {
		t.Run(tc.name, func(t *testing.T) {
			for _, into := range []*plain{shared, new(plain)} {
				got := parsePlain([]byte(tc.raw), into)
				if (got != nil) != tc.plain {
					t.Fatalf("parsePlain read it: %v, want %v", got != nil, tc.plain)
				}
				if got == nil {
					return
				}
				if want := readWithNetHTTP(tc.raw); !reflect.DeepEqual(got, want) {
					t.Errorf("got\n%+v\nwant, as http.ReadRequest reads it,\n%+v", got, want)
				}
			}
		})
	}
}

// FuzzParsePlain checks that what parsePlain reads, http.ReadRequest reads
// the same, in storage where it read a browser's request before.
func FuzzParsePlain(f *testing.F) {
	for _, tc := range requests {
		f.Add(tc.raw)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		into := new(plain)
		if parsePlain([]byte(requests[2].raw), into) == nil {
			t.Fatal("the browser's request was not read")
		}
		got := parsePlain([]byte(raw), into)
		if got == nil {
			return
		}
		want := readWithNetHTTP(raw)
		if want == nil || !reflect.DeepEqual(got, want) {
			t.Errorf("got\n%+v\nwant, as http.ReadRequest reads it,\n%+v", got, want)
		}
	})
}

// BenchmarkParse parses curl's request with parsePlain (plain) and with
// http.ReadRequest (net/http).
func BenchmarkParse(b *testing.B) {
	raw := []byte(requests[1].raw)
	for _, bc := range []struct {
		name  string
		parse func(*conn, []byte) *http.Request
	}{{"plain", func(c *conn, head []byte) *http.Request { return parsePlain(head, &c.plain) }}, {"net/http", readRequest}} {
		b.Run(bc.name, func(b *testing.B) {
			c := new(conn)
			b.ReportAllocs()
			for b.Loop() {
				if bc.parse(c, raw) == nil {
					b.Fatal("not parsed")
				}
			}
		})
	}
}
