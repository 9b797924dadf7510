// Package httphead reads the header lines of an HTTP/1.1 head as
// net/textproto does, for the parsers of the hot path (fastlane's of a
// client's request, nodelink's of node's response): into a header map
// kept from one head to the next (Header), whose keys and values share one
// string, each line's name in canonical form (a name sent so is its own
// key; others are looked up among the names sent most, and allocated only
// if not there), and its value trimmed. A line these parsers do not read
// plainly (folded, with a control byte, a name that is not a token) they
// leave to net/http.
package httphead

import (
	"bytes"
	"context"
	"net/http"
	"net/textproto"

	"golang.org/x/net/http/httpguts"
)

// Header is where Read reads header lines, again and again: a map and the
// array of its values, kept from one head to the next, so that reading a
// head allocates nothing once they have room for it. What Read returned is
// not to be used once it reads again.
type Header struct {
	h      http.Header
	values []string
}

// headerKey keys the Header a context carries.
type headerKey struct{}

// WithHeader returns ctx carrying hd, where the head of a message in ctx's
// scope may be read: fastlane's requests carry their connection's, into
// which nodelink reads node's responses (a connection carries one request,
// and so one response, at a time).
func WithHeader(ctx context.Context, hd *Header) context.Context {
	return context.WithValue(ctx, headerKey{}, hd)
}

// HeaderFrom returns the Header ctx carries, or nil.
func HeaderFrom(ctx context.Context) *Header {
	hd, _ := ctx.Value(headerKey{}).(*Header)
	return hd
}

// Read reads rest, header lines that each end in CRLF, into hd's map, with
// values, and keys sent in canonical form, that are substrings of s, which
// holds rest's text from offset at: the parsers allocate one string for a
// whole head. Each line's name (canonical) and value go through check,
// which may refuse them; ok is false if check refuses a line or a line is
// not plain (see line).
func (hd *Header) Read(rest []byte, s string, at int, check func(key, value string) bool) (h http.Header, ok bool) {
	lines := bytes.Count(rest, []byte("\r\n"))
	if len(hd.values) < lines {
		hd.values = make([]string, lines)
	}
	// The values of a longer head before: not to be kept alive.
	clear(hd.values[lines:])
	values := hd.values[:lines]
	if hd.h == nil {
		hd.h = make(http.Header, lines)
	} else {
		clear(hd.h)
	}
	h = hd.h
	for i := range lines {
		kv, after, _ := bytes.Cut(rest, []byte("\r\n"))
		colon, from, to, canonical, ok := line(kv)
		if !ok {
			return nil, false
		}
		// A name sent in canonical form, as node's own and most clients'
		// are, is its own key: no lookup, whose memory is cold by the time
		// the next message comes.
		key := s[at : at+colon]
		if !canonical {
			key = canonicalKey(kv[:colon])
		}
		values[i] = s[at+from : at+to]
		at += len(kv) + 2
		rest = after
		if !check(key, values[i]) {
			return nil, false
		}
		if vs, ok := h[key]; ok {
			h[key] = append(vs, values[i])
		} else {
			h[key] = values[i : i+1 : i+1]
		}
	}
	return h, true
}

// line reads kv, a header line without its CRLF, as
// textproto.Reader.ReadMIMEHeader does: kv[:colon] is its name, which
// canonical says is in canonical form already, and kv[from:to] its value
// without the spaces and tabs around it. ok is false for a line that
// textproto would read otherwise or not at all: no colon, a name that is
// not a token, or a control byte in the value.
func line(kv []byte) (colon, from, to int, canonical, ok bool) {
	colon = -1
	canonical, upper := true, true
	for i, c := range kv {
		if c == ':' {
			colon = i
			break
		}
		if !httpguts.IsTokenRune(rune(c)) {
			return 0, 0, 0, false, false
		}
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			canonical = false
		}
		upper = c == '-'
	}
	if colon <= 0 {
		return 0, 0, 0, false, false
	}
	from, to = colon+1, len(kv)
	for from < to && (kv[from] == ' ' || kv[from] == '\t') {
		from++
	}
	for to > from && (kv[to-1] == ' ' || kv[to-1] == '\t') {
		to--
	}
	if !PlainText(kv[from:to]) {
		return 0, 0, 0, false, false
	}
	return colon, from, to, canonical, true
}

// canonicalKey returns name, a token, in canonical form: without
// allocating for the names in commonKeys.
func canonicalKey(name []byte) string {
	var b [32]byte
	if len(name) <= len(b) {
		upper := true
		for i, c := range name {
			if upper && 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			} else if !upper && 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b[i] = c
			upper = c == '-'
		}
		if k, ok := commonKeys[string(b[:len(name)])]; ok {
			return k
		}
	}
	return textproto.CanonicalMIMEHeaderKey(string(name))
}

// commonKeys are the header names of most requests and responses,
// canonical.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		// requests
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control",
		"Connection", "Cookie", "Host", "If-Modified-Since", "If-None-Match", "Origin", "Referer",
		"Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site", "Upgrade-Insecure-Requests",
		"User-Agent", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Request-Id",
		// responses
		"Access-Control-Allow-Origin", "Content-Encoding", "Content-Length", "Content-Type",
		"Date", "Etag", "Keep-Alive", "Last-Modified", "Location", "Set-Cookie", "Trailer",
		"Transfer-Encoding", "Vary", "X-Powered-By", "X-Shoal-Entry-Ms", "X-Shoal-Error"} {
		m[k] = k
	}
	return m
}()

// PlainText reports whether b, a reason or a header value, has no control
// byte but tabs: no stray CR or LF, which would end its line for net/http.
func PlainText(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// EqualFold reports whether s is ASCII lower, which is in lower case, in
// any case.
func EqualFold(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
