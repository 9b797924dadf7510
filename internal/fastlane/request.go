package fastlane

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"

	"github.com/shoal-dev/shoal/internal/httphead"
	"golang.org/x/net/http/httpguts"
)

// parsePlain parses head, a whole request head with the empty line that
// ends it, with half of http.ReadRequest's allocations, for the request
// clients send most: HTTP/1.1, lines that end in CRLF, a target that is a
// path (and a query) net/url leaves as it is, plain header lines (see
// httphead.Header.Read), no body, and a Connection, if any, of keep-alive or
// close. It returns the request as http.ReadRequest would, or nil for any
// other (a body, Pragma, which net/http rewrites, Expect, Upgrade, an
// escaped or absolute target, two Host lines, anything malformed...),
// which http.ReadRequest then parses. The request is into's, and so are its
// URL and header: they are for one request at a time.
func parsePlain(head []byte, into *plain) *http.Request {
	if !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		return nil
	}
	head = head[:len(head)-2]
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	method, rest1, ok1 := bytes.Cut(line, []byte(" "))
	target, proto, ok2 := bytes.Cut(rest1, []byte(" "))
	if !ok1 || !ok2 || string(proto) != "HTTP/1.1" || len(method) == 0 || string(method) == http.MethodConnect ||
		len(target) == 0 || target[0] != '/' {
		return nil
	}
	for _, c := range method {
		if !httpguts.IsTokenRune(rune(c)) {
			return nil
		}
	}
	path, query, hasQuery := bytes.Cut(target, []byte("?"))
	for _, c := range path {
		if !pathByte(c) {
			return nil
		}
	}
	for _, c := range query {
		if c <= ' ' || c >= 0x7f {
			return nil
		}
	}

	// One string holds every part: one allocation.
	s := string(head)
	closing := false
	h, ok := into.header.Read(rest, s, len(line)+2, func(key, value string) bool {
		switch key {
		case "Content-Length", "Transfer-Encoding", "Trailer", "Pragma", "Expect", "Upgrade":
			return false
		case "Connection":
			if httphead.EqualFold(value, "close") {
				closing = true
				return true
			}
			return httphead.EqualFold(value, "keep-alive")
		}
		return true
	})
	// One Host, which ReadRequest takes out of Header.
	if !ok || len(h["Host"]) != 1 || h["Host"][0] == "" {
		return nil
	}
	host := h["Host"][0]
	delete(h, "Host")
	// The request line's parts, in s.
	t := len(method) + 1 // where the target starts
	p := t + len(path)   // where its path ends
	into.url = url.URL{Path: s[t:p]}
	if hasQuery {
		into.url.RawQuery = s[p+1 : p+1+len(query)]
		into.url.ForceQuery = len(query) == 0
	}
	into.req = http.Request{
		Method:     s[:len(method)],
		URL:        &into.url,
		Proto:      s[t+len(target)+1 : len(line)],
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Body:       http.NoBody,
		Host:       host,
		RequestURI: s[t : t+len(target)],
		Close:      closing,
	}
	return &into.req
}

// plain is where parsePlain reads a connection's requests, one after the
// other: the request, its URL and its header, kept from one request to the
// next, so that parsing one allocates only the string of its head once
// they have room for it. A handler must not keep what it was given of a
// request once it returned (the lane hands it a copy of the request, whose
// URL and header are these).
type plain struct {
	req    http.Request
	url    url.URL
	header httphead.Header
}

// pathByte reports whether net/url keeps c as it is in a path: a byte
// neither escaped (%) nor one it would escape.
func pathByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-_.~$&+,/:;=@", c) >= 0
}
