package metering

import (
	"slices"
	"sort"
	"sync"
	"time"
)

// Invocation is one finished invocation.
type Invocation struct {
	Project, Deployment, Instance string
	// Start is when the invoker sent it; FirstByte when the response
	// headers came back (zero if none did); End when the response was done,
	// including work the function kept doing after it (waitUntil).
	Start, FirstByte, End time.Time
	Status                int
}

// Instance is one instance's life.
type Instance struct {
	Project, Deployment, Instance string
	MemoryMB                      int
	// Start is when it was started; End when it stopped, zero while it runs.
	Start, End time.Time
}

// Usage is what one deployment (or a set of them) cost over a window.
type Usage struct {
	Since, Until           time.Time
	Invocations            int
	Errors                 int // status 5xx
	InstanceGBSeconds      float64
	ProvisionedGBSeconds   float64
	ClassicGBSeconds       float64
	PeakInstances          int
	LatencyP50, LatencyP99 time.Duration
	TTFBP50, TTFBP99       time.Duration
}

// Savings is 1 − instance/classic GB-s: the share of classic's cost that
// in-function concurrency saved; 0 with no invocations.
func (u Usage) Savings() float64 {
	if u.ClassicGBSeconds == 0 {
		return 0
	}
	return 1 - u.InstanceGBSeconds/u.ClassicGBSeconds
}

type interval struct{ start, end time.Time }

// clip returns the part of [start, end) inside [since, until), and whether
// there is one.
func clip(start, end, since, until time.Time) (interval, bool) {
	if start.Before(since) {
		start = since
	}
	if end.After(until) {
		end = until
	}
	return interval{start, end}, end.After(start)
}

// union is the total length of the union of intervals.
func union(ivs []interval) time.Duration {
	sort.Slice(ivs, func(i, j int) bool { return ivs[i].start.Before(ivs[j].start) })
	var total time.Duration
	var cur interval
	for i, iv := range ivs {
		switch {
		case i == 0:
			cur = iv
		case !iv.start.After(cur.end):
			if iv.end.After(cur.end) {
				cur.end = iv.end
			}
		default:
			total += cur.end.Sub(cur.start)
			cur = iv
		}
	}
	if len(ivs) > 0 {
		total += cur.end.Sub(cur.start)
	}
	return total
}

func gbSeconds(d time.Duration, memoryMB int) float64 {
	return d.Seconds() * float64(memoryMB) / 1024
}

// Compute returns the usage over [since, until) of the given records: an
// invocation counts if it ended in the window, and every duration is
// clipped to it. Instances still running at until count up to until.
func Compute(invs []Invocation, insts []Instance, since, until time.Time) Usage {
	u := Usage{Since: since, Until: until}
	mem := make(map[string]int, len(insts))
	var events []struct {
		at    time.Time
		delta int
	}
	for _, in := range insts {
		mem[in.Instance] = in.MemoryMB
		end := in.End
		if end.IsZero() || end.After(until) {
			end = until
		}
		iv, ok := clip(in.Start, end, since, until)
		if !ok {
			continue
		}
		u.ProvisionedGBSeconds += gbSeconds(iv.end.Sub(iv.start), in.MemoryMB)
		events = append(events, struct {
			at    time.Time
			delta int
		}{iv.start, 1}, struct {
			at    time.Time
			delta int
		}{iv.end, -1})
	}
	// Peak instances alive at once; a stop and a start at the same time
	// do not overlap.
	sort.Slice(events, func(i, j int) bool {
		if events[i].at.Equal(events[j].at) {
			return events[i].delta < events[j].delta
		}
		return events[i].at.Before(events[j].at)
	})
	for n, i := 0, 0; i < len(events); i++ {
		n += events[i].delta
		u.PeakInstances = max(u.PeakInstances, n)
	}

	busy := map[string][]interval{}
	var latencies, ttfbs []time.Duration
	for _, inv := range invs {
		m := mem[inv.Instance]
		iv, ok := clip(inv.Start, inv.End, since, until)
		if !ok {
			continue
		}
		u.ClassicGBSeconds += gbSeconds(iv.end.Sub(iv.start), m)
		busy[inv.Instance] = append(busy[inv.Instance], iv)
		if inv.End.Before(since) || !inv.End.Before(until) {
			continue // overlaps the window but ended outside it
		}
		u.Invocations++
		if inv.Status >= 500 {
			u.Errors++
		}
		latencies = append(latencies, inv.End.Sub(inv.Start))
		if !inv.FirstByte.IsZero() {
			ttfbs = append(ttfbs, inv.FirstByte.Sub(inv.Start))
		}
	}
	for id, ivs := range busy {
		u.InstanceGBSeconds += gbSeconds(union(ivs), mem[id])
	}
	u.LatencyP50, u.LatencyP99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
	u.TTFBP50, u.TTFBP99 = percentile(ttfbs, 0.50), percentile(ttfbs, 0.99)
	return u
}

// percentile is the nearest-rank percentile p of ds; 0 if empty.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(float64(len(ds))*p+0.999999) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// MaxInvocations is about how many invocation records are kept per
// deployment (up to a tenth more); the oldest go first, so a window
// reaching further back is undercounted.
const MaxInvocations = 200_000

// Recorder keeps the records of every deployment. It is safe for
// concurrent use.
type Recorder struct {
	mu          sync.Mutex
	invocations map[string][]Invocation // guarded by mu; deployment -> records, oldest first
	instances   map[string]*Instance    // guarded by mu; instance id -> life
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	return &Recorder{invocations: map[string][]Invocation{}, instances: map[string]*Instance{}}
}

// InstanceStarted records an instance's start; in.End is ignored.
func (r *Recorder) InstanceStarted(in Instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	in.End = time.Time{}
	r.instances[in.Instance] = &in
}

// InstanceStopped records an instance's stop.
func (r *Recorder) InstanceStopped(instance string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if in := r.instances[instance]; in != nil && in.End.IsZero() {
		in.End = now
	}
}

// Invoked records a finished invocation.
func (r *Recorder) Invoked(inv Invocation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	recs := append(r.invocations[inv.Deployment], inv)
	// Drop the oldest in chunks of a tenth, so appending stays O(1)
	// amortized.
	if len(recs) > MaxInvocations+MaxInvocations/10 {
		recs = slices.Delete(recs, 0, len(recs)-MaxInvocations)
	}
	r.invocations[inv.Deployment] = recs
}

// Usage computes the usage of the given deployments over [since, until).
func (r *Recorder) Usage(deployments []string, since, until time.Time) Usage {
	r.mu.Lock()
	var invs []Invocation
	var insts []Instance
	for _, d := range deployments {
		invs = append(invs, r.invocations[d]...)
	}
	for _, in := range r.instances {
		if slices.Contains(deployments, in.Deployment) {
			insts = append(insts, *in)
		}
	}
	r.mu.Unlock()
	return Compute(invs, insts, since, until)
}
