package invoker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/limiter"
	"github.com/shoal-dev/shoal/internal/metering"
	"github.com/shoal-dev/shoal/internal/model"
	"github.com/shoal-dev/shoal/internal/nodelink"
	"github.com/shoal-dev/shoal/internal/scaler"
	"github.com/shoal-dev/shoal/internal/tunnel"
)

// pool is one deployment's instances and the invocations waiting for them.
type pool struct {
	// immutable
	inv *Invoker
	dep Deployment
	fn  model.Function // the function of dep whose instances these are
	key poolKey        // in Invoker.pools

	mu        sync.Mutex
	current   bool        // guarded by mu
	instances []*instance // guarded by mu; ready and serving
	starting  int         // guarded by mu
	waiters   []*waiter   // guarded by mu; FIFO
	lastErr   error       // guarded by mu; the last start failure
	learned   int         // guarded by mu; the limit per loop a new instance starts at
}

// instance is one started instance of the deployment.
type instance struct {
	// immutable
	id          string
	conn        *tunnel.Conn     // reports and loops
	node        *nodelink.Client // invocations
	drained     chan struct{}    // closed once gone with nothing in flight
	proc        Process
	reports     context.Context    // the report stream's; done when the instance stops
	stopReports context.CancelFunc // ends the report stream

	// guarded by pool.mu
	inflight  int
	limit     int              // the limiter's, applied
	limiter   *limiter.Limiter // learns limit from the instance's reports
	loops     int              // event loops asked of the instance
	serving   int              // event loops serving, as it last reported
	peak      int              // the most in flight since the last report
	full      bool             // an invocation took the last slot since the last report
	lastTS    int64            // the last report's time, unix ms
	lastCPU   int64            // and node's CPU time then, ms
	idleSince time.Time
	gone      bool // removed from the pool; takes no new invocations
}

// took counts one more invocation on in.
func (in *instance) took() {
	in.inflight++
	in.peak = max(in.peak, in.inflight)
	if in.inflight >= in.limit {
		in.full = true
	}
}

// waiter is an invocation waiting for a slot.
type waiter struct {
	ch chan waitResult // pool -> acquire; buffered 1
}

type waitResult struct {
	in  *instance
	err error
}

// acquire returns an instance with a slot taken for the caller, waiting in
// the queue while capacity starts.
func (p *pool) acquire(ctx context.Context) (*instance, error) {
	p.mu.Lock()
	if in := p.pickLocked(); in != nil {
		in.took()
		p.mu.Unlock()
		return in, nil
	}
	if len(p.waiters) >= p.inv.cfg.QueueSize {
		p.mu.Unlock()
		return nil, fmt.Errorf("%w: queue of %d full", ErrThrottled, p.inv.cfg.QueueSize)
	}
	w := &waiter{ch: make(chan waitResult, 1)}
	p.waiters = append(p.waiters, w)
	p.scaleLocked()
	p.mu.Unlock()

	timer := time.NewTimer(p.inv.cfg.QueueTimeout)
	defer timer.Stop()
	var err error
	select {
	case r := <-w.ch:
		return r.in, r.err
	case <-timer.C:
		err = fmt.Errorf("%w: no slot within %s", ErrThrottled, p.inv.cfg.QueueTimeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	p.mu.Lock()
	i := slices.Index(p.waiters, w)
	if i >= 0 {
		p.waiters = slices.Delete(p.waiters, i, i+1)
	}
	p.mu.Unlock()
	if i < 0 {
		// Served or failed just as we gave up.
		if r := <-w.ch; r.in != nil {
			p.release(r.in)
		}
	}
	return nil, err
}

// pickLocked returns the busiest instance that still has a free slot.
func (p *pool) pickLocked() *instance {
	var best *instance
	for _, in := range p.instances {
		if in.inflight < in.limit && (best == nil || in.inflight > best.inflight) {
			best = in
		}
	}
	return best
}

// minInstances is how many instances the pool keeps started while it is
// current: the function's minInstances on its light lane, none on the heavy
// one.
func (p *pool) minInstances() int {
	if p.key.lane == heavyLane {
		return 0
	}
	return p.fn.Config.MinInstances
}

// scaleLocked starts the instances the scaler asks for.
func (p *pool) scaleLocked() {
	if p.inv.ctx.Err() != nil {
		return
	}
	minInstances := 0
	if p.current {
		minInstances = p.minInstances()
	}
	n := scaler.ToStart(scaler.Pool{
		Waiting:          len(p.waiters),
		Starting:         p.starting,
		Ready:            len(p.instances),
		SlotsPerInstance: p.learned,
		MaxInstances:     p.inv.cfg.MaxInstances,
		MaxStarting:      p.inv.cfg.MaxStarting,
		MinInstances:     minInstances,
	})
	for range n {
		p.starting++
		p.inv.wg.Add(1)
		go func() {
			defer p.inv.wg.Done()
			p.start()
		}()
	}
}

// start starts one instance and adds it to the pool.
func (p *pool) start() {
	id := newID("i-")
	began := time.Now()
	in, err := p.launch(id)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.starting--
	if err != nil {
		p.lastErr = err
		p.inv.log.Warn("instance start failed", "deployment", p.dep.ID, "function", p.fn.File, "instance", id, "err", err)
		if p.starting == 0 && len(p.instances) == 0 {
			for _, w := range p.waiters {
				w.ch <- waitResult{err: fmt.Errorf("%w: %v", ErrStartFailed, err)}
			}
			p.waiters = nil
		}
		return
	}
	in.limiter = limiter.New(p.fn.Config.MaxConcurrency, int64(p.fn.Config.MemoryMB)<<20, p.learned).
		WithLoops(p.fn.Config.MaxLoops(), 1)
	in.limit, in.loops, in.serving = in.limiter.Limit(), 1, 1
	in.idleSince = time.Now()
	p.inv.meter.InstanceStarted(metering.Instance{Project: p.dep.Project, Deployment: p.dep.ID, Instance: id, MemoryMB: p.fn.Config.MemoryMB, Start: began})
	p.instances = append(p.instances, in)
	p.dispatchLocked(in)
	if len(p.waiters) > 0 {
		p.scaleLocked() // starts held back by MaxStarting
	}
	p.inv.wg.Add(2)
	go func() {
		defer p.inv.wg.Done()
		p.watch(in)
	}()
	go func() {
		defer p.inv.wg.Done()
		p.readReports(in)
	}()
	if !p.current && in.inflight == 0 {
		p.stopLocked(in)
	}
}

// launch starts the process and waits for its tunnel.
func (p *pool) launch(id string) (*instance, error) {
	ctx, cancel := context.WithTimeout(p.inv.ctx, p.inv.cfg.StartTimeout)
	defer cancel()
	pend := p.inv.tunnel.Expect(id)
	defer pend.Cancel()
	proc, err := p.inv.starter.Start(ctx, Launch{
		Instance:   id,
		Deployment: p.dep,
		Function:   p.fn,
		TunnelAddr: p.inv.tunnel.Addr().String(),
		Token:      pend.Token(),
	})
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", id, err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go func() {
		select {
		case <-proc.Done():
			wcancel()
		case <-wctx.Done():
		}
	}()
	conn, err := pend.Wait(wctx)
	if err != nil {
		p.stopProcess(proc)
		select {
		case <-proc.Done():
			return nil, fmt.Errorf("instance %s exited while starting", id)
		default:
		}
		return nil, fmt.Errorf("instance %s tunnel: %w", id, err)
	}
	reports, stopReports := context.WithCancel(p.inv.ctx)
	return &instance{id: id, conn: conn, node: nodelink.NewLanes(proc.Socket()), drained: make(chan struct{}),
		proc: proc, reports: reports, stopReports: stopReports}, nil
}

// readReports hands the instance's reports to its limiter and the meter
// until it stops.
func (p *pool) readReports(in *instance) {
	m := p.inv.meter
	err := in.conn.Reports(in.reports, func(r tunnel.Report) {
		if r.Loops > 1 {
			in.node.SetLoops(r.Loops)
		}
		p.adapt(in, r)
		cpu, memory := time.Duration(r.CPUMs)*time.Millisecond, r.RSS
		if c, ok := in.proc.(Counted); ok {
			if ccpu, cmem, ok := c.Counted(); ok {
				cpu, memory = ccpu, cmem
			}
		}
		m.InstanceSampled(in.id, time.UnixMilli(r.TS), cpu, memory)
		for _, w := range r.Waited {
			m.Waited(metering.Invocation{Project: p.dep.Project, Deployment: p.dep.ID, Instance: in.id, ID: w.ID,
				Start: time.UnixMilli(w.From), End: time.UnixMilli(w.To)})
		}
	})
	if err != nil && in.reports.Err() == nil {
		p.inv.log.Debug("instance reports ended", "deployment", p.dep.ID, "instance", in.id, "err", err)
	}
}

// adapt applies what the instance's report says to its limit; when the
// limit moves, the pool's learned limit becomes the median of its
// instances'.
func (p *pool) adapt(in *instance, r tunnel.Report) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if in.gone {
		return
	}
	cpu := 0.0 // node's CPU utilisation since the last report
	first := in.lastTS == 0
	if !first && r.TS > in.lastTS {
		cpu = float64(r.NodeCPUMs-in.lastCPU) / float64(r.TS-in.lastTS)
	}
	in.lastTS, in.lastCPU = r.TS, r.NodeCPUMs
	if first || !r.LoopKnown {
		return // nothing to judge by yet
	}
	old, oldLoops, peak := in.limit, in.limiter.Loops(), max(in.peak, in.inflight)
	in.serving = max(r.Loops, 1)
	in.limit = in.limiter.Observe(limiter.Signal{
		At:           time.Now(),
		PeakInFlight: peak,
		Full:         in.full,
		CPU:          cpu,
		Loops:        in.serving,
		HostIdle:     r.HostIdleCPUs,
		Utilization:  r.ELU,
		DelayMean:    time.Duration(r.DelayMeanMs * float64(time.Millisecond)),
		RSS:          r.RSS,
	})
	// The next interval starts with what is in flight now; it is full
	// only if an invocation arrives to find no slot.
	in.peak, in.full = in.inflight, false
	if in.limit == old && in.limiter.Loops() == oldLoops {
		return
	}
	p.inv.log.Debug("concurrency limit", "deployment", p.dep.ID, "instance", in.id, "from", old, "to", in.limit,
		"loops", in.limiter.Loops(), "serving", in.serving, "peak", peak, "cpu", cpu, "elu", r.ELU,
		"delay_max_ms", r.DelayMaxMs, "delay_mean_ms", r.DelayMeanMs, "rss", r.RSS)
	limits := make([]int, len(p.instances))
	for i, sib := range p.instances {
		limits[i] = sib.limiter.PerLoop()
	}
	slices.Sort(limits)
	p.learned = limits[len(limits)/2]
	p.askLoopsLocked(in)
	if in.limit > old {
		p.dispatchLocked(in)
	}
}

// askLoopsLocked asks in for the event loops its limiter wants, in the
// background; its reports say when they serve.
func (p *pool) askLoopsLocked(in *instance) {
	n := in.limiter.Loops()
	if n <= in.loops || in.gone {
		return
	}
	in.loops = n
	p.inv.wg.Add(1)
	go func() {
		defer p.inv.wg.Done()
		if err := in.conn.SetLoops(in.reports, n); err != nil && in.reports.Err() == nil {
			p.inv.log.Warn("event loops", "deployment", p.dep.ID, "instance", in.id, "loops", n, "err", err)
		}
	}()
}

// dispatchLocked hands in's free slots to waiting invocations in order.
func (p *pool) dispatchLocked(in *instance) {
	for len(p.waiters) > 0 && !in.gone && in.inflight < in.limit {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		in.took()
		w.ch <- waitResult{in: in}
	}
}

// release frees one slot of in.
func (p *pool) release(in *instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	in.inflight--
	if in.inflight < 0 {
		panic("invoker: slot released twice")
	}
	if in.inflight == 0 {
		in.idleSince = time.Now()
	}
	if in.gone {
		if in.inflight == 0 {
			close(in.drained)
		}
		return
	}
	p.dispatchLocked(in)
	if !p.current && in.inflight == 0 {
		p.stopLocked(in)
	}
}

// watch removes in from the pool once its process or tunnel is gone.
func (p *pool) watch(in *instance) {
	select {
	case <-in.conn.Done():
	case <-in.proc.Done():
	case <-p.inv.ctx.Done():
	}
	p.lost(in)
}

// lost takes in out of the pool and makes sure it is stopped.
func (p *pool) lost(in *instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !in.gone {
		p.stopLocked(in)
	}
	// Waiters that counted on this instance need another.
	if len(p.waiters) > 0 {
		p.scaleLocked()
	}
}

// stopLocked removes in from the pool and stops it in the background.
func (p *pool) stopLocked(in *instance) {
	if in.gone {
		return
	}
	in.gone = true
	if in.inflight == 0 {
		close(in.drained)
	}
	p.inv.meter.InstanceStopped(in.id, time.Now())
	if i := slices.Index(p.instances, in); i >= 0 {
		p.instances = slices.Delete(p.instances, i, i+1)
	}
	p.inv.wg.Add(1)
	go func() {
		defer p.inv.wg.Done()
		// The invocations in flight finish first, for a while: a live
		// instance serves them, a dead one fails them.
		in.stopReports()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(p.inv.ctx), p.inv.cfg.StopTimeout)
		select {
		case <-in.drained:
		case <-in.proc.Done():
		case <-ctx.Done():
		}
		in.node.Close()
		in.conn.Shutdown(ctx)
		cancel()
		p.stopProcess(in.proc)
	}()
}

func (p *pool) stopProcess(proc Process) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.inv.ctx), p.inv.cfg.StopTimeout)
	defer cancel()
	if err := proc.Stop(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		p.inv.log.Debug("instance stop", "deployment", p.dep.ID, "err", err)
	}
}

func (p *pool) setCurrent(current bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.current = current
	if current {
		p.scaleLocked()
		return
	}
	for _, in := range slices.Clone(p.instances) {
		if in.inflight == 0 {
			p.stopLocked(in)
		}
	}
	for _, w := range p.waiters {
		w.ch <- waitResult{err: ErrNotFound}
	}
	p.waiters = nil
}

// reap stops idle instances past their keep-alive and starts missing
// minInstances. It reports whether the pool may be empty and retired.
func (p *pool) reap(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	snap := make([]scaler.Instance, len(p.instances))
	for i, in := range p.instances {
		snap[i] = scaler.Instance{InFlight: in.inflight, IdleSince: in.idleSince}
	}
	minInstances, keepAlive := 0, time.Duration(0)
	if p.current {
		minInstances, keepAlive = p.minInstances(), p.inv.cfg.KeepAlive
	}
	stop := scaler.ToStop(snap, minInstances, keepAlive, now)
	victims := make([]*instance, len(stop))
	for i, idx := range stop {
		victims[i] = p.instances[idx]
	}
	for _, in := range victims {
		p.stopLocked(in)
	}
	if p.current {
		p.scaleLocked()
	}
	return !p.current && len(p.instances) == 0 && p.starting == 0 && len(p.waiters) == 0
}

// emptyAndRetired reports whether the pool can be forgotten.
func (p *pool) emptyAndRetired() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.current && len(p.instances) == 0 && p.starting == 0 && len(p.waiters) == 0
}

// closeAll fails the waiters and stops every instance.
func (p *pool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.current = false
	for _, w := range p.waiters {
		w.ch <- waitResult{err: ErrNotFound}
	}
	p.waiters = nil
	for _, in := range slices.Clone(p.instances) {
		p.stopLocked(in)
	}
}

func (p *pool) stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Stats{Deployment: p.dep.ID, Project: p.dep.Project, Function: p.fn.File, Heavy: p.key.lane == heavyLane, Current: p.current, Ready: len(p.instances), Starting: p.starting,
		Waiting: len(p.waiters), Learned: p.learned}
	for _, in := range p.instances {
		s.InFlight += in.inflight
		s.Limits = append(s.Limits, in.limit)
		s.Loops = append(s.Loops, in.serving)
	}
	return s
}
