package invoker

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-dev/shoal/internal/metering"
	"github.com/shoal-dev/shoal/internal/model"
	"github.com/shoal-dev/shoal/internal/nodelink"
	"github.com/shoal-dev/shoal/internal/routes"
	"github.com/shoal-dev/shoal/internal/tunnel"
)

// Errors the gateway turns into platform errors.
var (
	// ErrNotFound: the project has no current deployment.
	ErrNotFound = errors.New("invoker: no such project")
	// ErrNoRoute: the project's functions are api/ files and none answers
	// the request's path.
	ErrNoRoute = errors.New("invoker: no function at this path")
	// ErrThrottled: the queue is full or the wait for a slot passed its bound.
	ErrThrottled = errors.New("invoker: no capacity")
	// ErrStartFailed: no instance could be started to serve the invocation.
	ErrStartFailed = errors.New("invoker: instance failed to start")
)

// Config tunes the invoker. Zero fields take the defaults of DefaultConfig.
type Config struct {
	// QueueSize is how many invocations of one deployment may wait for a
	// slot at once.
	QueueSize int
	// QueueTimeout is how long an invocation may wait for a slot.
	QueueTimeout time.Duration
	// KeepAlive is how long an idle instance stays started.
	KeepAlive time.Duration
	// MaxInstances caps the instances of one deployment.
	MaxInstances int
	// MaxStarting caps the instances of one deployment starting at once.
	MaxStarting int
	// StartTimeout bounds an instance's start, from process to tunnel.
	StartTimeout time.Duration
	// StopTimeout is how long a stopping instance may take before it is
	// killed.
	StopTimeout time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		QueueSize:    1000,
		QueueTimeout: 30 * time.Second,
		KeepAlive:    5 * time.Minute,
		MaxInstances: 50,
		MaxStarting:  2 * runtime.NumCPU(),
		StartTimeout: 30 * time.Second,
		StopTimeout:  5 * time.Second,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.QueueSize == 0 {
		c.QueueSize = d.QueueSize
	}
	if c.QueueTimeout == 0 {
		c.QueueTimeout = d.QueueTimeout
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = d.KeepAlive
	}
	if c.MaxInstances == 0 {
		c.MaxInstances = d.MaxInstances
	}
	if c.MaxStarting == 0 {
		c.MaxStarting = d.MaxStarting
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = d.StartTimeout
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = d.StopTimeout
	}
	return c
}

// Deployment is what the invoker needs to run a deployment's instances.
type Deployment struct {
	ID, Project string
	// Dir is the deployment folder, which the functions' bundles are in.
	Dir string
	// Env is added to the functions' environment, as NAME=VALUE.
	Env []string
	// Functions are the deployment's functions; each has its own
	// instances. At least one.
	Functions []model.Function
	// Routes matches a request path to the index of its function in
	// Functions; nil sends every request to Functions[0].
	Routes *routes.Table
}

// Launch is what a Starter needs to start one instance.
type Launch struct {
	Instance   string
	Deployment Deployment
	// Function is the one of Deployment.Functions the instance runs.
	Function model.Function
	// TunnelAddr and Token are how the instance dials back.
	TunnelAddr, Token string
}

// Starter starts instance processes; the sandbox implements it.
type Starter interface {
	Start(ctx context.Context, l Launch) (Process, error)
}

// Process is a started instance process.
type Process interface {
	// Done is closed when the process has exited.
	Done() <-chan struct{}
	// Stop ends the process: gracefully until ctx is done, then by force.
	Stop(ctx context.Context) error
	// Socket is the unix socket node's first event loop serves on, once
	// the instance's tunnel is up; loop n serves on Socket() + ".n".
	Socket() string
	// Log adds a record of the platform's own to the instance's logs, for
	// the invocation id.
	Log(id, msg string)
}

// Counted is a Process whose resources the host counts (its cgroup): its
// CPU time and peak memory are metered from there rather than from what the
// instance reports of itself.
type Counted interface {
	// Counted returns the CPU time the process used so far and the most
	// memory it held; ok is false where nothing counts them.
	Counted() (cpu time.Duration, peakMemory int64, ok bool)
	// OutOfMemory reports whether a process of the instance was killed at
	// its memory limit.
	OutOfMemory() bool
}

// Meter receives what the invoker sees, for metering; the metering
// package's Recorder implements it.
type Meter interface {
	InstanceStarted(in metering.Instance)
	InstanceStopped(instance string, now time.Time)
	// InstanceSampled records an instance's CPU time so far and its
	// resident memory, as the instance reported them at at.
	InstanceSampled(instance string, at time.Time, cpu time.Duration, rssBytes int64)
	Invoked(inv metering.Invocation)
	// Waited records that an invocation's work went on past its response
	// (waitUntil): inv.Start is when the response finished, inv.End when
	// the work did.
	Waited(inv metering.Invocation)
}

// Invoker dispatches invocations to the instances of each project's current
// deployment.
type Invoker struct {
	// immutable
	cfg     Config
	starter Starter
	meter   Meter
	tunnel  *tunnel.Listener
	log     *slog.Logger
	ctx     context.Context // the invoker's lifetime; cancelled by Close
	cancel  context.CancelFunc

	mu      sync.Mutex
	current map[string]*served // guarded by mu; project -> its current deployment
	pools   map[poolKey]*pool  // guarded by mu; every pool, current or draining
	closed  bool               // guarded by mu

	wg sync.WaitGroup // instance starts, watches and stops
}

// served is a deployment in service and its functions, in the order of its
// Functions.
type served struct {
	dep Deployment
	fns []*function
}

// function is one function in service: its lanes (see lanes.go), a pool
// each, and what its paths cost; costs is nil when the function serves one
// invocation per instance, where no invocation waits on another's loop and
// lanes would only start more instances.
type function struct {
	lanes [laneCount]*pool
	costs *pathCosts
}

// pool returns the pool of the lane for an invocation of the path with key
// (see pathKey).
func (f *function) pool(key string) *pool {
	if f.costs == nil {
		return f.lanes[lightLane]
	}
	return f.lanes[f.costs.lane(key)]
}

// observe takes the entry time off an instance's response to an invocation
// of the path with key, and records it.
func (f *function) observe(key string, h http.Header) {
	if entry, ok := entryOf(h); ok && f.costs != nil {
		f.costs.observe(key, entry)
	}
}

// poolKey names the pool of one lane of one function of one deployment.
type poolKey struct {
	deployment string
	function   int
	lane       int
}

// New returns an invoker that starts instances with starter, expects them
// to dial ln and reports to meter (nil: no metering).
func New(cfg Config, starter Starter, ln *tunnel.Listener, meter Meter, log *slog.Logger) *Invoker {
	if starter == nil || ln == nil {
		panic("invoker.New: starter and listener are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if meter == nil {
		meter = noMeter{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Invoker{
		cfg:     cfg.withDefaults(),
		starter: starter,
		meter:   meter,
		tunnel:  ln,
		log:     log,
		ctx:     ctx,
		cancel:  cancel,
		current: make(map[string]*served),
		pools:   make(map[poolKey]*pool),
	}
}

// Deploy makes d its project's current deployment. The previous one drains:
// its in-flight invocations finish and its instances stop once idle.
func (inv *Invoker) Deploy(d Deployment) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if inv.closed {
		return
	}
	old := inv.current[d.Project]
	s := &served{dep: d, fns: make([]*function, len(d.Functions))}
	for i, fn := range d.Functions {
		// A new deployment starts from what the previous one learned of
		// the same function: new code, but most likely the same kind of
		// work.
		prev := old.function(fn.File)
		f := &function{}
		if fn.Config.MaxConcurrency > 1 {
			f.costs = newPathCosts()
			if prev != nil && prev.costs != nil {
				f.costs = prev.costs
			}
		}
		for lane := range laneCount {
			key := poolKey{d.ID, i, lane}
			p := inv.pools[key]
			if p == nil {
				p = &pool{inv: inv, dep: d, fn: fn, key: key, learned: fn.Config.MaxConcurrency}
				if prev != nil {
					pp := prev.lanes[lane]
					pp.mu.Lock()
					if pp.learned < pp.fn.Config.MaxConcurrency {
						p.learned = min(pp.learned, fn.Config.MaxConcurrency)
					}
					pp.mu.Unlock()
				}
				inv.pools[key] = p
			}
			f.lanes[lane] = p
		}
		s.fns[i] = f
	}
	inv.current[d.Project] = s
	s.setCurrent(true, nil)
	if old != nil {
		old.setCurrent(false, s)
	}
}

// setCurrent puts every pool of s in service or out of it, except those
// that keep serves too.
func (s *served) setCurrent(current bool, keep *served) {
	for _, f := range s.fns {
		for _, p := range f.lanes {
			if keep == nil || !keep.has(p) {
				p.setCurrent(current)
			}
		}
	}
}

// has reports whether p is one of s's pools.
func (s *served) has(p *pool) bool {
	for _, f := range s.fns {
		if slices.Contains(f.lanes[:], p) {
			return true
		}
	}
	return false
}

// function returns s's function built from file; nil when there is none,
// or s is nil.
func (s *served) function(file string) *function {
	if s == nil {
		return nil
	}
	for _, f := range s.fns {
		if f.lanes[lightLane].fn.File == file {
			return f
		}
	}
	return nil
}

// Remove takes the project out of service; its instances stop once idle.
func (inv *Invoker) Remove(project string) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if s := inv.current[project]; s != nil {
		delete(inv.current, project)
		s.setCurrent(false, nil)
	}
}

// route returns the function of the project's current deployment that
// serves req, and sets the route's parameters in req's query, where they
// override the client's own.
func (inv *Invoker) route(project string, req *http.Request) (*function, error) {
	inv.mu.Lock()
	s := inv.current[project]
	inv.mu.Unlock()
	if s == nil {
		return nil, ErrNotFound
	}
	if s.dep.Routes == nil {
		return s.fns[0], nil
	}
	i, params, ok := s.dep.Routes.Match(req.URL.Path)
	if !ok {
		return nil, ErrNoRoute
	}
	if len(params) > 0 {
		q := req.URL.Query()
		for k, v := range params {
			q[k] = v
		}
		req.URL.RawQuery = q.Encode()
	}
	return s.fns[i], nil
}

// Invoke sends req to an instance of the project's current deployment. The
// response body must be closed; closing it frees the slot and meters the
// invocation with the response's StatusCode as it is then, so a caller that
// answers the client with another status (a platform error in place of the
// function's response) sets StatusCode to it before closing. An invocation
// the instance failed (it timed out, node crashed or ran out of memory) is
// answered with a response carrying ErrorHeader and the error's code, and a
// record in the function's logs says why.
func (inv *Invoker) Invoke(project string, req *http.Request) (*http.Response, error) {
	f, err := inv.route(project, req)
	if err != nil {
		return nil, err
	}
	key := pathKey(req.URL.Path)
	p := f.pool(key)
	// An instance found gone before the invocation reached node is not an
	// attempt: the invocation is placed again, once.
	for attempt := 0; ; attempt++ {
		in, err := p.acquire(req.Context())
		if err != nil {
			return nil, err
		}
		start := time.Now()
		resp, err := in.node.RoundTrip(req, start.Add(p.fn.Config.MaxDuration))
		if errors.Is(err, nodelink.ErrUnreached) || errors.Is(err, nodelink.ErrClosed) {
			p.release(in)
			p.lost(in)
			if attempt == 0 {
				continue
			}
			return nil, fmt.Errorf("invoke %s on %s: %w: %w", p.dep.ID, in.id, errInstanceGone, err)
		}
		id := req.Header.Get(canonicalIDHeader)
		if err != nil && req.Context().Err() == nil {
			resp = p.failed(in, req, id, err)
			err = nil
		}
		if err != nil {
			p.release(in)
			inv.meter.Invoked(metering.Invocation{Project: p.dep.Project, Deployment: p.dep.ID, Instance: in.id, ID: id,
				Start: start, End: time.Now(), Status: http.StatusInternalServerError})
			return nil, fmt.Errorf("invoke %s on %s: %w", p.dep.ID, in.id, err)
		}
		f.observe(key, resp.Header)
		resp.Body = &slotBody{ReadCloser: resp.Body, inv: inv, p: p, in: in, resp: resp,
			record: metering.Invocation{Project: p.dep.Project, Deployment: p.dep.ID, Instance: in.id, ID: id,
				Start: start, FirstByte: time.Now()}}
		return resp, nil
	}
}

// IDHeader carries each invocation's id to node.
const IDHeader = "x-shoal-id"

// The headers' canonical names: http.Header's Get and Del allocate to
// canonicalize any other spelling.
var (
	canonicalIDHeader    = http.CanonicalHeaderKey(IDHeader)
	canonicalEntryHeader = http.CanonicalHeaderKey(EntryHeader)
)

// Platform errors of an invocation the instance failed, answered in
// ErrorHeader.
const (
	// ErrorHeader names the header of a response that is a platform error.
	ErrorHeader     = "x-shoal-error"
	CodeTimeout     = "FUNCTION_INVOCATION_TIMEOUT"
	CodeFailed      = "FUNCTION_INVOCATION_FAILED"
	CodeOutOfMemory = "FUNCTION_OUT_OF_MEMORY"
)

// failed logs why in failed the invocation id with err and returns the
// response that says so.
func (p *pool) failed(in *instance, req *http.Request, id string, err error) *http.Response {
	switch {
	case errors.Is(err, nodelink.ErrTimeout):
		p.timedOut(in, id)
		return errorResponse(req, http.StatusGatewayTimeout, CodeTimeout)
	case p.outOfMemory(in):
		in.proc.Log(id, fmt.Sprintf("invocation failed: the instance ran out of memory (%d MB) and node was killed", p.fn.Config.MemoryMB))
		return errorResponse(req, http.StatusInternalServerError, CodeOutOfMemory)
	default:
		in.proc.Log(id, "invocation failed: "+err.Error())
		return errorResponse(req, http.StatusInternalServerError, CodeFailed)
	}
}

// timedOut logs that the invocation id reached its maxDuration.
func (p *pool) timedOut(in *instance, id string) {
	in.proc.Log(id, fmt.Sprintf("invocation timed out after %s (maxDuration)", p.fn.Config.MaxDuration))
}

// outOfMemory reports whether in's node was killed at its memory limit.
// The kernel counts the kill as it sends it, so a connection that broke
// because of it finds the count raised; an instance that is going for
// another reason is given a moment to exit first.
func (p *pool) outOfMemory(in *instance) bool {
	c, ok := in.proc.(Counted)
	if !ok {
		return false
	}
	if c.OutOfMemory() {
		return true
	}
	t := time.NewTimer(250 * time.Millisecond)
	defer t.Stop()
	select {
	case <-in.proc.Done():
	case <-in.conn.Done():
	case <-t.C:
	}
	return c.OutOfMemory()
}

// errorResponse is the response to req that says the platform error code.
func errorResponse(req *http.Request, status int, code string) *http.Response {
	return &http.Response{
		Status: strconv.Itoa(status) + " " + http.StatusText(status), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{http.CanonicalHeaderKey(ErrorHeader): {code}},
		Body:   http.NoBody, Request: req,
	}
}

var errInstanceGone = errors.New("instance gone before the invocation reached it")

// slotBody frees its invocation's slot when the response body is closed,
// and meters the invocation with the response's status then; it logs a
// timeout that cut the body off.
type slotBody struct {
	io.ReadCloser
	inv    *Invoker
	p      *pool
	in     *instance
	resp   *http.Response
	record metering.Invocation
	logged bool // the timeout was logged
	closed atomic.Bool
}

func (b *slotBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !b.logged && errors.Is(err, nodelink.ErrTimeout) {
		b.logged = true
		b.p.timedOut(b.in, b.record.ID)
	}
	return n, err
}

func (b *slotBody) Close() error {
	err := b.ReadCloser.Close()
	if b.closed.CompareAndSwap(false, true) {
		b.record.End = time.Now()
		b.record.Status = b.resp.StatusCode
		b.inv.meter.Invoked(b.record)
		b.p.release(b.in)
	}
	return err
}

// Run stops idle instances after their keep-alive and keeps minInstances
// started, ticking on tick, until ctx is done. Then it stops every instance
// and returns when they are gone.
func (inv *Invoker) Run(ctx context.Context, tick <-chan time.Time) error {
	defer inv.Close()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick:
			inv.reap(now)
		}
	}
}

// reap applies the scaler's decisions to every pool at now.
func (inv *Invoker) reap(now time.Time) {
	inv.mu.Lock()
	pools := make([]*pool, 0, len(inv.pools))
	for _, p := range inv.pools {
		pools = append(pools, p)
	}
	inv.mu.Unlock()
	for _, p := range pools {
		if p.reap(now) {
			inv.mu.Lock()
			if p.emptyAndRetired() {
				delete(inv.pools, p.key)
			}
			inv.mu.Unlock()
		}
	}
}

// Close stops every instance and waits for them. It is safe to call twice.
func (inv *Invoker) Close() error {
	inv.mu.Lock()
	if inv.closed {
		inv.mu.Unlock()
		inv.wg.Wait()
		return nil
	}
	inv.closed = true
	pools := inv.pools
	inv.current = map[string]*served{}
	inv.mu.Unlock()
	inv.cancel()
	for _, p := range pools {
		p.closeAll()
	}
	inv.wg.Wait()
	return nil
}

// Stats is a snapshot of one lane of one function of a deployment for
// observers and tests.
type Stats struct {
	Deployment, Project string
	// Function is the function's source file.
	Function string
	// Heavy is true for the function's heavy lane (see lanes.go).
	Heavy    bool
	Current  bool
	Ready    int
	Starting int
	Waiting  int
	InFlight int
	// Limits are the ready instances' concurrency limits; Learned is the
	// limit per event loop a new instance starts at.
	Limits  []int
	Learned int
	// Loops are the event loops each ready instance serves on, in the
	// order of Limits.
	Loops []int
}

// MostLoops is the most event loops one ready instance serves on, at
// least 1.
func (s Stats) MostLoops() int {
	most := 1
	for _, n := range s.Loops {
		most = max(most, n)
	}
	return most
}

// Stats returns a snapshot of every function of every deployment in
// service or draining, light lane and, when it is in use, heavy lane,
// sorted by deployment, function and lane.
func (inv *Invoker) Stats() []Stats {
	inv.mu.Lock()
	pools := make([]*pool, 0, len(inv.pools))
	for _, p := range inv.pools {
		pools = append(pools, p)
	}
	inv.mu.Unlock()
	out := make([]Stats, 0, len(pools))
	for _, p := range pools {
		st := p.stats()
		if st.Heavy && st.Ready+st.Starting+st.Waiting == 0 {
			continue // a lane not in use
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b Stats) int {
		return cmp.Or(strings.Compare(a.Deployment, b.Deployment), strings.Compare(a.Function, b.Function),
			cmp.Compare(btoi(a.Heavy), btoi(b.Heavy)))
	})
	return out
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

type noMeter struct{}

func (noMeter) InstanceStarted(metering.Instance)                       {}
func (noMeter) InstanceStopped(string, time.Time)                       {}
func (noMeter) InstanceSampled(string, time.Time, time.Duration, int64) {}
func (noMeter) Invoked(metering.Invocation)                             {}
func (noMeter) Waited(metering.Invocation)                              {}

func newID(prefix string) string {
	b := make([]byte, 8)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}
