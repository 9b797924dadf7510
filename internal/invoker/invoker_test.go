package invoker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/metering"
	"github.com/shoal-dev/shoal/internal/model"
	"github.com/shoal-dev/shoal/internal/routes"
	"github.com/shoal-dev/shoal/internal/tunnel"
)

// goStarter starts in-process instances: a goroutine that dials the tunnel
// like the runtime does and serves handler. It stands in for the sandbox at
// the process boundary only; the tunnel and the invoker are real.
type goStarter struct {
	handler http.Handler
	fail    atomic.Bool        // Start fails while set
	meter   *metering.Recorder // the invoker's
	waited  chan tunnel.Waited // reported by the next report of any instance
	blocked atomic.Bool        // instances report a loop that makes callbacks wait
	held    atomic.Bool        // instances report a loop busy computing, callbacks waiting a little
	slow    atomic.Bool        // Start takes 50 ms
	inStart atomic.Int64       // Start calls running
	peak    atomic.Int64       // the most Start calls running at once

	mu      sync.Mutex
	started []*goProcess
}

type goProcess struct {
	id     string
	socket string
	cancel context.CancelFunc
	done   chan struct{}

	mu   sync.Mutex
	logs []string // guarded by mu; what the invoker logged, as "id: msg"
}

func (p *goProcess) Done() <-chan struct{} { return p.done }

func (p *goProcess) Socket() string { return p.socket }

func (p *goProcess) Log(id, msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.logs = append(p.logs, id+": "+msg)
}

func (p *goProcess) logged() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.logs)
}

func (p *goProcess) Stop(ctx context.Context) error {
	p.cancel()
	<-p.done
	return nil
}

func (s *goStarter) Start(ctx context.Context, l Launch) (Process, error) {
	if s.fail.Load() {
		return nil, errors.New("no room for node")
	}
	n := s.inStart.Add(1)
	defer s.inStart.Add(-1)
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	if s.slow.Load() {
		time.Sleep(50 * time.Millisecond)
	}
	pctx, cancel := context.WithCancel(context.Background())
	dir, err := os.MkdirTemp("", "invoker")
	if err != nil {
		cancel()
		return nil, err
	}
	p := &goProcess{id: l.Instance, socket: filepath.Join(dir, "node.sock"), cancel: cancel, done: make(chan struct{})}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-instance", l.Instance)
		w.Header().Set("x-function", l.Function.File)
		s.handler.ServeHTTP(w, r)
	})
	// Invocations come to the "node" of the instance on its socket, one
	// per event loop.
	var servers sync.WaitGroup
	listen := func(path string) error {
		ln, err := net.Listen("unix", path)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: h}
		servers.Add(2)
		go func() { defer servers.Done(); srv.Serve(ln) }()
		go func() { defer servers.Done(); <-pctx.Done(); srv.Close() }()
		return nil
	}
	c, err := tunnel.Dial(ctx, l.TunnelAddr, l.Instance, l.Token)
	if err == nil {
		err = listen(p.socket)
	}
	if err != nil {
		cancel()
		os.RemoveAll(dir)
		return nil, err
	}
	go func() {
		defer close(p.done)
		defer os.RemoveAll(dir)
		defer servers.Wait()
		defer cancel()
		var cpu, busy, loops atomic.Int64
		loops.Store(1)
		began := time.Now()
		reports := tunnel.WithReports(pctx, http.NotFoundHandler(), func() tunnel.Report {
			// 10 ms of CPU per report, like a lightly loaded instance.
			r := tunnel.Report{TS: time.Now().UnixMilli(), CPUMs: cpu.Add(10), RSS: 50 << 20, LoopKnown: true, ELU: 0.1, DelayMaxMs: 1,
				Loops: int(loops.Load()), HostIdleCPUs: 1}
			if s.blocked.Load() {
				// node computes all the time, and callbacks wait.
				busy.Store(time.Since(began).Milliseconds())
				r.ELU, r.DelayMeanMs, r.DelayMaxMs = 1, 25, 50
			}
			if s.held.Load() {
				// Not a queue, and no room for more on the loop either.
				busy.Store(time.Since(began).Milliseconds())
				r.ELU, r.DelayMeanMs, r.DelayMaxMs = 0.8, 7, 30
			}
			r.NodeCPUMs = busy.Load()
			for {
				select {
				case w := <-s.waited:
					r.Waited = append(r.Waited, w)
					continue
				default:
				}
				return r
			}
		}, nil)
		// The loops asked for serve at once.
		tunnel.Serve(pctx, c, tunnel.WithLoops(reports, func(n int) error {
			for k := loops.Load(); k < int64(n); k++ {
				if err := listen(p.socket + "." + strconv.Itoa(int(k))); err != nil {
					return err
				}
			}
			loops.Store(int64(n))
			return nil
		}))
	}()
	s.mu.Lock()
	s.started = append(s.started, p)
	s.mu.Unlock()
	return p, nil
}

func (s *goStarter) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.started)
}

func newInvoker(t *testing.T, cfg Config, h http.Handler) (*Invoker, *goStarter) {
	t.Helper()
	before := runtime.NumGoroutine()
	ln, err := tunnel.Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	lnDone := make(chan error, 1)
	go func() { lnDone <- ln.Run(ctx) }()
	st := &goStarter{handler: h, meter: metering.NewRecorder(), waited: make(chan tunnel.Waited, 10)}
	inv := New(cfg, st, ln, st.meter, nil)
	t.Cleanup(func() {
		inv.Close()
		cancel()
		<-lnDone
		// Every goroutine the invoker started is gone after Close.
		for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before; {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Errorf("goroutines: %d before, %d after Close\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	return inv, st
}

func deployment(id string, maxConc int) Deployment {
	cfg := model.DefaultFunctionConfig()
	cfg.MaxConcurrency = maxConc
	return Deployment{ID: id, Project: "app", Functions: []model.Function{{File: "index.js", Config: cfg}}}
}

// gate holds invocations until released.
type gate struct {
	entered chan string
	release chan struct{}
}

func newGate() *gate { return &gate{entered: make(chan string, 100), release: make(chan struct{})} }

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.entered <- r.URL.Path
	select {
	case <-g.release:
	case <-r.Context().Done():
	}
	io.WriteString(w, "done")
}

func call(inv *Invoker, path string) (string, error) {
	req, _ := http.NewRequest("GET", "http://app"+path, nil)
	resp, err := inv.Invoke("app", req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	io.ReadAll(resp.Body)
	if v := resp.Header.Get(EntryHeader); v != "" {
		return "", fmt.Errorf("%s: the response still carries %s: %s", path, EntryHeader, v)
	}
	return resp.Header.Get("x-instance"), nil
}

func TestInvoker_PacksOntoOneInstance(t *testing.T) {
	g := newGate()
	inv, st := newInvoker(t, Config{}, g)
	inv.Deploy(deployment("d1", 10))
	errCh := make(chan error, 10)
	instances := make(chan string, 10)
	for i := range 10 {
		go func() {
			in, err := call(inv, fmt.Sprint("/", i))
			errCh <- err
			instances <- in
		}()
	}
	for range 10 {
		<-g.entered
	}
	close(g.release)
	seen := map[string]bool{}
	for range 10 {
		if err := <-errCh; err != nil {
			t.Error(err)
		}
		seen[<-instances] = true
	}
	if len(seen) != 1 || st.count() != 1 {
		t.Errorf("10 invocations at max 10 used %d instances (%d started), want 1", len(seen), st.count())
	}
}

func TestInvoker_ScalesOutPastTheLimit(t *testing.T) {
	g := newGate()
	inv, st := newInvoker(t, Config{}, g)
	inv.Deploy(deployment("d1", 2))
	errCh := make(chan error, 5)
	for i := range 5 {
		go func() { _, err := call(inv, fmt.Sprint("/", i)); errCh <- err }()
	}
	for range 5 {
		<-g.entered
	}
	if got, want := st.count(), 3; got != want {
		t.Errorf("5 invocations at max 2 started %d instances, want %d", got, want)
	}
	close(g.release)
	for range 5 {
		if err := <-errCh; err != nil {
			t.Error(err)
		}
	}
}

func TestInvoker_LimitFollowsTheLoop(t *testing.T) {
	g := newGate()
	inv, st := newInvoker(t, Config{}, g)
	inv.Deploy(deployment("d1", 10))
	errCh := make(chan error, 6)
	for i := range 4 {
		go func() { _, err := call(inv, fmt.Sprint("/", i)); errCh <- err }()
	}
	for range 4 {
		<-g.entered
	}
	// The four wait for each other on the loop: the limit drops to half
	// of them, and a new instance starts at what was learned.
	st.blocked.Store(true)
	waitFor(t, "limit cut to 2", func() bool {
		s := inv.Stats()
		return len(s) == 1 && len(s[0].Limits) == 1 && s[0].Limits[0] == 2 && s[0].Learned == 2
	})
	st.blocked.Store(false)
	for i := range 2 {
		go func() { _, err := call(inv, fmt.Sprint("/more", i)); errCh <- err }()
	}
	for range 2 {
		<-g.entered
	}
	if got := st.count(); got != 2 {
		t.Errorf("%d instances started, want a second one for the invocations past the cut limit", got)
	}
	close(g.release)
	for range 6 {
		if err := <-errCh; err != nil {
			t.Error(err)
		}
	}
}

func TestInvoker_StartsFewAtOnce(t *testing.T) {
	g := newGate()
	inv, st := newInvoker(t, Config{MaxStarting: 2}, g)
	st.slow.Store(true)
	inv.Deploy(deployment("d1", 1))
	errCh := make(chan error, 7)
	for i := range 7 {
		go func() { _, err := call(inv, fmt.Sprint("/", i)); errCh <- err }()
	}
	for range 7 {
		<-g.entered
	}
	if got := st.count(); got != 7 {
		t.Errorf("%d instances for 7 held invocations at max 1, want 7", got)
	}
	if got := st.peak.Load(); got != 2 {
		t.Errorf("%d instances started at once, want MaxStarting 2", got)
	}
	close(g.release)
	for range 7 {
		if err := <-errCh; err != nil {
			t.Error(err)
		}
	}
}

func TestInvoker_Throttles(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"queue_full", Config{QueueSize: 1, MaxInstances: 1, QueueTimeout: time.Minute}},
		{"queue_timeout", Config{QueueSize: 10, MaxInstances: 1, QueueTimeout: 100 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGate()
			inv, _ := newInvoker(t, tt.cfg, g)
			inv.Deploy(deployment("d1", 1))
			held := make(chan error, 2)
			go func() { _, err := call(inv, "/held"); held <- err }()
			<-g.entered
			queued := make(chan error, 1)
			if tt.name == "queue_full" {
				go func() { _, err := call(inv, "/queued"); queued <- err }()
				// Wait until it is in the queue.
				for deadline := time.Now().Add(5 * time.Second); inv.Stats()[0].Waiting != 1; {
					if time.Now().After(deadline) {
						t.Fatal("second invocation never queued")
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			_, err := call(inv, "/throttled")
			if !errors.Is(err, ErrThrottled) {
				t.Errorf("err = %v, want ErrThrottled", err)
			}
			close(g.release)
			if err := <-held; err != nil {
				t.Errorf("held invocation: %v", err)
			}
			if tt.name == "queue_full" {
				if err := <-queued; err != nil {
					t.Errorf("queued invocation: %v", err)
				}
			}
		})
	}
}

func TestInvoker_StartFailureFailsWaiters(t *testing.T) {
	inv, st := newInvoker(t, Config{QueueTimeout: time.Minute}, newGate())
	st.fail.Store(true)
	inv.Deploy(deployment("d1", 10))
	begin := time.Now()
	_, err := call(inv, "/")
	if !errors.Is(err, ErrStartFailed) {
		t.Errorf("err = %v, want ErrStartFailed", err)
	}
	if took := time.Since(begin); took > 10*time.Second {
		t.Errorf("failed after %s, want without waiting for the queue timeout", took)
	}
}

// TestInvoker_InstanceFailures: an invocation its instance fails is
// answered with the platform error that says why, and the function's logs
// say it too.
func TestInvoker_InstanceFailures(t *testing.T) {
	inv, st := newInvoker(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hang":
			<-r.Context().Done()
		case "/hang-after-headers":
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		case "/crash":
			// node's connection breaks under the invocation.
			c, _, _ := http.NewResponseController(w).Hijack()
			c.Close()
		}
	}))
	d := deployment("d1", 10)
	d.Functions[0].Config.MaxDuration = 300 * time.Millisecond
	inv.Deploy(d)
	tests := []struct {
		path       string
		status     int
		code       string
		log        string
		bodyBroken bool
	}{
		{"/hang", http.StatusGatewayTimeout, CodeTimeout, "timed out after 300ms (maxDuration)", false},
		{"/hang-after-headers", http.StatusOK, "", "timed out after 300ms (maxDuration)", true},
		{"/crash", http.StatusInternalServerError, CodeFailed, "invocation failed: ", false},
	}
	for i, tt := range tests {
		t.Run(strings.TrimPrefix(tt.path, "/"), func(t *testing.T) {
			id := "inv-" + strconv.Itoa(i)
			req, _ := http.NewRequest("GET", "http://app"+tt.path, nil)
			req.Header.Set(IDHeader, id)
			began := time.Now()
			resp, err := inv.Invoke("app", req)
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || resp.Header.Get(ErrorHeader) != tt.code || (err != nil) != tt.bodyBroken {
				t.Errorf("got %d %q, body error %v; want %d %q, body broken %v", resp.StatusCode, resp.Header.Get(ErrorHeader), err, tt.status, tt.code, tt.bodyBroken)
			}
			if took := time.Since(began); took > 10*time.Second {
				t.Errorf("took %s", took)
			}
			logs := st.started[0].logged()
			if !slices.ContainsFunc(logs, func(l string) bool { return strings.HasPrefix(l, id+": ") && strings.Contains(l, tt.log) }) {
				t.Errorf("logs %q, want one for %s saying %q", logs, id, tt.log)
			}
		})
	}
	// The instance still serves.
	if _, err := call(inv, "/"); err != nil {
		t.Errorf("after the failures: %v", err)
	}
}

func TestInvoker_NotFound(t *testing.T) {
	inv, _ := newInvoker(t, Config{}, newGate())
	if _, err := call(inv, "/"); !errors.Is(err, ErrNotFound) {
		t.Errorf("err = %v, want ErrNotFound", err)
	}
	inv.Deploy(deployment("d1", 1))
	inv.Remove("app")
	if _, err := call(inv, "/"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after Remove: err = %v, want ErrNotFound", err)
	}
}

func TestInvoker_LostInstanceIsReplaced(t *testing.T) {
	inv, st := newInvoker(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	inv.Deploy(deployment("d1", 10))
	first, err := call(inv, "/")
	if err != nil {
		t.Fatal(err)
	}
	// The instance goes away on its own (as when node exits).
	st.mu.Lock()
	p := st.started[0]
	st.mu.Unlock()
	p.cancel()
	<-p.done
	waitFor(t, "dead instance out of the pool", func() bool { return inv.Stats()[0].Ready == 0 })
	second, err := call(inv, "/")
	if err != nil {
		t.Fatalf("invocation after the instance died: %v", err)
	}
	if second == first {
		t.Errorf("served by the dead instance %s", first)
	}
}

func TestInvoker_ReapKeepsMinAndStopsIdle(t *testing.T) {
	g := newGate()
	inv, st := newInvoker(t, Config{KeepAlive: time.Minute}, g)
	d := deployment("d1", 1)
	d.Functions[0].Config.MinInstances = 1
	inv.Deploy(d)
	waitFor(t, "minInstances started", func() bool { s := inv.Stats(); return len(s) == 1 && s[0].Ready == 1 })
	// A burst of two at max 1 adds a second instance.
	errCh := make(chan error, 2)
	for range 2 {
		go func() { _, err := call(inv, "/"); errCh <- err }()
	}
	<-g.entered
	<-g.entered
	close(g.release)
	for range 2 {
		if err := <-errCh; err != nil {
			t.Fatal(err)
		}
	}
	if st.count() < 2 {
		t.Fatalf("%d instances started, want 2", st.count())
	}
	now := time.Now()
	inv.reap(now)
	if got := inv.Stats()[0].Ready; got != 2 {
		t.Errorf("within keep-alive: %d ready, want 2", got)
	}
	inv.reap(now.Add(2 * time.Minute))
	if got := inv.Stats()[0].Ready; got != 1 {
		t.Errorf("after keep-alive: %d ready, want minInstances 1", got)
	}
}

func TestInvoker_OldDeploymentDrains(t *testing.T) {
	g := newGate()
	inv, _ := newInvoker(t, Config{}, g)
	inv.Deploy(deployment("d1", 10))
	held := make(chan error, 1)
	go func() { _, err := call(inv, "/old"); held <- err }()
	<-g.entered
	inv.Deploy(deployment("d2", 10))
	close(g.release)
	if err := <-held; err != nil {
		t.Errorf("in-flight invocation of the old deployment: %v", err)
	}
	waitFor(t, "old deployment's instance stopped", func() bool {
		for _, s := range inv.Stats() {
			if s.Deployment == "d1" && s.Ready > 0 {
				return false
			}
		}
		return true
	})
	inv.reap(time.Now())
	for _, s := range inv.Stats() {
		if s.Deployment == "d1" {
			t.Errorf("old deployment still tracked: %+v", s)
		}
	}
}

func TestInvoker_ReportsReachTheMeter(t *testing.T) {
	inv, st := newInvoker(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	inv.Deploy(deployment("d1", 10))
	req, _ := http.NewRequest("GET", "http://app/", nil)
	req.Header.Set(IDHeader, "inv-1")
	resp, err := inv.Invoke("app", req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// The instance says the invocation's waitUntil work ran 300 ms past
	// its response (in whole milliseconds, so the end may lose one).
	now := time.Now()
	st.waited <- tunnel.Waited{ID: "inv-1", From: now.UnixMilli(), To: now.Add(300 * time.Millisecond).UnixMilli()}
	var u metering.Usage
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		u = st.meter.Usage([]string{"d1"}, now.Add(-time.Minute), now.Add(time.Minute))
		if u.ActiveCPU >= 20*time.Millisecond && u.PeakRSS == 50<<20 && u.Invocations == 1 && u.LatencyP50 >= 290*time.Millisecond {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage %+v after 10 s, want CPU from the reports and the invocation lasting its 300 ms of waitUntil", u)
		}
	}
}

func TestInvoker_MetersStatusAtClose(t *testing.T) {
	inv, st := newInvoker(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	inv.Deploy(deployment("d1", 10))
	for _, status := range []int{200, 500} {
		req, _ := http.NewRequest("GET", "http://app/", nil)
		resp, err := inv.Invoke("app", req)
		if err != nil {
			t.Fatal(err)
		}
		// The caller answered the client with another status (the gateway
		// with a platform error), and set it before closing.
		resp.StatusCode = status
		resp.Body.Close()
	}
	now := time.Now()
	u := st.meter.Usage([]string{"d1"}, now.Add(-time.Minute), now.Add(time.Minute))
	if u.Invocations != 2 || u.Errors != 1 {
		t.Errorf("got %d invocations, %d errors; want 2, 1 (the status set before Close)", u.Invocations, u.Errors)
	}
}

func TestPool_ReleaseTwicePanics(t *testing.T) {
	p := &pool{}
	in := &instance{inflight: 0, gone: true}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "twice") {
			t.Errorf("recover() = %v, want a panic about releasing twice", r)
		}
	}()
	p.release(in)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after 10 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestInvoker_RoutesToEachFunctionsOwnInstances(t *testing.T) {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.RawQuery) })
	inv, st := newInvoker(t, Config{}, echo)
	files := []string{"api/hello.ts", "api/users/[id].js"}
	tab, err := routes.New(files)
	if err != nil {
		t.Fatal(err)
	}
	cfg := model.DefaultFunctionConfig()
	d := Deployment{ID: "d1", Project: "app", Routes: tab,
		Functions: []model.Function{{File: files[0], Config: cfg}, {File: files[1], Config: cfg}}}
	inv.Deploy(d)
	tests := []struct{ path, function, query string }{
		{"/api/hello", "api/hello.ts", ""},
		{"/api/hello.ts?a=1", "api/hello.ts", "a=1"},
		{"/api/users/42?x=y&id=client", "api/users/[id].js", "id=42&x=y"}, // the route's id wins
		{"/api/users/7", "api/users/[id].js", "id=7"},
	}
	instances := map[string]string{} // function -> instance
	for _, tt := range tests {
		req, _ := http.NewRequest("GET", "http://app"+tt.path, nil)
		resp, err := inv.Invoke("app", req)
		if err != nil {
			t.Fatalf("%s: %v", tt.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := resp.Header.Get("x-function"); got != tt.function {
			t.Errorf("%s served by %q, want %q", tt.path, got, tt.function)
		}
		if string(body) != tt.query {
			t.Errorf("%s: the function saw the query %q, want %q", tt.path, body, tt.query)
		}
		if in, ok := instances[tt.function]; ok && in != resp.Header.Get("x-instance") {
			t.Errorf("%s: instance %s, want the function's first, %s", tt.path, resp.Header.Get("x-instance"), in)
		}
		instances[tt.function] = resp.Header.Get("x-instance")
	}
	if instances[files[0]] == instances[files[1]] || st.count() != 2 {
		t.Errorf("two functions ran on %v (%d started), want one instance each", instances, st.count())
	}
	for _, path := range []string{"/", "/api/nope", "/api/users"} {
		if _, err := call(inv, path); !errors.Is(err, ErrNoRoute) {
			t.Errorf("%s: err = %v, want ErrNoRoute", path, err)
		}
	}
	var fns []string
	for _, s := range inv.Stats() {
		fns = append(fns, s.Function)
	}
	slices.Sort(fns)
	if !slices.Equal(fns, files) {
		t.Errorf("Stats functions = %q, want %q", fns, files)
	}
}

func TestPathCosts(t *testing.T) {
	ms := func(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }
	type step struct {
		path  string
		entry time.Duration
		// the lanes of /cpu and /io after the step
		cpu, io int
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"unknown_paths_are_light", []step{{"/other", ms(1), lightLane, lightLane}}},
		{"heavy_alone_stays_light", []step{
			{"/cpu", ms(50), lightLane, lightLane}, // no light path: one lane does
			{"/cpu", ms(50), lightLane, lightLane},
		}},
		{"heavy_beside_light_splits", []step{
			{"/io", ms(0.5), lightLane, lightLane},
			{"/cpu", ms(50), heavyLane, lightLane},
			{"/io", ms(1), heavyLane, lightLane},
		}},
		{"turns_light_again_slowly", []step{
			{"/io", ms(0.5), lightLane, lightLane},
			{"/cpu", ms(20), heavyLane, lightLane}, // avg 20
			{"/cpu", ms(0), heavyLane, lightLane},  // 14
			{"/cpu", ms(0), heavyLane, lightLane},  // 9.8: under heavyEntry, over lightEntry
			{"/cpu", ms(0), heavyLane, lightLane},  // 6.9
			{"/cpu", ms(0), lightLane, lightLane},  // 4.8
		}},
		{"light_turns_heavy_on_average", []step{
			{"/io", ms(1), lightLane, lightLane},
			{"/cpu", ms(1), lightLane, lightLane},
			{"/cpu", ms(30), lightLane, lightLane}, // 9.7
			{"/cpu", ms(30), heavyLane, lightLane}, // 15.8
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newPathCosts()
			for i, st := range tt.steps {
				c.observe(st.path, st.entry)
				if cpu, io := c.lane("/cpu"), c.lane("/io"); cpu != st.cpu || io != st.io {
					t.Fatalf("after step %d (%s %v): lanes /cpu %d, /io %d; want %d, %d", i, st.path, st.entry, cpu, io, st.cpu, st.io)
				}
			}
		})
	}
}

func TestPathKey(t *testing.T) {
	for path, want := range map[string]string{
		"/":                  "/",
		"/api/users":         "/api/users",
		"/api/users/42":      "/api/users/#",
		"/v2/items/a1b/edit": "/#/items/#/edit",
	} {
		if got := pathKey(path); got != want {
			t.Errorf("pathKey(%q) = %q, want %q", path, got, want)
		}
	}
}

// entryByPath answers as an instance does whose /cpu handler computes for
// 50 ms before its first await, and whose other handlers wait at once.
var entryByPath = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	entry := "0.4"
	if r.URL.Path == "/cpu" {
		entry = "50.0"
	}
	w.Header().Set(EntryHeader, entry)
})

// A function whose paths differ runs the path that holds the event loop on
// instances of its own, once the instances have said so.
func TestInvoker_HeavyPathsGetALaneOfTheirOwn(t *testing.T) {
	inv, _ := newInvoker(t, Config{}, entryByPath)
	inv.Deploy(deployment("d1", 10))
	served := func(path string) string {
		t.Helper()
		in, err := call(inv, path)
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	first := served("/io")
	if got := served("/cpu"); got != first {
		t.Errorf("/cpu before its first report ran on %s, want the one instance %s", got, first)
	}
	heavy := served("/cpu")
	if heavy == first {
		t.Fatalf("/cpu, known heavy, ran on the light lane's instance %s", first)
	}
	if got := served("/io"); got != first {
		t.Errorf("/io ran on %s, want the light lane's %s", got, first)
	}
	if got := served("/cpu"); got != heavy {
		t.Errorf("/cpu ran on %s, want the heavy lane's %s", got, heavy)
	}
	st := inv.Stats()
	if len(st) != 2 || st[0].Heavy || !st[1].Heavy || st[0].Ready != 1 || st[1].Ready != 1 {
		t.Errorf("Stats = %+v, want the light lane then the heavy one, an instance each", st)
	}
}

// With one invocation per instance there is nothing to keep apart: every
// path runs on the light lane.
func TestInvoker_NoLanesWithoutConcurrency(t *testing.T) {
	inv, _ := newInvoker(t, Config{}, entryByPath)
	inv.Deploy(deployment("d1", 1))
	for _, path := range []string{"/io", "/cpu", "/io", "/cpu", "/cpu"} {
		if _, err := call(inv, path); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range inv.Stats() {
		if st.Heavy {
			t.Errorf("Stats has a heavy lane in use: %+v", st)
		}
	}
}

func TestInvoker_LoopsForWhatHoldsTheLoop(t *testing.T) {
	hold := make(chan struct{})
	entered := make(chan string, 100)
	inv, st := newInvoker(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- r.URL.Path
		select {
		case <-hold:
		case <-r.Context().Done():
		}
	}))
	d := deployment("d1", 10) // 1024 MB: up to 4 loops
	inv.Deploy(d)
	errCh := make(chan error, 8)
	for i := range 4 {
		go func() { _, err := call(inv, fmt.Sprint("/", i)); errCh <- err }()
	}
	for range 4 {
		<-entered
	}
	// The four wait for each other on the loop: the limit per loop drops
	// to 2. The next invocations fill what the instances have, while what
	// holds the loop stays: more loops take them, not more on a loop.
	st.blocked.Store(true)
	waitFor(t, "limit cut to 2", func() bool { s := inv.Stats(); return len(s) == 1 && s[0].Learned == 2 })
	st.held.Store(true)
	st.blocked.Store(false)
	for i := range 4 {
		go func() { _, err := call(inv, fmt.Sprint("/more", i)); errCh <- err }()
	}
	waitFor(t, "an instance on 2 loops, 2 invocations on each", func() bool {
		for _, s := range inv.Stats() {
			for i, n := range s.Loops {
				if n >= 2 && s.Limits[i] == 2*n {
					return true
				}
			}
		}
		return false
	})
	close(hold)
	for range 8 {
		if err := <-errCh; err != nil {
			t.Error(err)
		}
	}
	for len(entered) > 0 {
		if p := <-entered; p == "/" {
			t.Errorf("the handler served %q: a request for loops reached user code", p)
		}
	}
}
