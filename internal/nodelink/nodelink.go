package nodelink

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/shoal-dev/shoal/internal/sweep"
)

// Errors callers branch on.
var (
	// ErrUnreached: the request did not reach node (its socket refused
	// the connection, or the connection broke before the request was
	// written whole): no user code ran, so it may be placed again.
	ErrUnreached = errors.New("nodelink: the invocation did not reach node")
	// ErrTimeout: the invocation's deadline passed.
	ErrTimeout = errors.New("nodelink: the invocation's deadline passed")
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("nodelink: client closed")
)

// MaxLoops bounds the event loops a client sends to.
const MaxLoops = 16

// WatchEvery is how often a client looks at its invocations in flight for
// one whose deadline passed or whose client went away, and ends it. A
// watch per client is cheaper than a deadline and a context callback per
// invocation (context.AfterFunc allocates ~600 B, the request context's
// children map among them): serve spent 1-2 µs less CPU per invocation at
// c=16, paired runs. The price is ending an invocation up to a period late,
// or sweep.Backstop periods (100 ms) if invocations stopped starting just
// before (see package sweep).
const WatchEvery = 10 * time.Millisecond

// IdleTimeout is how long a connection may wait in the pool: well under
// the bootstrap's keep-alive timeout (10 minutes), so that node never
// closes a connection the client is about to use.
const IdleTimeout = 5 * time.Minute

// Client sends invocations to one node process's event loops.
type Client struct {
	// immutable
	socket string
	lanes  bool // connections are lanes where node takes them (see lane.go)

	mu      sync.Mutex
	loops   []*loop                // guarded by mu; loop n serves on socket, or socket.n for n > 0
	closed  bool                   // guarded by mu
	watched map[*exchange]struct{} // guarded by mu; the exchanges in flight, which watch looks at
	watch   sweep.Sweeper          // guarded by mu
}

// loop is one event loop's socket and its connections.
type loop struct {
	path string
	// guarded by Client.mu
	inflight int
	idle     []*conn   // most recently used last
	dead     bool      // its socket refused a connection: not serving
	lanes    laneState // what its new connections are, for a client with lanes
}

// laneState says whether a loop's new connections are lanes.
type laneState int8

const (
	laneUntried laneState = iota // none asked for yet: the socket's connections
	laneAsking                   // one is being asked for, in the background
	laneTaken                    // node takes lanes: new connections are lanes
	laneRefused                  // node did not take one: the socket's connections only
)

// conn is one connection to a loop, idle in its pool or carrying one
// invocation.
type conn struct {
	nc     net.Conn
	br     *bufio.Reader
	w      io.Writer // nc's, for the request's head
	loop   *loop
	lane   bool      // a lane, not the socket's connection
	idleAt time.Time // when it was put back in the pool
}

// newConn returns a connection to l over nc.
func newConn(nc net.Conn, l *loop) *conn {
	r, w := connIO(nc)
	_, lane := nc.(*pipeConn)
	return &conn{nc: nc, br: bufio.NewReaderSize(r, 4<<10), w: w, loop: l, lane: lane}
}

// New returns a client of the node process whose first event loop serves
// on the unix socket at socket.
func New(socket string) *Client {
	c := &Client{socket: socket, loops: []*loop{{path: socket}}, watched: map[*exchange]struct{}{}}
	c.watch = sweep.Sweeper{L: &c.mu, Every: WatchEvery, Sweep: c.lookAtExchanges}
	return c
}

// NewLanes is New for a node that runs shoal's bootstrap: its connections
// are lanes, pairs of FIFOs, where node takes them (see lane.go).
func NewLanes(socket string) *Client {
	c := New(socket)
	c.lanes = true
	return c
}

// SetLoops says that node serves on n event loops: loop k > 0 on the
// socket's path with ".k" added. Loops are not taken away.
func (c *Client) SetLoops(n int) {
	n = min(n, MaxLoops)
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.loops) < n {
		c.loops = append(c.loops, &loop{path: c.socket + "." + strconv.Itoa(len(c.loops))})
	}
}

// Close closes the idle connections; invocations in flight go on, and the
// connections they hold close when they end.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, l := range c.loops {
		for _, cn := range l.idle {
			cn.nc.Close()
		}
		l.idle = nil
	}
}

// pickLocked returns the serving loop with the fewest invocations in
// flight, the lowest numbered of those, with one more counted on it.
func (c *Client) pickLocked() *loop {
	best := c.loops[0]
	for _, l := range c.loops[1:] {
		if !l.dead && l.inflight < best.inflight {
			best = l
		}
	}
	best.inflight++
	return best
}

// take returns a connection to the least busy loop, pooled or new, with an
// invocation counted on its loop.
func (c *Client) take(deadline time.Time) (*conn, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		l := c.pickLocked()
		for len(l.idle) > 0 {
			cn := l.idle[len(l.idle)-1]
			l.idle = l.idle[:len(l.idle)-1]
			if time.Since(cn.idleAt) < IdleTimeout {
				c.mu.Unlock()
				return cn, nil
			}
			cn.nc.Close()
		}
		useLane := c.lanes && l.lanes == laneTaken
		c.mu.Unlock()
		dialer := dial
		if useLane {
			dialer = dialLane
		}
		nc, err := dialer(l.path, deadline)
		if err == nil {
			cn := newConn(nc, l)
			if useLane && !cn.lane {
				c.mu.Lock()
				l.lanes = laneRefused
				c.mu.Unlock()
			}
			return cn, nil
		}
		c.mu.Lock()
		l.inflight--
		if l == c.loops[0] {
			c.mu.Unlock()
			return nil, fmt.Errorf("%w: %w", ErrUnreached, err)
		}
		// A loop that does not serve (it failed as it started): the
		// others take its share.
		l.dead = true
		c.mu.Unlock()
	}
}

// dial connects to a loop's socket. A listen queue that is full (a burst
// of new connections) is waited out until the deadline.
func dial(path string, deadline time.Time) (net.Conn, error) {
	for wait := 100 * time.Microsecond; ; wait = min(2*wait, 10*time.Millisecond) {
		nc, err := net.Dial("unix", path)
		if err == nil || !errors.Is(err, syscall.EAGAIN) || time.Now().Add(wait).After(deadline) {
			return nc, err
		}
		time.Sleep(wait)
	}
}

// watchOver puts ex under watch until done.
func (c *Client) watchOver(ex *exchange) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watched[ex] = struct{}{}
	c.watch.Start()
}

// lookAtExchanges, the watch's sweep, ends the invocations in flight whose
// deadline passed or whose context is done, by failing their connection's
// reads and writes, with c.mu held. It reports whether any is in flight.
func (c *Client) lookAtExchanges(now time.Time) bool {
	if len(c.watched) == 0 {
		return false
	}
	for ex := range c.watched {
		if !ex.fired && (now.After(ex.deadline) || ex.ctx.Err() != nil) {
			ex.fired = true
			ex.cn.nc.SetDeadline(longAgo)
		}
	}
	return true
}

// done counts ex's invocation as ended and puts its connection back in the
// pool when reusable and untouched by watch, else closes it. The socket's
// connections of a loop that takes lanes are closed too, and the first
// invocation a loop of a client with lanes ends asks it for its first lane.
func (c *Client) done(ex *exchange, reusable bool) {
	cn := ex.cn
	l := cn.loop
	c.mu.Lock()
	delete(c.watched, ex)
	reusable = reusable && !ex.fired && !(l.lanes == laneTaken && !cn.lane)
	l.inflight--
	if c.lanes && l.lanes == laneUntried && !c.closed {
		l.lanes = laneAsking
		go c.addLane(l)
	}
	if reusable && !c.closed {
		cn.idleAt = time.Now()
		l.idle = append(l.idle, cn)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	cn.nc.Close()
}

// addLane asks l for a lane in the background and puts it in l's pool, or
// the socket's connection where node did not take it. A loop's
// invocations go over the socket's connections meanwhile, so that a cold
// start does not wait for a lane (see lane.go).
func (c *Client) addLane(l *loop) {
	nc, err := dialLane(l.path, time.Now().Add(laneTimeout))
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		l.lanes = laneUntried // asked again after the next invocation
		return
	}
	cn := newConn(nc, l)
	if cn.lane {
		l.lanes = laneTaken
	} else {
		l.lanes = laneRefused
	}
	if c.closed {
		nc.Close()
		return
	}
	cn.idleAt = time.Now()
	l.idle = append(l.idle, cn)
}

// longAgo is a deadline in the past: it fails a connection's reads and
// writes at once.
var longAgo = time.Unix(1, 0)

// RoundTrip sends req to node and returns its response, whose body must be
// closed. The invocation ends at deadline (ErrTimeout) or when req's
// context is done. Errors: ErrUnreached when no user code can have run,
// ErrTimeout, the context's error, or another error for a connection that
// broke (node crashed or closed it).
func (c *Client) RoundTrip(req *http.Request, deadline time.Time) (*http.Response, error) {
	cn, err := c.take(deadline)
	if err != nil {
		return nil, err
	}
	ex := &exchange{c: c, cn: cn, ctx: req.Context(), deadline: deadline}
	c.watchOver(ex)

	head := heads.Get().(*[]byte)
	*head = appendHead((*head)[:0], req)
	_, err = cn.w.Write(*head)
	heads.Put(head)
	if err != nil {
		ex.finish(false)
		if e := ex.cause(err); e != err {
			return nil, e
		}
		return nil, fmt.Errorf("%w: %w", ErrUnreached, err)
	}
	if hasBody(req) {
		ex.wrote = make(chan error, 1)
		go func() {
			err := writeBody(cn.nc, req)
			if err != nil {
				// node waits for the rest of the body: end its request.
				cn.nc.Close()
			}
			ex.wrote <- err
		}()
	}
	resp, err := readResponse(cn.br, req)
	if err != nil {
		ex.finish(false)
		return nil, ex.cause(err)
	}
	ex.close = resp.Close || resp.StatusCode == http.StatusSwitchingProtocols
	ex.body = resp.Body
	resp.Body = ex
	return resp, nil
}

// exchange is one invocation on one connection, and its response's body:
// reading that to its end or closing it ends the exchange.
type exchange struct {
	// immutable
	c        *Client
	cn       *conn
	ctx      context.Context
	deadline time.Time

	body  io.ReadCloser // the response's body as read from cn; set before it is returned
	fired bool          // guarded by c.mu; watch failed cn's reads and writes
	wrote chan error    // the body writer's result; nil without a body
	close bool          // the response says the connection ends with it
	ended bool
}

// cause turns an I/O error of the exchange into what the caller branches
// on: the context's error once it is done, ErrTimeout once the deadline
// passed.
func (ex *exchange) cause(err error) error {
	if e := ex.ctx.Err(); e != nil {
		return e
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return ErrTimeout
	}
	return err
}

// finish ends the exchange once: the connection goes back to the pool if
// complete says the response was read whole and nothing else holds it.
func (ex *exchange) finish(complete bool) {
	if ex.ended {
		return
	}
	ex.ended = true
	reusable := complete && !ex.close
	if ex.wrote != nil {
		select {
		case err := <-ex.wrote:
			reusable = reusable && err == nil
		default:
			reusable = false // the request body still streams
		}
	}
	ex.c.done(ex, reusable)
}

func (ex *exchange) Read(p []byte) (int, error) {
	n, err := ex.body.Read(p)
	switch {
	case err == io.EOF:
		ex.finish(true)
	case err != nil:
		ex.finish(false)
		err = ex.cause(err)
	}
	return n, err
}

// Close ends the exchange; a body not read to its end closes the
// connection, which ends the invocation in node.
func (ex *exchange) Close() error {
	if !ex.ended {
		ex.finish(ex.body == http.NoBody)
	}
	return nil
}

// hasBody reports whether req has a body to send.
func hasBody(req *http.Request) bool {
	return req.Body != nil && req.Body != http.NoBody
}

var heads = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// skipped are the request headers appendHead writes itself or leaves out:
// framing and connection management are this hop's own.
var skipped = map[string]bool{
	"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Connection": true,
	"Keep-Alive": true, "Expect": true, "Te": true, "Upgrade": true, "Proxy-Connection": true,
	"Trailer": true,
}

// appendHead appends req's request line and headers to b.
func appendHead(b []byte, req *http.Request) []byte {
	b = append(b, req.Method...)
	b = append(b, ' ')
	b = append(b, req.URL.RequestURI()...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, req.Host...)
	b = append(b, "\r\n"...)
	for k, vs := range req.Header {
		if skipped[k] {
			continue
		}
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	switch {
	case hasBody(req) && req.ContentLength > 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, req.ContentLength, 10)
		b = append(b, "\r\n"...)
	case hasBody(req):
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	case req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch:
		b = append(b, "Content-Length: 0\r\n"...)
	}
	return append(b, "\r\n"...)
}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// writeBody writes req's body: as it is when its length is known, else
// chunked.
func writeBody(w io.Writer, req *http.Request) error {
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	if req.ContentLength > 0 {
		n, err := io.CopyBuffer(w, io.LimitReader(req.Body, req.ContentLength), *buf)
		if err == nil && n < req.ContentLength {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	cw := httputil.NewChunkedWriter(w)
	if _, err := io.CopyBuffer(cw, req.Body, *buf); err != nil {
		return err
	}
	if err := cw.Close(); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\r\n")
	return err
}
