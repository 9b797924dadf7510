package gateway

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-dev/shoal/internal/invoker"
)

// Headers the platform owns.
const (
	// IDHeader carries the request id, to the function and back to the client.
	IDHeader = "x-shoal-id"
	// ErrorHeader marks a response from the instance as a platform error.
	ErrorHeader = "x-shoal-error"
	// APIPrefix is the path of the control API.
	APIPrefix = "/_shoal/"
)

// Invoker sends one invocation to the project's current deployment. The
// invocation is metered with the response's StatusCode as it is when the
// body is closed: the gateway sets it to the status it answers with when it
// turns the response into a platform error.
type Invoker interface {
	Invoke(project string, req *http.Request) (*http.Response, error)
}

// Config holds the request and response limits. Zero fields take the
// defaults.
type Config struct {
	// MaxBodyBytes bounds a request body; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxHeaderBytes bounds one request header, name and value; 0 means
	// DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// MaxHeadersBytes bounds all request headers together, each counted
	// as name and value; 0 means DefaultMaxHeadersBytes.
	MaxHeadersBytes int
	// MaxURLBytes bounds the request target, path and query as the client
	// sent them; 0 means DefaultMaxURLBytes.
	MaxURLBytes int
	// MaxResponseBytes bounds a buffered response: one whose
	// Content-Length is known before its body. A streamed response (no
	// Content-Length) is not bounded. 0 means DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// SendTimeout bounds how long one write of a response to the client
	// may wait for the client to take it; a client that takes nothing for
	// as long is cut off and its invocation ends. 0 means
	// DefaultSendTimeout.
	SendTimeout time.Duration
}

// The default limits, Vercel Functions' own.
const (
	// DefaultMaxBodyBytes is the default request body limit, 4.5 MB.
	DefaultMaxBodyBytes = 4_500_000
	// DefaultMaxHeaderBytes is the default limit of one request header, 16 KB.
	DefaultMaxHeaderBytes = 16 << 10
	// DefaultMaxHeadersBytes is the default limit of all request headers
	// together, 32 KB.
	DefaultMaxHeadersBytes = 32 << 10
	// DefaultMaxURLBytes is the default request target limit, 14 KB.
	DefaultMaxURLBytes = 14 << 10
	// DefaultMaxResponseBytes is the default buffered response limit,
	// 4.5 MB like the request body's.
	DefaultMaxResponseBytes = 4_500_000
	// DefaultSendTimeout is the default SendTimeout, nginx's send_timeout.
	DefaultSendTimeout = 60 * time.Second
)

// Gateway is the client-facing http.Handler.
type Gateway struct {
	// immutable
	cfg Config
	inv Invoker
	api http.Handler
	log *slog.Logger
}

// New returns a gateway that sends invocations to inv and control API
// requests (under APIPrefix) to api.
func New(cfg Config, inv Invoker, api http.Handler, log *slog.Logger) *Gateway {
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxHeaderBytes == 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.MaxHeadersBytes == 0 {
		cfg.MaxHeadersBytes = DefaultMaxHeadersBytes
	}
	if cfg.MaxURLBytes == 0 {
		cfg.MaxURLBytes = DefaultMaxURLBytes
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.SendTimeout == 0 {
		cfg.SendTimeout = DefaultSendTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Gateway{cfg: cfg, inv: inv, api: api, log: log}
}

// ServerMaxHeaderBytes is what the http.Server in front of g should set as
// its MaxHeaderBytes: well above the URL and header limits together, so
// that a request over them is answered by g with a platform error, not by
// net/http with a bare 431, while a far larger one is still cut off early.
func (g *Gateway) ServerMaxHeaderBytes() int {
	return 2*(g.cfg.MaxHeadersBytes+g.cfg.MaxURLBytes) + 64<<10
}

// invocation is what the gateway knows about one request in flight.
type invocation struct {
	id      string
	project string
	body    *limitedBody
}

// ServeHTTP routes r to the control API or to a project's function.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	project, path, ok := route(r.Host, r.URL.Path)
	if !ok && strings.HasPrefix(r.URL.Path, APIPrefix) && g.api != nil {
		g.api.ServeHTTP(w, r)
		return
	}
	id := newRequestID()
	if !ok {
		render(w, r, id, &HTTPError{Status: http.StatusNotFound, Code: CodeNotFound,
			Msg: "no project here: use /NAME/ or the host NAME.localhost"})
		return
	}
	if err := g.checkRequest(r); err != nil {
		render(w, r, id, err)
		return
	}
	if r.ContentLength > g.cfg.MaxBodyBytes {
		http.NewResponseController(w).EnableFullDuplex()
		render(w, r, id, tooLarge(g.cfg.MaxBodyBytes))
		linger(w, r.Body)
		return
	}
	inv := &invocation{id: id, project: project}
	if r.Body != nil && r.Body != http.NoBody {
		inv.body = &limitedBody{r: r.Body, left: g.cfg.MaxBodyBytes}
		r.Body = inv.body
	}
	r.URL.Path = path
	r.URL.RawPath = ""
	if inv.body != nil {
		// The function may answer while the body still streams in;
		// without full duplex net/http would discard the unread body when
		// the response starts.
		http.NewResponseController(w).EnableFullDuplex()
	}
	g.forward(w, r, inv)
}

// checkRequest returns the platform error for a request target or headers
// over their limits, and nil for a request within them. Host counts as a
// header, as the client sent it.
func (g *Gateway) checkRequest(r *http.Request) *HTTPError {
	if n := targetLen(r.URL); n > g.cfg.MaxURLBytes {
		return &HTTPError{Status: http.StatusRequestURITooLong, Code: CodeURLTooLong,
			Msg: fmt.Sprintf("URL of %d bytes over the limit of %d bytes", n, g.cfg.MaxURLBytes)}
	}
	total := len("host") + len(r.Host)
	if total > g.cfg.MaxHeaderBytes {
		return headerTooLarge("host", total, g.cfg.MaxHeaderBytes)
	}
	for name, values := range r.Header {
		for _, v := range values {
			n := len(name) + len(v)
			if n > g.cfg.MaxHeaderBytes {
				return headerTooLarge(name, n, g.cfg.MaxHeaderBytes)
			}
			total += n
		}
	}
	if total > g.cfg.MaxHeadersBytes {
		return &HTTPError{Status: http.StatusRequestHeaderFieldsTooLarge, Code: CodeHeaderTooLarge,
			Msg: fmt.Sprintf("request headers of %d bytes in all over the limit of %d bytes in all", total, g.cfg.MaxHeadersBytes)}
	}
	return nil
}

func headerTooLarge(name string, n, limit int) *HTTPError {
	if len(name) > 64 {
		name = name[:64] + "..."
	}
	return &HTTPError{Status: http.StatusRequestHeaderFieldsTooLarge, Code: CodeHeaderTooLarge,
		Msg: fmt.Sprintf("request header %q of %d bytes (name and value) over the limit of %d bytes for one header", name, n, limit)}
}

// targetLen is the length of u's request target, path and query, as the
// client sent it (net/http keeps the client's escaping in RawPath when it
// differs from the default one).
func targetLen(u *url.URL) int {
	n := len(u.EscapedPath()) + len(u.RawQuery)
	if u.RawQuery != "" || u.ForceQuery {
		n++
	}
	return n
}

// route finds the project and the function's path: Host NAME.localhost
// keeps the path; otherwise the first path segment names the project.
func route(host, path string) (project, rest string, ok bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if name, found := strings.CutSuffix(strings.ToLower(host), ".localhost"); found && name != "" && !strings.Contains(name, ".") {
		return name, path, true
	}
	trimmed := strings.TrimPrefix(path, "/")
	name, after, hasSlash := strings.Cut(trimmed, "/")
	if name == "" || strings.HasPrefix(name, "_") {
		return "", "", false
	}
	if !hasSlash {
		return name, "/", true
	}
	return name, "/" + after, true
}

// forward sends r to the function and copies its response to w. It is a
// reverse proxy's work cut to what one hop to node needs: r is the
// gateway's own to change, node's response has no trailers and no
// upgrades (nodelink), and every write is flushed as it comes, so a
// streamed response reaches the client as the function writes it.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, inv *invocation) {
	prepare(r, inv.id)
	resp, err := g.inv.Invoke(inv.project, r)
	if err == nil {
		if err = g.checkResponse(r, resp); err != nil {
			resp.Body.Close()
		}
	}
	if err != nil {
		g.proxyError(w, r, inv, err)
		return
	}
	defer resp.Body.Close()
	h := w.Header()
	removeHopHeaders(resp.Header)
	for k, vs := range resp.Header {
		h[k] = vs
	}
	// The request's id value, which prepare made: one allocation less.
	h[canonicalIDHeader] = r.Header[canonicalIDHeader]
	w.WriteHeader(resp.StatusCode)
	if err := copyFlushing(w, resp.Body, g.cfg.SendTimeout); err != nil {
		// Ends the client's connection mid-response: a response cut short
		// must not look whole.
		if r.Context().Err() == nil {
			g.log.Debug("response cut off", "id", inv.id, "project", inv.project, "err", err)
		}
		panic(http.ErrAbortHandler)
	}
}

// prepare makes r the request the function sees: no header of the
// platform's but the request id, no hop-by-hop header, and X-Forwarded-For,
// -Host and -Proto as the gateway saw the client.
func prepare(r *http.Request, id string) {
	removeHopHeaders(r.Header)
	for k := range r.Header {
		if len(k) > 8 && strings.EqualFold(k[:8], "x-shoal-") {
			delete(r.Header, k)
		}
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	// The values share one array: one allocation, not four.
	vs := [...]string{r.Host, proto, id, ip}
	r.Header["X-Forwarded-Host"] = vs[0:1:1]
	r.Header["X-Forwarded-Proto"] = vs[1:2:2]
	r.Header[canonicalIDHeader] = vs[2:3:3]
	if err == nil {
		r.Header["X-Forwarded-For"] = vs[3:4:4]
	} else {
		delete(r.Header, "X-Forwarded-For")
	}
}

// The headers' canonical names: http.Header's Get allocates to
// canonicalize any other spelling.
var (
	canonicalIDHeader    = http.CanonicalHeaderKey(IDHeader)
	canonicalErrorHeader = http.CanonicalHeaderKey(ErrorHeader)
)

// hopHeaders are the headers of one connection, not of the message
// (RFC 9110, 7.6.1).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// removeHopHeaders deletes hop-by-hop headers from h: those named in its
// Connection header and the standard ones.
func removeHopHeaders(h http.Header) {
	if !hasHopHeader(h) {
		return
	}
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			// keep-alive, node's on every response, goes below anyway:
			// skipping it saves canonicalizing (allocating) it.
			name = textproto.TrimString(name)
			if name != "" && !strings.EqualFold(name, "keep-alive") {
				delete(h, http.CanonicalHeaderKey(name))
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// hasHopHeader reports whether h has any of hopHeaders: with a handful of
// headers, as most messages have, comparing each name with them costs
// less than a delete of each of them (a hash each).
func hasHopHeader(h http.Header) bool {
	for k := range h {
		if slices.Contains(hopHeaders, k) {
			return true
		}
	}
	return false
}

// copyFlushing copies body to w, flushing after every write, each of
// which the client must take within timeout. It returns the first read or
// write error; the end of body is none.
func copyFlushing(w http.ResponseWriter, body io.Reader, timeout time.Duration) error {
	bufp := buffers.Get().(*[]byte)
	defer buffers.Put(bufp)
	buf := *bufp
	// net/http clears the deadline once the response is done: the
	// connection's next answer starts with none.
	rc := http.NewResponseController(w)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			rc.SetWriteDeadline(time.Now().Add(timeout))
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			if err := rc.Flush(); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// checkResponse returns the platform error that resp is, or that it would
// break: a response the instance marked as one (ErrorHeader), or one with a
// Content-Length over the limit.
func (g *Gateway) checkResponse(r *http.Request, resp *http.Response) error {
	if code := resp.Header.Get(canonicalErrorHeader); code != "" {
		return fromFunction(code)
	}
	if resp.ContentLength > g.cfg.MaxResponseBytes && r.Method != http.MethodHead {
		// The client gets a 500, and so does the meter (see Invoker).
		// Closing the body ends the stream to the instance like a client
		// that went away.
		resp.StatusCode = http.StatusInternalServerError
		return &HTTPError{Status: http.StatusInternalServerError, Code: CodeResponseTooLarge,
			Msg: fmt.Sprintf("the function's response is over the limit of %d bytes; stream larger responses", g.cfg.MaxResponseBytes),
			Err: fmt.Errorf("response content-length %d over %d", resp.ContentLength, g.cfg.MaxResponseBytes)}
	}
	return nil
}

// proxyError answers the invocation inv of r, which failed with err, with
// the platform error err is or stands for.
func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, inv *invocation, err error) {
	if inv.body != nil && inv.body.exceeded.Load() {
		err = tooLarge(g.cfg.MaxBodyBytes)
	}
	var he *HTTPError
	switch {
	case errors.As(err, &he):
	case errors.Is(err, invoker.ErrNotFound):
		err = &HTTPError{Status: http.StatusNotFound, Code: CodeDeploymentNotFound,
			Msg: fmt.Sprintf("project %q has no deployment", inv.project), Err: err}
	case errors.Is(err, invoker.ErrNoRoute):
		err = &HTTPError{Status: http.StatusNotFound, Code: CodeNotFound,
			Msg: fmt.Sprintf("no function of project %q answers %s", inv.project, r.URL.Path), Err: err}
	case errors.Is(err, invoker.ErrThrottled):
		err = &HTTPError{Status: http.StatusServiceUnavailable, Code: CodeThrottled,
			Msg: "the function is at capacity; retry later", Err: err, RetryAfter: 1}
	case errors.Is(err, invoker.ErrStartFailed):
		err = &HTTPError{Status: http.StatusInternalServerError, Code: CodeInvocationFailed,
			Msg: "the function failed to start; see its logs", Err: err}
	case r.Context().Err() != nil:
		// The client went away; nobody reads what we write.
		g.log.Debug("client gone", "id", inv.id, "project", inv.project)
		return
	default:
		err = &HTTPError{Status: http.StatusInternalServerError, Code: CodeInvocationFailed,
			Msg: "the function's instance failed while serving the request", Err: err}
	}
	if errors.As(err, &he) && he.Status >= 500 {
		g.log.Info("invocation error", "id", inv.id, "project", inv.project, "err", err)
	}
	render(w, r, inv.id, err)
	if inv.body != nil && inv.body.exceeded.Load() {
		linger(w, inv.body.r)
	}
}

func tooLarge(limit int64) *HTTPError {
	return &HTTPError{Status: http.StatusRequestEntityTooLarge, Code: CodePayloadTooLarge,
		Msg: fmt.Sprintf("request body over the limit of %d bytes", limit)}
}

// errBodyTooLarge fails the read of a body over the limit.
var errBodyTooLarge = errors.New("request body too large")

// limitedBody fails reads past the limit and remembers that it did.
type limitedBody struct {
	r        io.ReadCloser
	left     int64
	exceeded atomic.Bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		b.exceeded.Store(true)
		return 0, errBodyTooLarge
	}
	return n, err
}

// Close leaves the request's body open: net/http closes it when the
// handler returns, and a body over the limit is still drained (linger).
func (b *limitedBody) Close() error { return nil }

// Bounds of linger.
const (
	lingerTime  = 2 * time.Second
	lingerBytes = 64 << 20
)

// linger reads and discards what is left of a request body after the
// response to it was written (a 413), for a while: a client still sending
// would otherwise have its connection reset under it, often before it
// reads the answer.
func linger(w http.ResponseWriter, body io.Reader) {
	rc := http.NewResponseController(w)
	rc.Flush()
	rc.SetReadDeadline(time.Now().Add(lingerTime))
	io.CopyN(io.Discard, body, lingerBytes)
}

// newRequestID returns a random request id: 80 bits, from math/rand/v2's
// generator (ChaCha8, seeded by the system; no system call per id, unlike
// crypto/rand). An id names a request; it grants nothing.
func newRequestID() string {
	const alphabet = "0123456789abcdefghijklmnopqrstuv"
	var b [16]byte
	n := rand.Uint64()
	m := rand.Uint64()
	for i := range b {
		if i == 12 {
			n = m
		}
		b[i] = alphabet[n&31]
		n >>= 5
	}
	return string(b[:])
}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
