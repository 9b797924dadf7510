package nodelink

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strconv"

	"github.com/shoal-dev/shoal/internal/httphead"
)

// readResponse reads the response to req, past any informational (1xx)
// ones node sends first (103 Early Hints).
func readResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodHead {
		// What http.ReadResponse would do first: wait for the response.
		if _, err := br.Peek(1); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if resp := readPlain(br, req); resp != nil {
			return resp, nil
		}
	}
	return readNetHTTP(br, req)
}

// readNetHTTP reads the response to req with http.ReadResponse, past any
// informational ones.
func readNetHTTP(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	for {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
	}
}

// readPlain reads, with a fraction of http.ReadResponse's allocations, the
// response node sends most: HTTP/1.1, a final status with a body, a
// Content-Length, and a head whole in br's buffer. It returns the response
// as http.ReadResponse would, or nil, having consumed nothing, for any
// other (chunked, 1xx, 204, 304, Connection other than keep-alive,
// anything malformed...), which http.ReadResponse then reads. req's
// method is not HEAD, whose response has no body to read. The header is
// read into the httphead.Header req's context carries, if any.
func readPlain(br *bufio.Reader, req *http.Request) *http.Response {
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 {
		return nil
	}
	// "HTTP/1.1 200 OK\r\n": three digits and a reason.
	const proto = "HTTP/1.1 "
	line, rest, _ := bytes.Cut(buf[:end+2], []byte("\r\n"))
	if len(line) < len(proto)+4 || string(line[:len(proto)]) != proto || line[len(proto)+3] != ' ' {
		return nil
	}
	code := 0
	for _, c := range line[len(proto) : len(proto)+3] {
		if c < '0' || c > '9' {
			return nil
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 || code > 599 || code == http.StatusNoContent || code == http.StatusNotModified ||
		!httphead.PlainText(line[len(proto)+4:]) {
		return nil
	}

	// One string holds the status and every value: one allocation.
	head := string(buf[len(proto):end])
	length := int64(-1)
	// Into the client connection's storage, where the request carries
	// one: that response is read and written before the next is read.
	var own httphead.Header
	hd := httphead.HeaderFrom(req.Context())
	if hd == nil {
		hd = &own
	}
	h, ok := hd.Read(rest, head, len(line)+2-len(proto), func(key, value string) bool {
		switch key {
		case "Transfer-Encoding", "Trailer":
			return false
		case "Connection":
			return httphead.EqualFold(value, "keep-alive")
		case "Content-Length":
			n, err := strconv.ParseUint(value, 10, 63)
			if length >= 0 || err != nil {
				return false
			}
			length = int64(n)
		}
		return true
	})
	if !ok || length < 0 {
		return nil
	}
	br.Discard(end + 4)
	resp := &http.Response{
		Status:        head[:len(line)-len(proto)],
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		ContentLength: length,
		Request:       req,
		Body:          http.NoBody,
	}
	if length > 0 {
		resp.Body = &fixedBody{br: br, left: length}
	}
	return resp
}

// fixedBody is a body of a known length, left to read from br.
type fixedBody struct {
	br   *bufio.Reader
	left int64
}

// Read returns io.EOF with the body's last bytes, as net/http's bodies do,
// so that the exchange ends with the read that completes it.
func (b *fixedBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.br.Read(p)
	b.left -= int64(n)
	switch {
	case b.left == 0:
		return n, io.EOF
	case err == io.EOF:
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *fixedBody) Close() error { return nil }
