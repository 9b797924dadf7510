package fastlane

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/shoal-dev/shoal/internal/httphead"
	"github.com/shoal-dev/shoal/internal/rawsock"
	"github.com/shoal-dev/shoal/internal/sweep"
	"golang.org/x/net/http/httpguts"
)

// WatchEvery is how often the watch looks for clients that left while
// their request was in flight; a look comes up to sweep.Backstop periods
// late, once, when requests stop starting (see package sweep). A request
// is looked at from the second look after it began, so a client that
// leaves is noticed within three periods, or Backstop+2 (120 ms) if no
// request started since the look before it left.
const WatchEvery = 10 * time.Millisecond

// bufferSize is the size of a connection's read and write buffers; a
// request head that does not fit in the read buffer goes to net/http.
const bufferSize = 4 << 10

// Server serves HTTP on a listener: the requests that Serves accepts in the
// lane, every other connection with HTTP.
type Server struct {
	// HTTP serves the connections the lane hands off. Its Handler also
	// answers the lane's requests, its IdleTimeout and ReadHeaderTimeout
	// also bound the lane's connections, and its ErrorLog gets the lane's
	// handler panics. The lane has no use for its other fields: no TLS,
	// and no ReadTimeout or WriteTimeout (a handler sets deadlines with
	// http.ResponseController), ConnState, ConnContext or BaseContext.
	HTTP *http.Server
	// Serves reports whether the lane serves a bodiless HTTP/1.1 request
	// that net/http would accept; nil means it serves all of them.
	Serves func(*http.Request) bool

	mu      sync.Mutex
	ln      net.Listener
	handoff *handoff
	conns   map[*conn]struct{}
	closing bool
	watched map[*conn]struct{}
	watch   sweep.Sweeper // looks at watched
	looks   uint64        // the watch's looks so far
}

// conn is one client connection the lane serves.
type conn struct {
	rwc    net.Conn
	raw    syscall.RawConn // nil when rwc has no file descriptor: no watch
	remote string
	br     *bufio.Reader
	bw     *bufio.Writer
	// bw's writer, where it bounds only the writes that wait; else nil.
	waits  rawsock.WaitDeadliner
	readBy time.Time // the read deadline the lane last set on rwc
	head   []byte    // the current request's head, copied out of br to parse
	plain  plain     // where parsePlain reads the requests
	// The context of the connection's requests: it ends when the client
	// leaves or the connection closes, not with each request, and it
	// carries where the handler may read the header of each one's
	// response (nodelink reads node's there), one at a time like plain.
	ctx     context.Context
	end     context.CancelFunc
	replies httphead.Header
	req     http.Request // the request in flight, with ctx
	body    []byte       // a response's body written before its length is known
	// The response to the request in flight, and its header: one per
	// connection, as a handler must not use either once it returned.
	resp   response
	header http.Header

	// guarded by Server.mu
	idle  bool
	since uint64 // the watch's looks when the request began
	gone  bool   // the watch saw the client leave
}

// Serve accepts connections on ln until Shutdown or Close, and returns
// http.ErrServerClosed then; ln is closed when it returns.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.ln = ln
	s.handoff = newHandoff(ln.Addr())
	s.conns = make(map[*conn]struct{})
	s.watched = make(map[*conn]struct{})
	s.watch = sweep.Sweeper{L: &s.mu, Every: WatchEvery, Sweep: s.lookAtClients}
	s.mu.Unlock()
	go s.HTTP.Serve(s.handoff)

	var wait time.Duration
	for {
		rwc, err := ln.Accept()
		if err != nil {
			if s.isClosing() {
				return http.ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: wait as net/http does.
			wait = min(max(2*wait, 5*time.Millisecond), time.Second)
			s.logf("fastlane: accept: %v; retrying in %v", err, wait)
			time.Sleep(wait)
			continue
		}
		wait = 0
		go s.serveConn(rwc)
	}
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Shutdown stops accepting, closes idle connections, and waits for the
// requests in flight, in the lane and in HTTP, to finish or ctx to end.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	ln, handoff := s.ln, s.handoff
	for c := range s.conns {
		if c.idle {
			c.rwc.SetReadDeadline(aLongTimeAgo)
		}
	}
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
		handoff.Close()
	}
	httpDone := make(chan error, 1)
	go func() { httpDone <- s.HTTP.Shutdown(ctx) }()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			return <-httpDone
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close stops accepting and closes every connection at once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing = true
	ln, handoff := s.ln, s.handoff
	for c := range s.conns {
		c.rwc.Close()
	}
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
		handoff.Close()
	}
	return s.HTTP.Close()
}

var aLongTimeAgo = time.Unix(1, 0)

func (s *Server) logf(format string, args ...any) {
	if s.HTTP.ErrorLog != nil {
		s.HTTP.ErrorLog.Printf(format, args...)
	}
}

// serveConn serves rwc's requests until it closes, fails, idles out or
// brings a request the lane hands off.
func (s *Server) serveConn(rwc net.Conn) {
	w := rawsock.Writer(rwc)
	c := &conn{rwc: rwc, remote: rwc.RemoteAddr().String(),
		br: bufio.NewReaderSize(rawsock.Reader(rwc), bufferSize), bw: bufio.NewWriterSize(w, bufferSize)}
	c.waits, _ = w.(rawsock.WaitDeadliner)
	c.ctx, c.end = context.WithCancel(httphead.WithHeader(context.Background(), &c.replies))
	if sc, ok := rwc.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		rwc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	handedOff := false
	defer func() {
		c.end()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		if !handedOff {
			rwc.Close()
		}
	}()
	for first := true; ; first = false {
		if !s.await(c, first) {
			return
		}
		head, err := c.readHead(s.HTTP.ReadHeaderTimeout, !first)
		if errors.Is(err, bufio.ErrBufferFull) {
			handedOff = s.handoff.give(&replayConn{Conn: rwc, r: c.br})
			return
		}
		if err != nil {
			return
		}
		req := s.parse(c, head)
		if req == nil {
			handedOff = s.handoff.give(&replayConn{Conn: rwc, r: c.br})
			return
		}
		c.br.Discard(len(head))
		if !s.serveRequest(c, req) {
			return
		}
	}
}

// await waits for the first byte of c's next request, under the header
// timeout for a new connection and the idle timeout for one that served a
// request already. The idle deadline moves on only once it would move by
// more than a 64th of the timeout, which spares most requests a timer
// update: a connection idles out up to that much early. It returns false
// if c is to close.
func (s *Server) await(c *conn, first bool) bool {
	d := s.HTTP.IdleTimeout
	if first {
		d = s.HTTP.ReadHeaderTimeout
	}
	var deadline time.Time
	if d > 0 {
		deadline = time.Now().Add(d)
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return false
	}
	c.idle = true
	// Under the lock, so that Shutdown's deadline is the last one set.
	if (d > 0 || !first) && !keeps(c.readBy, deadline, d/64) {
		c.setReadDeadline(deadline)
	}
	s.mu.Unlock()
	_, err := c.br.Peek(1)
	s.mu.Lock()
	c.idle = false
	s.mu.Unlock()
	return err == nil
}

// readHead returns the head of c's next request, buffered in c.br and not
// consumed, or bufio.ErrBufferFull when it does not fit. If the head is
// not whole in what the first read brought, the rest must come within
// timeout; newDeadline says that the deadline in place is not that one.
func (c *conn) readHead(timeout time.Duration, newDeadline bool) ([]byte, error) {
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		if n := headLen(buf); n > 0 {
			return buf[:n], nil
		}
		if newDeadline && timeout > 0 {
			c.setReadDeadline(time.Now().Add(timeout))
			newDeadline = false
		}
		if _, err := c.br.Peek(len(buf) + 1); err != nil {
			return nil, err
		}
	}
}

// keeps reports whether a read deadline set at set may stay for one at
// want: both none, or set at most slack before want.
func keeps(set, want time.Time, slack time.Duration) bool {
	if set.IsZero() || want.IsZero() {
		return set.IsZero() == want.IsZero()
	}
	ahead := want.Sub(set)
	return ahead >= 0 && ahead <= slack
}

func (c *conn) setReadDeadline(t time.Time) error {
	c.readBy = t
	return c.rwc.SetReadDeadline(t)
}

// headLen is the length of the request head at the start of buf, up to and
// including the empty line that ends it (CRLF or, as net/http accepts, a
// bare LF), or 0 if buf holds no whole head.
func headLen(buf []byte) int {
	n := 0
	if i := bytes.Index(buf, []byte("\n\r\n")); i >= 0 {
		n = i + 3
	}
	if i := bytes.Index(buf, []byte("\n\n")); i >= 0 && (n == 0 || i+2 < n) {
		n = i + 2
	}
	return n
}

// headReaders parse a copied head.
var headReaders = sync.Pool{New: func() any { return new(headReader) }}

type headReader struct {
	b  bytes.Reader
	br *bufio.Reader
}

// parse returns the request head is, if the lane serves it: a bodiless
// HTTP/1.1 request that net/http's server would accept and that s.Serves
// does; nil otherwise.
func (s *Server) parse(c *conn, head []byte) *http.Request {
	req := parsePlain(head, &c.plain)
	if req == nil {
		req = readRequest(c, head)
	}
	if req == nil || req.ProtoMajor != 1 || req.ProtoMinor != 1 || req.Body != http.NoBody ||
		req.Method == http.MethodConnect || req.RequestURI == "*" {
		return nil
	}
	if _, ok := req.Header["Upgrade"]; ok {
		return nil
	}
	if _, ok := req.Header["Expect"]; ok {
		return nil
	}
	// net/http's server checks, which ReadRequest leaves to it. Host is
	// the Host header's, which ReadRequest took out of Header, but for an
	// absolute request target, which goes to net/http.
	if req.URL.Host != "" || req.Host == "" || !httpguts.ValidHostHeader(req.Host) {
		return nil
	}
	for k, vs := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil
			}
		}
	}
	if s.Serves != nil && !s.Serves(req) {
		return nil
	}
	req.RemoteAddr = c.remote
	return req
}

// readRequest parses head with http.ReadRequest, or returns nil if it
// cannot.
func readRequest(c *conn, head []byte) *http.Request {
	c.head = append(c.head[:0], head...)
	hr := headReaders.Get().(*headReader)
	hr.b.Reset(c.head)
	if hr.br == nil {
		hr.br = bufio.NewReaderSize(&hr.b, 512)
	} else {
		hr.br.Reset(&hr.b)
	}
	req, err := http.ReadRequest(hr.br)
	hr.br.Reset(nil)
	headReaders.Put(hr)
	if err != nil {
		return nil
	}
	return req
}

// serveRequest has the handler answer req on c and reports whether c may
// serve another request.
func (s *Server) serveRequest(c *conn, req *http.Request) bool {
	// WithContext's copy, inlined, stays on the stack: the request is
	// the connection's, with its context, and nothing is allocated.
	c.req = *req.WithContext(c.ctx)
	req = &c.req
	if c.header == nil {
		c.header = make(http.Header)
	}
	clear(c.header)
	w := &c.resp
	*w = response{c: c, req: req, header: c.header}
	s.watchClient(c)
	ok := s.call(w, req)
	gone := s.unwatch(c)
	if !ok || gone {
		return false
	}
	return w.finish() && !req.Close
}

// call runs the handler and reports whether it returned.
func (s *Server) call(w *response, req *http.Request) (returned bool) {
	defer func() {
		if v := recover(); v != nil && v != http.ErrAbortHandler {
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			s.logf("fastlane: panic serving %v: %v\n%s", req.RemoteAddr, v, buf)
		}
	}()
	h := s.HTTP.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	h.ServeHTTP(w, req)
	return true
}

// watchClient has the watch end the request in flight on c, with c's
// context, if its client leaves.
func (s *Server) watchClient(c *conn) {
	if c.raw == nil {
		return
	}
	s.mu.Lock()
	c.since = s.looks
	c.gone = false
	s.watched[c] = struct{}{}
	s.watch.Start()
	s.mu.Unlock()
}

// unwatch ends the watch of c's request and reports whether its client
// left.
func (s *Server) unwatch(c *conn) (gone bool) {
	if c.raw == nil {
		return false
	}
	s.mu.Lock()
	delete(s.watched, c)
	gone = c.gone
	s.mu.Unlock()
	return gone
}

// lookAtClients, the watch's sweep, looks at the connections whose request
// began before its last look, with s.mu held, and reports whether any
// request is still watched.
func (s *Server) lookAtClients(time.Time) bool {
	if len(s.watched) == 0 {
		return false
	}
	s.looks++
	for c := range s.watched {
		if s.looks-c.since < 2 {
			continue
		}
		switch peer(c.raw) {
		case peerLeft:
			c.gone = true
			c.end()
			delete(s.watched, c)
		case peerSent:
			// The next request is on its way; like net/http, stop
			// looking.
			delete(s.watched, c)
		}
	}
	return true
}

// What a peek at a connection found.
const (
	peerQuiet = iota // nothing to read: the client waits
	peerSent         // the client sent more
	peerLeft         // the client closed or reset the connection
)

func peer(raw syscall.RawConn) int {
	var b [1]byte
	var n int
	var err error
	if cerr := raw.Control(func(fd uintptr) {
		n, _, err = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	}); cerr != nil {
		return peerLeft
	}
	switch {
	case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR):
		return peerQuiet
	case err != nil || n == 0:
		return peerLeft
	}
	return peerSent
}

// replayConn is a connection handed to net/http with what the lane read
// from it but did not consume still in r.
type replayConn struct {
	net.Conn
	r *bufio.Reader // nil once drained; only net/http's one reader uses it
}

func (c *replayConn) Read(p []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(p)
		}
		c.r = nil
	}
	return c.Conn.Read(p)
}

// CloseWrite lets net/http half-close the connection, as it does after an
// answer to a request whose body it did not read.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// handoff is the listener from which net/http accepts the connections the
// lane hands it.
type handoff struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newHandoff(addr net.Addr) *handoff {
	return &handoff{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// give hands c to net/http and reports whether it took it.
func (l *handoff) give(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoff) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoff) Addr() net.Addr { return l.addr }
