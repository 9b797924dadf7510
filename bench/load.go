package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// requestTimeout bounds one request: the invoker's default queue timeout
// (30 s) plus the workloads' maxDuration (30 s) plus a margin, so the
// platform answers every request before the client gives up.
const requestTimeout = 65 * time.Second

// newTransport returns the HTTP/1.1 transport every slice shares:
// keep-alive, and enough idle connections that no burst has to dial again.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil, // loopback only
		MaxIdleConns:        10_000,
		MaxIdleConnsPerHost: 10_000,
		IdleConnTimeout:     90 * time.Second,
	}
}

// slice is what one mode's share of one round measured.
type slice struct {
	start, end time.Time // end: when the last response came back
	sent, ok   int
	failed     int                        // non-2xx responses and transport errors
	latencies  []time.Duration            // of 2xx responses, to the body's end
	ttfbs      []time.Duration            // of 2xx responses, to the response headers
	routes     map[string][]time.Duration // latencies again, by URL
}

// attack sends the targets next returns, one per arrival, with pacer for
// d, open-loop: vegeta starts a worker whenever every worker is busy, so a
// slow response never delays the next arrival. It returns once every response came back; when ctx
// ends it stops sending and cancels the requests in flight.
func attack(ctx context.Context, transport http.RoundTripper, next func() vegeta.Target, pacer vegeta.Pacer, d time.Duration, progress func(elapsed time.Duration, sent, ok, failed int)) slice {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rec := &ttfbRecorder{ctx: sctx, base: transport}
	atk := vegeta.NewAttacker(
		vegeta.Client(&http.Client{Transport: rec, Timeout: requestTimeout}),
		vegeta.MaxBody(0), // read and discard bodies
	)
	var sent atomic.Int64
	targeter := func(t *vegeta.Target) error {
		sent.Add(1)
		*t = next() // Request copies the header, so sharing it is safe
		return nil
	}
	s := slice{start: time.Now(), routes: map[string][]time.Duration{}}
	results := atk.Attack(targeter, pacer, d, "")
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	done := ctx.Done()
	for {
		select {
		case res, open := <-results:
			if !open {
				s.end = time.Now()
				s.sent = int(sent.Load())
				s.ttfbs = rec.samples()
				progress(time.Since(s.start), s.sent, s.ok, s.failed)
				return s
			}
			if res.Code >= 200 && res.Code < 300 && res.Error == "" {
				s.ok++
				s.latencies = append(s.latencies, res.Latency)
				s.routes[res.URL] = append(s.routes[res.URL], res.Latency)
			} else {
				s.failed++
			}
		case <-tick.C:
			progress(time.Since(s.start), int(sent.Load()), s.ok, s.failed)
		case <-done:
			atk.Stop()
			done = nil
		}
	}
}

// ttfbRecorder is the attacker's transport: it measures each 2xx
// response's time to its headers, and cancels every request when ctx ends.
type ttfbRecorder struct {
	// immutable
	ctx  context.Context // the slice's; it ends after the last response
	base http.RoundTripper

	mu    sync.Mutex
	ttfbs []time.Duration // guarded by mu
}

func (r *ttfbRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context()) // keeps the client's timeout
	context.AfterFunc(r.ctx, cancel)
	start := time.Now()
	resp, err := r.base.RoundTrip(req.WithContext(ctx))
	if err == nil && resp.StatusCode >= 200 && resp.StatusCode < 300 {
		d := time.Since(start)
		r.mu.Lock()
		r.ttfbs = append(r.ttfbs, d)
		r.mu.Unlock()
	}
	return resp, err
}

// samples returns the times measured so far.
func (r *ttfbRecorder) samples() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ttfbs
}

var _ http.RoundTripper = (*ttfbRecorder)(nil)

// progressLine rewrites one status line on w with \r, about once a second.
type progressLine struct {
	w    io.Writer
	last int // length of the line last written; owned by the run loop
}

// show writes line over the previous one.
func (p *progressLine) show(line string) {
	pad := max(p.last-len(line), 0)
	fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
	p.last = len(line)
}

// end moves past the status line, if one was written.
func (p *progressLine) end() {
	if p.last > 0 {
		fmt.Fprintln(p.w)
		p.last = 0
	}
}
