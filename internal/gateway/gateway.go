package gateway

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
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
)

// Gateway is the client-facing http.Handler.
type Gateway struct {
	// immutable
	cfg   Config
	inv   Invoker
	api   http.Handler
	log   *slog.Logger
	proxy *httputil.ReverseProxy
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
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{cfg: cfg, inv: inv, api: api, log: log}
	g.proxy = &httputil.ReverseProxy{
		Rewrite:        g.rewrite,
		Transport:      invokeTransport{g.inv},
		FlushInterval:  -1,
		BufferPool:     bufferPool{},
		ModifyResponse: g.modifyResponse,
		ErrorHandler:   g.proxyError,
	}
	return g
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

type ctxKey struct{}

func invocationOf(r *http.Request) *invocation {
	inv, _ := r.Context().Value(ctxKey{}).(*invocation)
	return inv
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
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, inv))
	r.URL.Path = path
	r.URL.RawPath = ""
	// The function may answer while the body still streams in; without
	// full duplex net/http would discard the unread body when the
	// response starts.
	http.NewResponseController(w).EnableFullDuplex()
	g.proxy.ServeHTTP(w, r)
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

func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	inv := invocationOf(pr.In)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = pr.In.Host
	pr.Out.Host = pr.In.Host
	for k := range pr.Out.Header {
		if len(k) > 8 && strings.EqualFold(k[:8], "x-shoal-") {
			delete(pr.Out.Header, k)
		}
	}
	pr.SetXForwarded()
	pr.Out.Header.Set(IDHeader, inv.id)
}

func (g *Gateway) modifyResponse(resp *http.Response) error {
	inv := invocationOf(resp.Request)
	if code := resp.Header.Get(ErrorHeader); code != "" {
		return fromFunction(code)
	}
	if resp.ContentLength > g.cfg.MaxResponseBytes && resp.Request.Method != http.MethodHead {
		// The client gets a 500, and so does the meter (see Invoker). The
		// proxy closes the body, which ends the stream to the instance
		// like a client that went away.
		resp.StatusCode = http.StatusInternalServerError
		return &HTTPError{Status: http.StatusInternalServerError, Code: CodeResponseTooLarge,
			Msg: fmt.Sprintf("the function's response is over the limit of %d bytes; stream larger responses", g.cfg.MaxResponseBytes),
			Err: fmt.Errorf("response content-length %d over %d", resp.ContentLength, g.cfg.MaxResponseBytes)}
	}
	resp.Header.Set(IDHeader, inv.id)
	return nil
}

func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	inv := invocationOf(r)
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

// invokeTransport is the proxy's RoundTripper: the invoker.
type invokeTransport struct{ inv Invoker }

func (t invokeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.inv.Invoke(invocationOf(r).project, r)
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

// newRequestID returns a random request id.
func newRequestID() string {
	const alphabet = "0123456789abcdefghijklmnopqrstuv"
	var b [16]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[b[i]&31]
	}
	return string(b[:])
}

type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *(buffers.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }
