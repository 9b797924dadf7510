package bench

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/apiclient"
	"github.com/shoal-dev/shoal/internal/archive"
	"github.com/shoal-dev/shoal/internal/network"
	"github.com/shoal-dev/shoal/internal/sandbox"
)

//go:embed workloads
var workloadFiles embed.FS

// Workload is one of the projects the benchmark ships.
type Workload struct {
	Name  string
	About string
	// Routes are the paths requests go to, each with its share of them;
	// nil means every request goes to the project's root.
	Routes []Route
}

// Route is one path of a workload and the share of requests it gets.
type Route struct {
	Path  string
	Share float64
}

// sharedFile is the module under bench/workloads that deploy copies into
// every workload's project: what the workloads have in common.
const sharedFile = "work.mjs"

// Workloads returns the workloads the benchmark ships, each a project
// folder under bench/workloads embedded in the binary.
func Workloads() []Workload {
	return []Workload{
		{Name: "io", About: "one 100 ms backend call, ~1 ms CPU"},
		{Name: "seed", About: "50 ms CPU, then one 50 ms backend call"},
		{Name: "ai", About: "a 2 s response streamed from the backend, relayed chunk by chunk"},
		{Name: "cpu", About: "50 ms CPU, no I/O"},
		{Name: "hello", About: "no work"},
		{Name: "mixed", About: "one function, two routes: /io (4 requests in 5) as io, /cpu as cpu",
			Routes: []Route{{"/io", 0.8}, {"/cpu", 0.2}}},
	}
}

// workload returns the workload named name; Validate checked it exists.
func workload(name string) Workload {
	for _, w := range Workloads() {
		if w.Name == name {
			return w
		}
	}
	panic("bench: no workload " + name)
}

// Config is what to measure and against which serve.
type Config struct {
	// Binary is the shoal binary the benchmark starts as `shoal serve` on a
	// loopback port with a data folder of its own; unused when Client is
	// set.
	Binary string
	// Client reaches an existing serve to measure instead; nil means start
	// one. That serve must run on this machine: the functions call the
	// benchmark's backend on 127.0.0.1 (at network.HostAddr from a network
	// namespace, so that serve must allow BackendPort). Its bench-*
	// projects are replaced.
	Client *apiclient.Client
	// BackendPort is the loopback port of the backend; 0 means any free
	// one.
	BackendPort int
	// Workloads names the workloads to run, in order; nil means io.
	Workloads []string
	// Rates are the mean arrival rates each workload runs at, in requests
	// per second; nil means 50.
	Rates []float64
	// Duration is how long each mode is measured per workload and rate,
	// split evenly over the rounds; 0 means 30 s.
	Duration time.Duration
	// Rounds is how many times the two modes take turns; 0 means 2.
	Rounds int
	// Arrivals is Poisson or Constant; "" means Poisson.
	Arrivals string
	// Seed seeds the Poisson arrivals: a run with the same seed sends the
	// same sequence, and both modes get the same one in each round.
	Seed uint64
	// Warmup is how long each mode gets the load, unmeasured, before the
	// rounds of each workload and rate: the instances the load needs are
	// started, and concurrency limits learned, so the rounds measure the
	// steady state. 0 measures from cold, where classic mode's many cold
	// starts dominate its latency.
	Warmup time.Duration
}

// DefaultConfig returns the defaults of everything but Binary and Client.
func DefaultConfig() Config {
	return Config{
		Workloads: []string{"io"},
		Rates:     []float64{50},
		Duration:  30 * time.Second,
		Rounds:    2,
		Arrivals:  Poisson,
		Seed:      1,
		Warmup:    5 * time.Second,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Workloads == nil {
		c.Workloads = d.Workloads
	}
	if c.Rates == nil {
		c.Rates = d.Rates
	}
	if c.Duration == 0 {
		c.Duration = d.Duration
	}
	if c.Rounds == 0 {
		c.Rounds = d.Rounds
	}
	if c.Arrivals == "" {
		c.Arrivals = d.Arrivals
	}
	return c
}

const (
	// minSlice is the shortest slice worth measuring.
	minSlice = time.Second
	// maxRate bounds the rate: a slice's arrivals are drawn up front.
	maxRate = 100_000
)

// Validate reports the first setting out of bounds.
func (c Config) Validate() error {
	names := make([]string, 0, len(Workloads()))
	for _, w := range Workloads() {
		names = append(names, w.Name)
	}
	if len(c.Workloads) == 0 {
		return fmt.Errorf("no workload: want some of %s", strings.Join(names, ", "))
	}
	for i, w := range c.Workloads {
		if !slices.Contains(names, w) {
			return fmt.Errorf("unknown workload %q: want some of %s", w, strings.Join(names, ", "))
		}
		if slices.Contains(c.Workloads[:i], w) {
			return fmt.Errorf("workload %q named twice", w)
		}
	}
	if len(c.Rates) == 0 {
		return errors.New("no rate: want a mean rate in requests per second")
	}
	for _, r := range c.Rates {
		if !(r > 0) || r > maxRate {
			return fmt.Errorf("rate %g: want a mean rate above 0 and at most %d requests per second", r, maxRate)
		}
	}
	if c.BackendPort < 0 || c.BackendPort > 65535 {
		return fmt.Errorf("backend port %d: want 0 (any) to 65535", c.BackendPort)
	}
	switch {
	case c.Arrivals != Poisson && c.Arrivals != Constant:
		return fmt.Errorf("arrivals %q: want %s or %s", c.Arrivals, Poisson, Constant)
	case c.Rounds < 1:
		return fmt.Errorf("rounds %d: want at least 1", c.Rounds)
	case c.Duration/time.Duration(c.Rounds) < minSlice:
		return fmt.Errorf("duration %s over %d rounds: want at least %s per round", c.Duration, c.Rounds, minSlice)
	case c.Warmup < 0:
		return fmt.Errorf("warmup %s: want 0 or more", c.Warmup)
	case c.Client == nil && c.Binary == "":
		return errors.New("no shoal binary to start serve with, and no serve to target")
	}
	return nil
}

// windowGrace is how long after a slice's last response its metering
// window closes: the platform records an invocation's end just after the
// client has the response. The next slice starts after it.
const windowGrace = 250 * time.Millisecond

// Run deploys the workloads, measures each at each rate in both modes and
// returns the report. It writes a progress line to progress (nil means
// nowhere), rewritten with \r about once a second.
func Run(ctx context.Context, cfg Config, progress io.Writer) (Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	if progress == nil {
		progress = io.Discard
	}
	r := &runner{cfg: cfg, transport: newTransport(), progress: &progressLine{w: progress}}
	defer r.progress.end()

	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(cfg.BackendPort))
	if err != nil {
		return Report{}, fmt.Errorf("backend: %w", err)
	}
	backend := &http.Server{Handler: backendHandler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		backend.Serve(ln)
		close(served)
	}()
	defer func() {
		backend.Close()
		<-served
	}()
	backendPort := ln.Addr().(*net.TCPAddr).Port
	r.backendURL = "http://" + ln.Addr().String()

	r.client = cfg.Client
	if r.client == nil {
		r.progress.show("starting shoal serve")
		s, err := startServe(ctx, cfg.Binary, backendPort)
		if err != nil {
			return Report{}, err
		}
		defer func() {
			r.progress.end() // before a warning
			if !s.stop() {
				fmt.Fprintf(progress, "shoal serve did not stop within %s of SIGTERM; killed it\n", serveStopTimeout)
			}
		}()
		r.client = apiclient.New(s.url, s.token)
	}
	// Instances with a network namespace of their own reach the host's
	// loopback at one address, on the ports serve allows.
	iso, err := r.client.Isolation(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("isolation of the serve: %w", err)
	}
	for _, p := range iso.Pieces {
		if p.Name != sandbox.PieceNetwork || !p.On {
			continue
		}
		if cfg.Client != nil && cfg.BackendPort == 0 {
			return Report{}, errors.New("the serve's instances have a network namespace each: start it with --host-port N, and the benchmark with --backend-port N, so they reach its backend")
		}
		r.backendURL = "http://" + net.JoinHostPort(network.HostAddr.String(), strconv.Itoa(backendPort))
	}
	return r.run(ctx)
}

// runner runs one benchmark; everything in it is owned by Run's goroutine.
type runner struct {
	cfg        Config
	client     *apiclient.Client
	transport  *http.Transport // every request to the functions
	backendURL string
	progress   *progressLine
}

// project is one workload deployed in one mode.
type project struct {
	workload, mode, name, url string
}

func (r *runner) run(ctx context.Context) (Report, error) {
	defer r.transport.CloseIdleConnections() // before serve stops
	// per workload: concurrent, classic
	var projects [][2]project
	for _, w := range r.cfg.Workloads {
		var pair [2]project
		for i, mode := range []string{ModeConcurrent, ModeClassic} {
			p, err := r.deploy(ctx, w, mode)
			if err != nil {
				return Report{}, err
			}
			pair[i] = p
		}
		projects = append(projects, pair)
	}

	rep := Report{
		Arrivals:        r.cfg.Arrivals,
		Seed:            r.cfg.Seed,
		Rounds:          r.cfg.Rounds,
		DurationSeconds: r.cfg.Duration.Seconds(),
		CPUs:            runtime.NumCPU(),
	}
	start, cpuStart := time.Now(), cpuTime()
	for _, pair := range projects {
		for _, rate := range r.cfg.Rates {
			rows, err := r.measure(ctx, pair, rate)
			if err != nil {
				return Report{}, err
			}
			rep.Rows = append(rep.Rows, rows[:]...)
		}
	}
	wall := time.Since(start).Seconds()
	rep.WallSeconds = wall
	rep.LoadCPUSeconds = (cpuTime() - cpuStart).Seconds()
	rep.LoadCPUShare = rep.LoadCPUSeconds / (wall * float64(rep.CPUs))
	for _, row := range rep.Rows {
		rep.InstanceCPUShare += row.ActiveCPUSeconds / (wall * float64(rep.CPUs))
	}
	return rep, nil
}

// measure measures both modes of one workload at rate, taking turns: each
// mode runs Duration/Rounds per round, concurrent first in even rounds and
// classic first in odd ones (ABBA), so that drift on a noisy machine hits
// both alike. Both modes get the same arrivals in a round.
func (r *runner) measure(ctx context.Context, pair [2]project, rate float64) ([2]Row, error) {
	d := r.cfg.Duration / time.Duration(r.cfg.Rounds)
	if r.cfg.Warmup > 0 {
		for _, p := range pair {
			// A stream of arrivals no round uses.
			pacer := newPacer(r.cfg.Arrivals, rate, r.cfg.Warmup, r.cfg.Seed, math.MaxUint64)
			label := fmt.Sprintf("%s %s %g/s warm-up", p.workload, p.mode, rate)
			attack(ctx, r.transport, r.targets(p, math.MaxUint64), pacer, r.cfg.Warmup, func(elapsed time.Duration, sent, ok, failed int) {
				r.progress.show(fmt.Sprintf("%s  %.1fs/%.1fs  sent %d  ok %d  errors %d",
					label, elapsed.Seconds(), r.cfg.Warmup.Seconds(), sent, ok, failed))
			})
			if err := ctx.Err(); err != nil {
				return [2]Row{}, err
			}
		}
	}
	var sums [2]modeSum
	for round := range r.cfg.Rounds {
		order := []int{0, 1}
		if round%2 == 1 {
			order = []int{1, 0}
		}
		for _, i := range order {
			p := pair[i]
			pacer := newPacer(r.cfg.Arrivals, rate, d, r.cfg.Seed, uint64(round))
			label := fmt.Sprintf("%s %s %g/s round %d/%d", p.workload, p.mode, rate, round+1, r.cfg.Rounds)
			s := attack(ctx, r.transport, r.targets(p, uint64(round)), pacer, d, func(elapsed time.Duration, sent, ok, failed int) {
				r.progress.show(fmt.Sprintf("%s  %.1fs/%.1fs  sent %d  ok %d  errors %d",
					label, elapsed.Seconds(), d.Seconds(), sent, ok, failed))
			})
			if err := ctx.Err(); err != nil {
				return [2]Row{}, err
			}
			u, err := r.usage(ctx, p, s.start, s.end.Add(windowGrace))
			if err != nil {
				return [2]Row{}, err
			}
			sums[i].add(s, u)
		}
	}
	rows := [2]Row{sums[0].row(pair[0], rate, r.cfg.Duration), sums[1].row(pair[1], rate, r.cfg.Duration)}
	compare(&rows[0], rows[1])
	return rows, nil
}

// deploy deploys workload as its project in mode, with a shoal.json that
// sets the mode, and returns it.
func (r *runner) deploy(ctx context.Context, workload, mode string) (project, error) {
	p := project{workload: workload, mode: mode, name: "bench-" + workload}
	if mode == ModeClassic {
		p.name += "-classic"
	}
	r.progress.show("deploying " + p.name)
	dir, err := os.MkdirTemp("", "shoal-bench-"+p.name+"-")
	if err != nil {
		return p, err
	}
	defer os.RemoveAll(dir)
	src, err := fs.Sub(workloadFiles, "workloads/"+workload)
	if err != nil {
		return p, err
	}
	if err := os.CopyFS(dir, src); err != nil {
		return p, fmt.Errorf("write %s: %w", p.name, err)
	}
	shared, err := fs.ReadFile(workloadFiles, "workloads/"+sharedFile)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, sharedFile), shared, 0o644)
	}
	if err != nil {
		return p, fmt.Errorf("write %s: %w", p.name, err)
	}
	// Every request is answered before the client's requestTimeout.
	config := fmt.Sprintf(`{"concurrency": %t, "maxDuration": 30}`, mode == ModeConcurrent)
	if err := os.WriteFile(filepath.Join(dir, "shoal.json"), []byte(config), 0o644); err != nil {
		return p, err
	}
	var tgz bytes.Buffer
	if err := archive.Pack(dir, &tgz); err != nil {
		return p, err
	}
	d, err := r.client.Deploy(ctx, p.name, &tgz)
	if err != nil {
		return p, fmt.Errorf("deploy %s: %w", p.name, err)
	}
	p.url = d.URL
	return p, nil
}

// targets returns what each arrival of a round sends to p: a GET of one of
// the workload's routes, drawn by their shares from the seed and the
// round, so both modes get the same sequence of draws.
func (r *runner) targets(p project, round uint64) func() vegeta.Target {
	header := http.Header{backendHeader: {r.backendURL}}
	routes := workload(p.workload).Routes
	if len(routes) == 0 {
		t := vegeta.Target{Method: http.MethodGet, URL: p.url, Header: header}
		return func() vegeta.Target { return t }
	}
	rnd := rand.New(rand.NewPCG(r.cfg.Seed^0x5eed, round))
	var mu sync.Mutex // vegeta's workers call in parallel
	base := strings.TrimSuffix(p.url, "/")
	return func() vegeta.Target {
		mu.Lock()
		x := rnd.Float64()
		mu.Unlock()
		for _, rt := range routes[:len(routes)-1] {
			if x < rt.Share {
				return vegeta.Target{Method: http.MethodGet, URL: base + rt.Path, Header: header}
			}
			x -= rt.Share
		}
		return vegeta.Target{Method: http.MethodGet, URL: base + routes[len(routes)-1].Path, Header: header}
	}
}

// usage waits until until has passed and returns what p cost in [since, until).
func (r *runner) usage(ctx context.Context, p project, since, until time.Time) (api.Usage, error) {
	t := time.NewTimer(time.Until(until))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return api.Usage{}, ctx.Err()
	}
	u, err := r.client.Usage(ctx, p.name, since.UTC().Format(time.RFC3339Nano), until.UTC().Format(time.RFC3339Nano))
	if err != nil {
		return u, fmt.Errorf("usage of %s: %w", p.name, err)
	}
	return u, nil
}

// modeSum adds up one mode's slices.
type modeSum struct {
	sent, ok, failed int
	latencies, ttfbs []time.Duration
	routes           map[string][]time.Duration // latencies by URL
	usage            api.Usage                  // counts and GB-s summed; PeakInstances the max; limits the last
}

func (m *modeSum) add(s slice, u api.Usage) {
	m.sent += s.sent
	m.ok += s.ok
	m.failed += s.failed
	m.latencies = append(m.latencies, s.latencies...)
	m.ttfbs = append(m.ttfbs, s.ttfbs...)
	if m.routes == nil {
		m.routes = map[string][]time.Duration{}
	}
	for url, ls := range s.routes {
		m.routes[url] = append(m.routes[url], ls...)
	}
	m.usage.LearnedLimit, m.usage.LearnedLoops = u.LearnedLimit, u.LearnedLoops
	m.usage.Invocations += u.Invocations
	m.usage.InstanceGBSeconds += u.InstanceGBSeconds
	m.usage.ProvisionedGBSeconds += u.ProvisionedGBSeconds
	m.usage.ClassicGBSeconds += u.ClassicGBSeconds
	m.usage.ActiveCPUSeconds += u.ActiveCPUSeconds
	m.usage.PeakInstances = max(m.usage.PeakInstances, u.PeakInstances)
}

// row is the sum as the row of p at rate, sent for d in all.
func (m *modeSum) row(p project, rate float64, d time.Duration) Row {
	lat := percentiles(m.latencies, 0.50, 0.95, 0.99)
	ttfb := percentiles(m.ttfbs, 0.50, 0.95, 0.99)
	row := Row{
		Workload:             p.workload,
		Mode:                 p.mode,
		Rate:                 rate,
		Achieved:             float64(m.ok) / d.Seconds(),
		Sent:                 m.sent,
		Errors:               m.failed,
		Invocations:          m.usage.Invocations,
		LatencyP50Ms:         lat[0],
		LatencyP95Ms:         lat[1],
		LatencyP99Ms:         lat[2],
		TTFBP50Ms:            ttfb[0],
		TTFBP95Ms:            ttfb[1],
		TTFBP99Ms:            ttfb[2],
		PeakInstances:        m.usage.PeakInstances,
		InstanceGBSeconds:    m.usage.InstanceGBSeconds,
		ProvisionedGBSeconds: m.usage.ProvisionedGBSeconds,
		ClassicGBSeconds:     m.usage.ClassicGBSeconds,
		ActiveCPUSeconds:     m.usage.ActiveCPUSeconds,
		LearnedLimit:         m.usage.LearnedLimit,
		LearnedLoops:         m.usage.LearnedLoops,
	}
	base := strings.TrimSuffix(p.url, "/")
	for _, rt := range workload(p.workload).Routes {
		lat := percentiles(m.routes[base+rt.Path], 0.50, 0.95, 0.99)
		row.Routes = append(row.Routes, RouteRow{Path: rt.Path, Share: rt.Share, Count: len(m.routes[base+rt.Path]),
			LatencyP50Ms: lat[0], LatencyP95Ms: lat[1], LatencyP99Ms: lat[2]})
	}
	if row.ClassicGBSeconds > 0 {
		row.Savings = 1 - row.InstanceGBSeconds/row.ClassicGBSeconds
	}
	return row
}

// cpuTime is the user and system CPU this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
