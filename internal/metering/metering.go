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
	ID                            string // the invocation id (x-shoal-id)
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
	// CPU are samples of the CPU time its processes used since Start,
	// oldest first; PeakRSS the largest resident memory seen, in bytes.
	CPU     []CPUSample
	PeakRSS int64
}

// CPUSample is an instance's CPU time used from its start until At.
type CPUSample struct {
	At  time.Time
	CPU time.Duration
}

// cpuAt is the instance's CPU time used by t, interpolated between samples;
// it is 0 at Start and stays at the last sample after it.
func (in *Instance) cpuAt(t time.Time) time.Duration {
	prev := CPUSample{At: in.Start}
	for _, s := range in.CPU {
		if !t.After(s.At) {
			if span := s.At.Sub(prev.At); span > 0 && t.After(prev.At) {
				return prev.CPU + time.Duration(float64(s.CPU-prev.CPU)*float64(t.Sub(prev.At))/float64(span))
			}
			return prev.CPU
		}
		prev = s
	}
	return prev.CPU
}

// Usage is what one deployment (or a set of them) cost over a window.
type Usage struct {
	Since, Until           time.Time
	Invocations            int
	Errors                 int // status 5xx
	InstanceGBSeconds      float64
	ProvisionedGBSeconds   float64
	ClassicGBSeconds       float64
	ActiveCPU              time.Duration // CPU time the instances used
	PeakInstances          int
	PeakRSS                int64 // bytes, the most one instance held
	LatencyP50, LatencyP99 time.Duration
	TTFBP50, TTFBP99       time.Duration
	// Instances are the instances alive in the window, oldest first.
	Instances []InstanceUsage
}

// InstanceUsage is one instance's part of a Usage, within the window.
type InstanceUsage struct {
	Instance   string
	MemoryMB   int
	Start, End time.Time // End zero while it runs
	// Busy is the time it had at least one invocation in flight; CPU the
	// CPU time its processes used.
	Busy, CPU time.Duration
	PeakRSS   int64
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
		cpu := in.cpuAt(iv.end) - in.cpuAt(iv.start)
		u.ActiveCPU += cpu
		u.PeakRSS = max(u.PeakRSS, in.PeakRSS)
		u.Instances = append(u.Instances, InstanceUsage{Instance: in.Instance, MemoryMB: in.MemoryMB, Start: in.Start, End: in.End, CPU: cpu, PeakRSS: in.PeakRSS})
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
	for i := range u.Instances {
		in := &u.Instances[i]
		in.Busy = union(busy[in.Instance])
		u.InstanceGBSeconds += gbSeconds(in.Busy, in.MemoryMB)
	}
	slices.SortFunc(u.Instances, func(a, b InstanceUsage) int { return a.Start.Compare(b.Start) })
	u.LatencyP50, u.LatencyP99 = Percentile(latencies, 0.50), Percentile(latencies, 0.99)
	u.TTFBP50, u.TTFBP99 = Percentile(ttfbs, 0.50), Percentile(ttfbs, 0.99)
	return u
}

// Percentile is the nearest-rank percentile p of ds; 0 if empty. It sorts
// ds.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(float64(len(ds))*p+0.999999) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// MaxInvocations is about how many invocation records are kept per
// deployment (up to chunkLen more); the oldest go first, so a window
// reaching further back is undercounted.
const MaxInvocations = 200_000

// Recorder keeps the records of every deployment. It is safe for
// concurrent use.
type Recorder struct {
	mu          sync.Mutex
	invocations map[string]*records  // guarded by mu; deployment -> its invocations
	instances   map[string]*Instance // guarded by mu; instance id -> life
	early       map[string]time.Time // guarded by mu; invocation id -> end of work reported before the invocation
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	return &Recorder{invocations: map[string]*records{}, instances: map[string]*Instance{}, early: map[string]time.Time{}}
}

// Sample spacing and count kept per instance: enough for CPU over any
// window, at most a few tens of KB per instance.
const (
	sampleEvery = time.Second
	maxSamples  = 4096
)

// bendCPU is how far off the straight line between its neighbours a
// sample may lie and still be dropped: two ticks of the kernel's CPU time,
// whose figures move by one.
const bendCPU = 20 * time.Millisecond

// InstanceSampled records an instance's CPU time so far and resident
// memory.
func (r *Recorder) InstanceSampled(instance string, at time.Time, cpu time.Duration, rss int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	in := r.instances[instance]
	if in == nil {
		return
	}
	in.PeakRSS = max(in.PeakRSS, rss)
	n := len(in.CPU)
	// The newest moves on within sampleEvery, unless the instance's CPU
	// rate turned there (it began or stopped working): CPU between samples
	// counts as spent evenly, so a window that begins or ends at such a
	// turn would get a share of the work on the other side of it.
	if n >= 2 && at.Sub(in.CPU[n-2].At) < sampleEvery && onLine(in.CPU[n-2], in.CPU[n-1], CPUSample{At: at, CPU: cpu}) {
		in.CPU[n-1] = CPUSample{At: at, CPU: cpu}
		return
	}
	if n >= maxSamples {
		// Halve the resolution of the history.
		for i := range n / 2 {
			in.CPU[i] = in.CPU[2*i+1]
		}
		in.CPU = in.CPU[:n/2]
	}
	in.CPU = append(in.CPU, CPUSample{At: at, CPU: cpu})
}

// onLine reports whether b lies within bendCPU of the straight line from a
// to c, which are apart.
func onLine(a, b, c CPUSample) bool {
	span := c.At.Sub(a.At)
	if span <= 0 {
		return true
	}
	line := a.CPU + time.Duration(float64(c.CPU-a.CPU)*float64(b.At.Sub(a.At))/float64(span))
	return (b.CPU - line).Abs() <= bendCPU
}

// searchBack bounds how far back Waited looks for its invocation.
const searchBack = 10_000

// Waited extends a recorded invocation's end to w.End: its work went on
// past its response. w.ID and w.Deployment name it; if it is not recorded
// yet, the end is applied when it is.
func (r *Recorder) Waited(w Invocation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if recs := r.invocations[w.Deployment]; recs != nil {
		if rec := recs.findBack(w.ID, searchBack); rec != nil {
			rec.end = max(rec.end, nanos(w.End))
			return
		}
	}
	if len(r.early) >= searchBack {
		clear(r.early) // ids that never came; should not happen
	}
	r.early[w.ID] = w.End
}

// InstanceStarted records an instance's start; in.End is ignored.
func (r *Recorder) InstanceStarted(in Instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	in.End = time.Time{}
	r.instances[in.Instance] = &in
	if len(r.instances) > MaxInstances+MaxInstances/10 {
		r.forgetInstances()
	}
}

// MaxInstances is about how many instance records are kept (up to a tenth
// more); the ones that stopped longest ago go first, so a window reaching
// further back misses their provisioned time and CPU.
const MaxInstances = 10_000

// forgetInstances drops the records of the instances that stopped longest
// ago, down to MaxInstances; running ones stay.
func (r *Recorder) forgetInstances() {
	var stopped []*Instance
	for _, in := range r.instances {
		if !in.End.IsZero() {
			stopped = append(stopped, in)
		}
	}
	slices.SortFunc(stopped, func(a, b *Instance) int { return a.End.Compare(b.End) })
	for _, in := range stopped[:min(len(stopped), len(r.instances)-MaxInstances)] {
		delete(r.instances, in.Instance)
	}
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
	if end, ok := r.early[inv.ID]; ok && inv.ID != "" {
		delete(r.early, inv.ID)
		if end.After(inv.End) {
			inv.End = end
		}
	}
	recs := r.invocations[inv.Deployment]
	if recs == nil {
		recs = &records{}
		r.invocations[inv.Deployment] = recs
	}
	recs.add(inv)
}

// chunkLen is the length of one chunk of records: MaxInvocations is kept
// to within one chunk.
const chunkLen = 4096

// records are one deployment's invocations, oldest first, in chunks of
// chunkLen: adding one never copies the others, and the oldest go a whole
// chunk at a time.
type records struct {
	chunks [][]record
	n      int // records in all chunks
	// What the records share: the deployment's project, and the names of
	// the instances they ran on.
	project   string
	instances []string
	instance  map[string]uint32 // index in instances
}

// record is an Invocation as records keep it: with no pointer, so that the
// garbage collector has nothing to scan in them, and in 56 bytes, not 144.
// A deployment keeps up to MaxInvocations of them: 11 MB, not 29.
type record struct {
	start, firstByte, end int64 // Unix nanoseconds; 0 for a zero time
	id                    [idBytes]byte
	idLen                 uint8
	instance              uint32 // index in records.instances
	status                int32
}

// idBytes is how much of an invocation id a record keeps: the gateway's
// ids are 16 characters; a longer one is kept cut to them.
const idBytes = 16

func (rs *records) add(inv Invocation) {
	if rs.instance == nil {
		rs.project = inv.Project
		rs.instance = map[string]uint32{}
	}
	in, ok := rs.instance[inv.Instance]
	if !ok {
		in = uint32(len(rs.instances))
		rs.instances = append(rs.instances, inv.Instance)
		rs.instance[inv.Instance] = in
	}
	last := len(rs.chunks) - 1
	if last < 0 || len(rs.chunks[last]) == chunkLen {
		rs.chunks = append(rs.chunks, make([]record, 0, chunkLen))
		last++
	}
	rec := record{start: nanos(inv.Start), firstByte: nanos(inv.FirstByte), end: nanos(inv.End),
		instance: in, status: int32(inv.Status)}
	rec.idLen = uint8(copy(rec.id[:], inv.ID))
	rs.chunks[last] = append(rs.chunks[last], rec)
	rs.n++
	if rs.n-len(rs.chunks[0]) >= MaxInvocations {
		rs.n -= len(rs.chunks[0])
		rs.chunks[0] = nil
		rs.chunks = rs.chunks[1:]
	}
}

// findBack returns the record with id among the newest limit records, or
// nil.
func (rs *records) findBack(id string, limit int) *record {
	id = id[:min(len(id), idBytes)]
	for c := len(rs.chunks) - 1; c >= 0 && limit > 0; c-- {
		chunk := rs.chunks[c]
		for i := len(chunk) - 1; i >= 0 && limit > 0; i-- {
			if rec := &chunk[i]; string(rec.id[:rec.idLen]) == id {
				return rec
			}
			limit--
		}
	}
	return nil
}

// appendTo appends the records of deployment to invs, oldest first.
func (rs *records) appendTo(invs []Invocation, deployment string) []Invocation {
	for _, chunk := range rs.chunks {
		for i := range chunk {
			rec := &chunk[i]
			invs = append(invs, Invocation{Project: rs.project, Deployment: deployment,
				Instance: rs.instances[rec.instance], ID: string(rec.id[:rec.idLen]),
				Start: timeOf(rec.start), FirstByte: timeOf(rec.firstByte), End: timeOf(rec.end),
				Status: int(rec.status)})
		}
	}
	return invs
}

// nanos is t in Unix nanoseconds, 0 for the zero time.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// timeOf is the time of Unix nanoseconds ns, the zero time for 0.
func timeOf(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// Usage computes the usage of the given deployments over [since, until).
func (r *Recorder) Usage(deployments []string, since, until time.Time) Usage {
	r.mu.Lock()
	var invs []Invocation
	var insts []Instance
	for _, d := range deployments {
		if recs := r.invocations[d]; recs != nil {
			invs = recs.appendTo(invs, d)
		}
	}
	for _, in := range r.instances {
		if slices.Contains(deployments, in.Deployment) {
			c := *in
			c.CPU = slices.Clone(in.CPU)
			insts = append(insts, c)
		}
	}
	r.mu.Unlock()
	return Compute(invs, insts, since, until)
}

// Busy adds up one instance's busy time as invocations are reported, each
// as it ends, in any order: the length of the union of their intervals. It
// remembers the recent busy stretches (at least maxStretches, at most
// twice that), so an interval reaching further back than them may be
// counted again in part.
type Busy struct {
	stretches []interval // disjoint, sorted by start
}

const maxStretches = 256

// Add adds [start, end) and returns how much of it was not busy yet.
func (b *Busy) Add(start, end time.Time) time.Duration {
	if !end.After(start) {
		return 0
	}
	added := end.Sub(start)
	if n := len(b.stretches); n == 0 || b.stretches[n-1].end.Before(start) {
		// After every stretch, as most are: a stretch of its own.
		b.stretches = append(b.stretches, interval{start, end})
		b.forget()
		return added
	}
	merged := interval{start, end}
	// Stretches before and after the new one stay; those touching it merge.
	i := sort.Search(len(b.stretches), func(i int) bool { return !b.stretches[i].end.Before(start) })
	j := i
	for ; j < len(b.stretches) && !b.stretches[j].start.After(end); j++ {
		s := b.stretches[j]
		lo, hi := s.start, s.end
		if lo.Before(start) {
			lo = start
		}
		if hi.After(end) {
			hi = end
		}
		if hi.After(lo) {
			added -= hi.Sub(lo)
		}
		if s.start.Before(merged.start) {
			merged.start = s.start
		}
		if s.end.After(merged.end) {
			merged.end = s.end
		}
	}
	b.stretches = slices.Replace(b.stretches, i, j, merged)
	b.forget()
	return added
}

// forget drops the oldest stretches past maxStretches, once there are
// twice as many: the rest move once per maxStretches stretches added, not
// once per stretch.
func (b *Busy) forget() {
	if len(b.stretches) > 2*maxStretches {
		b.stretches = slices.Delete(b.stretches, 0, len(b.stretches)-maxStretches)
	}
}
