package tunnel

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// HandshakeTimeout bounds how long a dialed connection may take to send its
// handshake line.
const HandshakeTimeout = 5 * time.Second

// ErrClosed is returned by Wait after the listener closed.
var ErrClosed = errors.New("tunnel: listener closed")

// Listener is the invoker's end: it accepts connections that instances dial
// and hands each authenticated one, as an HTTP/2 client connection, to the
// caller that expected it.
type Listener struct {
	// immutable
	ln        net.Listener
	transport *http2.Transport
	log       *slog.Logger

	mu       sync.Mutex
	pending  map[string]*Pending   // guarded by mu; instance id -> expectation
	adopting map[net.Conn]struct{} // guarded by mu; adopted, not ready yet
	closed   bool                  // guarded by mu; set when Run ends

	wg sync.WaitGroup // handshakes in progress
}

// Listen opens the listener on addr ("127.0.0.1:0" for any loopback port).
// Run must be called to accept connections.
func Listen(addr string, log *slog.Logger) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tunnel listen %s: %w", addr, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{
		ln: ln,
		transport: &http2.Transport{
			AllowHTTP:          true,
			DisableCompression: true,
			// A dead runtime on loopback closes its socket; the ping
			// catches one that hangs without closing.
			ReadIdleTimeout: 30 * time.Second,
			PingTimeout:     10 * time.Second,
		},
		log:      log,
		pending:  make(map[string]*Pending),
		adopting: make(map[net.Conn]struct{}),
	}, nil
}

// Addr is the address instances dial.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Pending is an expected instance connection.
type Pending struct {
	id    string
	token string
	ch    chan *Conn // accept goroutine -> Wait; buffered 1
	l     *Listener
}

// Expect registers instance id and returns its expectation, whose Token the
// instance must present. Call Wait for the connection and Cancel when it is
// no longer expected. Expecting an id twice replaces the first expectation.
func (l *Listener) Expect(id string) *Pending {
	b := make([]byte, 24)
	rand.Read(b)
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
	for i := range b {
		b[i] = alphabet[b[i]&63]
	}
	p := &Pending{id: id, token: string(b), ch: make(chan *Conn, 1), l: l}
	l.mu.Lock()
	l.pending[id] = p
	l.mu.Unlock()
	return p
}

// Token is the one-time secret the instance presents.
func (p *Pending) Token() string { return p.token }

// Wait returns the instance's connection once it dialed and authenticated.
func (p *Pending) Wait(ctx context.Context) (*Conn, error) {
	select {
	case c, ok := <-p.ch:
		if !ok {
			return nil, ErrClosed
		}
		return c, nil
	case <-ctx.Done():
		p.Cancel()
		// A connection may have arrived just now.
		select {
		case c, ok := <-p.ch:
			if ok && c != nil {
				c.Close()
			}
		default:
		}
		return nil, ctx.Err()
	}
}

// Cancel withdraws the expectation; a later dial with its token is refused.
func (p *Pending) Cancel() {
	p.l.mu.Lock()
	if p.l.pending[p.id] == p {
		delete(p.l.pending, p.id)
	}
	p.l.mu.Unlock()
}

// Adopt takes c, serve's end of a socket pair whose other end only
// instance id holds, so it needs no token (see PROTOCOL.md). Once the
// runtime says it is ready on it, c goes to whoever Expects id, as a dialed
// and authenticated connection would; it is closed if id is no longer
// expected by then, or if the runtime goes first.
func (l *Listener) Adopt(id string, c net.Conn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		c.Close()
		return
	}
	l.adopting[c] = struct{}{}
	l.wg.Add(1)
	l.mu.Unlock()
	go func() {
		defer l.wg.Done()
		// Byte by byte: what follows belongs to HTTP/2.
		line, err := bufio.NewReaderSize(&oneByteReader{c}, 16).ReadString('\n')
		l.mu.Lock()
		delete(l.adopting, c)
		l.mu.Unlock()
		if err != nil || line != readyLine {
			l.log.Debug("tunnel: runtime not ready", "instance", id, "line", line, "err", err)
			c.Close()
			return
		}
		l.mu.Lock()
		p := l.pending[id]
		if p != nil {
			delete(l.pending, id)
		}
		l.mu.Unlock()
		if p == nil {
			c.Close()
			return
		}
		if err := l.deliver(p, c); err != nil {
			l.log.Debug("tunnel: adopted connection", "err", err)
			c.Close()
		}
	}()
}

// Ready tells the invoker, on a socket pair's end c, that the runtime
// serves: Serve may follow.
func Ready(c net.Conn) error {
	if _, err := c.Write([]byte(readyLine)); err != nil {
		return fmt.Errorf("tunnel ready: %w", err)
	}
	return nil
}

// take removes and returns the expectation for id if token matches.
func (l *Listener) take(id, token string) *Pending {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.pending[id]
	if p == nil || subtle.ConstantTimeCompare([]byte(p.token), []byte(token)) != 1 {
		return nil
	}
	delete(l.pending, id)
	return p
}

// Run accepts connections until ctx is done or the listener fails. It
// closes the listener before it returns.
func (l *Listener) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { l.ln.Close() })
	defer stop()
	defer l.close()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("tunnel accept: %w", err)
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			if err := l.handshake(c); err != nil {
				l.log.Debug("tunnel handshake refused", "remote", c.RemoteAddr().String(), "err", err)
				c.Close()
			}
		}()
	}
}

func (l *Listener) close() {
	l.ln.Close()
	l.mu.Lock()
	l.closed = true // Adopt takes no more
	for c := range l.adopting {
		c.Close() // its runtime is not ready yet, and will not be served
	}
	l.mu.Unlock()
	l.wg.Wait()
	l.mu.Lock()
	for id, p := range l.pending {
		close(p.ch)
		delete(l.pending, id)
	}
	l.mu.Unlock()
}

func (l *Listener) handshake(c net.Conn) error {
	c.SetDeadline(time.Now().Add(HandshakeTimeout))
	id, token, err := readHello(c)
	if err != nil {
		return err
	}
	p := l.take(id, token)
	if p == nil {
		return fmt.Errorf("instance %s: unknown id or wrong token", id)
	}
	if _, err := c.Write([]byte(okLine)); err != nil {
		return fmt.Errorf("instance %s: write ok: %w", id, err)
	}
	c.SetDeadline(time.Time{})
	return l.deliver(p, c)
}

// deliver makes c, authenticated for p's instance, an HTTP/2 client
// connection and hands it to p's Wait.
func (l *Listener) deliver(p *Pending, c net.Conn) error {
	conn := newConn(p.id, c)
	cc, err := l.transport.NewClientConn(conn.watched)
	if err != nil {
		return fmt.Errorf("instance %s: http2 client: %w", p.id, err)
	}
	conn.cc = cc
	p.ch <- conn
	return nil
}

// Conn is an authenticated tunnel to one instance.
type Conn struct {
	// immutable after the handshake
	id      string
	cc      *http2.ClientConn
	watched *watchedConn
}

func newConn(id string, c net.Conn) *Conn {
	return &Conn{id: id, watched: &watchedConn{Conn: c, done: make(chan struct{})}}
}

// ID is the instance id the connection authenticated as.
func (c *Conn) ID() string { return c.id }

// RoundTrip sends one invocation on its own stream.
func (c *Conn) RoundTrip(req *http.Request) (*http.Response, error) {
	return c.cc.RoundTrip(req)
}

// Usable reports whether a new invocation can start on the connection.
func (c *Conn) Usable() bool {
	select {
	case <-c.watched.done:
		return false
	default:
	}
	return c.cc.CanTakeNewRequest()
}

// Done is closed when the connection stopped reading: the instance is gone.
func (c *Conn) Done() <-chan struct{} { return c.watched.done }

// Shutdown lets the streams in flight finish, starts no new ones, and then
// closes the connection; when ctx is done first it closes at once.
func (c *Conn) Shutdown(ctx context.Context) error {
	err := c.cc.Shutdown(ctx)
	if err != nil {
		c.cc.Close()
	}
	c.watched.Close()
	return err
}

// Close closes the connection, failing the streams in flight.
func (c *Conn) Close() error {
	err := c.cc.Close()
	c.watched.Close()
	return err
}

// watchedConn closes done when a read fails, which is how the HTTP/2 client
// learns its peer went away.
type watchedConn struct {
	net.Conn
	once sync.Once
	done chan struct{} // closed on the first read error or Close
}

func (w *watchedConn) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	if err != nil {
		w.once.Do(func() { close(w.done) })
	}
	return n, err
}

func (w *watchedConn) Close() error {
	w.once.Do(func() { close(w.done) })
	return w.Conn.Close()
}
