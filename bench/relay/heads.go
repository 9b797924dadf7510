package main

// With -heads, the relay is bench/hello.sh's rawhop, its floor for an
// HTTP-aware hop in front of node: it still forwards each client
// connection to a connection of its own to node's unix socket with
// internal/rawsock, but on one goroutine, reading each message's head as
// bytes and rewriting it in place, with no net/http types: it adds an id
// and X-Forwarded-For to the request, and takes Connection and Keep-Alive
// out of the response and adds the id and a Date, as a platform's front
// does. Rawhop minus the relay is what reading and rewriting heads costs
// on its own. With -lanes too it is bench/hello.sh's rawlane: the same hop
// over lanes, node's FIFOs, as serve reaches node (a unix socket wakes the
// hop once more per request, when node reads it: see nodelink's lane.go),
// so shoal minus rawlane is what shoal's structure costs (net/http's
// types, routing, the limits, metering). Only what the benchmark sends is
// handled: bodies with a Content-Length; a message with any other framing
// ends the connection.

import (
	"bytes"
	"errors"
	"io"
	"log"
	"net"
	"strconv"
	"time"

	"github.com/shoal-dev/shoal/internal/nodelink"
	"github.com/shoal-dev/shoal/internal/rawsock"
)

// maxHead is the most a message's head may take.
const maxHead = 16 << 10

var errFraming = errors.New("relay: a message without a Content-Length")

// hop is one client connection and its connection to the server.
type hop struct {
	cr, nr io.Reader
	cw, nw io.Writer
	mem    []byte // where reads go
	buf    []byte // what was read and not yet forwarded: a part of mem
	out    []byte // what is to be written next
}

// dialer connects to the server at path: its requests are written to w,
// its responses read from r, and c ends the connection.
type dialer func(path string) (r io.Reader, w io.Writer, c io.Closer, err error)

// dialSocket connects to the server's unix socket at path.
func dialSocket(path string) (io.Reader, io.Writer, io.Closer, error) {
	server, err := net.Dial("unix", path)
	if err != nil {
		return nil, nil, nil, err
	}
	return rawsock.Reader(server), rawsock.Writer(server), server, nil
}

// dialLane connects to node at path over a lane, as serve does (with
// -lanes: bench/hello.sh's rawlane).
func dialLane(path string) (io.Reader, io.Writer, io.Closer, error) {
	return nodelink.DialLane(path, time.Now().Add(10*time.Second))
}

// rewriter returns the carry that takes client's requests to a new
// connection to the server at path made with dial, one at a time,
// rewriting their heads and their responses', until either side ends or
// sends what it does not handle.
func rewriter(dial dialer) func(client net.Conn, path string) {
	return func(client net.Conn, path string) {
		defer client.Close()
		nr, nw, server, err := dial(path)
		if err != nil {
			log.Print(err)
			return
		}
		defer server.Close()
		h := &hop{cr: rawsock.Reader(client), cw: rawsock.Writer(client), nr: nr, nw: nw,
			mem: make([]byte, maxHead+8<<10), out: make([]byte, 0, 2*maxHead)}
		for {
			if err := h.exchange(); err != nil {
				return
			}
		}
	}
}

// exchange forwards one request and its response.
func (h *hop) exchange() error {
	head, err := h.head(h.cr)
	if err != nil {
		return err
	}
	h.out = append(h.out[:0], head[:len(head)-2]...)
	h.out = append(h.out, "X-Forwarded-For: 127.0.0.1\r\nX-Shoal-Id: 0123456789abcdef\r\n\r\n"...)
	length, err := contentLength(head, true)
	if err != nil {
		return err
	}
	if err := h.send(h.nw, h.cr, length); err != nil {
		return err
	}

	head, err = h.head(h.nr)
	if err != nil {
		return err
	}
	h.out = h.out[:0]
	for lines := head[:len(head)-2]; len(lines) > 0; {
		line, rest, _ := bytes.Cut(lines, []byte("\r\n"))
		lines = rest
		name, _, _ := bytes.Cut(line, []byte(":"))
		if bytes.EqualFold(name, []byte("Connection")) || bytes.EqualFold(name, []byte("Keep-Alive")) {
			continue
		}
		h.out = append(h.out, line...)
		h.out = append(h.out, "\r\n"...)
	}
	h.out = append(h.out, "X-Shoal-Id: 0123456789abcdef\r\nDate: "...)
	h.out = time.Now().UTC().AppendFormat(h.out, "Mon, 02 Jan 2006 15:04:05 GMT")
	h.out = append(h.out, "\r\n\r\n"...)
	if length, err = contentLength(head, false); err != nil {
		return err
	}
	return h.send(h.cw, h.nr, length)
}

// head reads from r until h.buf starts with a whole head, and returns it,
// taken out of h.buf.
func (h *hop) head(r io.Reader) ([]byte, error) {
	for {
		if end := bytes.Index(h.buf, []byte("\r\n\r\n")); end >= 0 {
			head := h.buf[:end+4]
			h.buf = h.buf[end+4:]
			return head, nil
		}
		if len(h.buf) >= maxHead {
			return nil, errors.New("relay: head too large")
		}
		if err := h.fill(r); err != nil {
			return nil, err
		}
	}
}

// fill reads more of r into h.buf, first moving what it holds to the start
// of h.mem when little room is left after it. h.buf holds less than
// maxHead.
func (h *hop) fill(r io.Reader) error {
	if len(h.buf) == 0 || cap(h.buf)-len(h.buf) < 4<<10 {
		h.buf = h.mem[:copy(h.mem, h.buf)]
	}
	n, err := r.Read(h.buf[len(h.buf):cap(h.buf)])
	h.buf = h.buf[:len(h.buf)+n]
	if n > 0 {
		return nil
	}
	return err
}

// send writes h.out and then length bytes of body from r, which may be in
// h.buf already, to w.
func (h *hop) send(w io.Writer, r io.Reader, length int) error {
	for {
		n := min(length, len(h.buf))
		h.out = append(h.out, h.buf[:n]...)
		h.buf = h.buf[n:]
		length -= n
		if length == 0 || len(h.out) >= maxHead {
			if _, err := w.Write(h.out); err != nil {
				return err
			}
			h.out = h.out[:0]
		}
		if length == 0 {
			return nil
		}
		if err := h.fill(r); err != nil {
			return err
		}
	}
}

// contentLength is the Content-Length of head, 0 for a request without
// one, or errFraming for a chunked message or a response without one.
func contentLength(head []byte, request bool) (int, error) {
	length := -1
	for lines := head[:len(head)-4]; len(lines) > 0; {
		line, rest, _ := bytes.Cut(lines, []byte("\r\n"))
		lines = rest
		name, value, _ := bytes.Cut(line, []byte(":"))
		switch {
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return 0, errFraming
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.Atoi(string(bytes.TrimSpace(value)))
			if err != nil || n < 0 {
				return 0, errFraming
			}
			length = n
		}
	}
	if length < 0 {
		if !request {
			return 0, errFraming
		}
		length = 0
	}
	return length, nil
}
