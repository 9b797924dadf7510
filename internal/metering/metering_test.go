package metering

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"testing"
	"time"
)

var t0 = time.Unix(1_000_000, 0)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func inv(instance string, start, firstByte, end, status int) Invocation {
	return Invocation{Deployment: "d", Instance: instance, Start: at(start), FirstByte: at(firstByte), End: at(end), Status: status}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestCompute(t *testing.T) {
	one := []Instance{{Deployment: "d", Instance: "i1", MemoryMB: 1024, Start: at(0)}}
	var twenty []Invocation
	for i := range 20 {
		twenty = append(twenty, inv("i1", i, i+10, i+200, 200))
	}
	tests := []struct {
		name         string
		invs         []Invocation
		insts        []Instance
		since, until time.Time
		want         Usage
	}{
		{
			name: "twenty_overlapping_on_one_instance",
			invs: twenty, insts: one, since: at(0), until: at(1000),
			// classic: 20 × 0.2 s × 1 GB; busy: the union [0, 219 ms].
			want: Usage{Invocations: 20, ClassicGBSeconds: 4, InstanceGBSeconds: 0.219, ProvisionedGBSeconds: 1, PeakInstances: 1,
				LatencyP50: 200 * time.Millisecond, LatencyP99: 200 * time.Millisecond, TTFBP50: 10 * time.Millisecond, TTFBP99: 10 * time.Millisecond},
		},
		{
			name:  "partial_overlap_and_a_gap",
			invs:  []Invocation{inv("i1", 0, 1, 100, 200), inv("i1", 50, 51, 150, 200), inv("i1", 200, 201, 300, 500)},
			insts: one, since: at(0), until: at(1000),
			want: Usage{Invocations: 3, Errors: 1, ClassicGBSeconds: 0.3, InstanceGBSeconds: 0.25, ProvisionedGBSeconds: 1, PeakInstances: 1,
				LatencyP50: 100 * time.Millisecond, LatencyP99: 100 * time.Millisecond, TTFBP50: time.Millisecond, TTFBP99: time.Millisecond},
		},
		{
			name: "wait_until_counts_past_the_response",
			// The response went out at 10 ms; waitUntil work ran to 500 ms.
			invs: []Invocation{inv("i1", 0, 10, 500, 200)}, insts: one, since: at(0), until: at(1000),
			want: Usage{Invocations: 1, ClassicGBSeconds: 0.5, InstanceGBSeconds: 0.5, ProvisionedGBSeconds: 1, PeakInstances: 1,
				LatencyP50: 500 * time.Millisecond, LatencyP99: 500 * time.Millisecond, TTFBP50: 10 * time.Millisecond, TTFBP99: 10 * time.Millisecond},
		},
		{
			name:  "instance_stopped_mid_window",
			insts: []Instance{{Deployment: "d", Instance: "i1", MemoryMB: 2048, Start: at(0), End: at(5000)}},
			since: at(2000), until: at(10000),
			want: Usage{ProvisionedGBSeconds: 6, PeakInstances: 1},
		},
		{
			name: "timeout_is_an_error_and_counts_its_full_duration",
			invs: []Invocation{{Deployment: "d", Instance: "i1", Start: at(0), End: at(1000), Status: 504}}, insts: one, since: at(0), until: at(2000),
			want: Usage{Invocations: 1, Errors: 1, ClassicGBSeconds: 1, InstanceGBSeconds: 1, ProvisionedGBSeconds: 2, PeakInstances: 1,
				LatencyP50: time.Second, LatencyP99: time.Second},
		},
		{
			name: "clipped_to_the_window",
			// Started before the window, ended inside: counted, its time clipped.
			invs:  []Invocation{inv("i1", 0, 1, 2000, 200), inv("i1", 2500, 2501, 3500, 200)},
			insts: one, since: at(1000), until: at(3000),
			want: Usage{Invocations: 1, ClassicGBSeconds: 1.5, InstanceGBSeconds: 1.5, ProvisionedGBSeconds: 2, PeakInstances: 1,
				LatencyP50: 2 * time.Second, LatencyP99: 2 * time.Second, TTFBP50: time.Millisecond, TTFBP99: time.Millisecond},
		},
		{
			name: "memory_scales_and_classic_mode_saves_nothing",
			invs: []Invocation{inv("a", 0, 1, 100, 200), inv("b", 0, 1, 100, 200)},
			insts: []Instance{
				{Deployment: "d", Instance: "a", MemoryMB: 512, Start: at(0), End: at(100)},
				{Deployment: "d", Instance: "b", MemoryMB: 512, Start: at(0), End: at(100)},
			},
			since: at(0), until: at(1000),
			want: Usage{Invocations: 2, ClassicGBSeconds: 0.1, InstanceGBSeconds: 0.1, ProvisionedGBSeconds: 0.1, PeakInstances: 2,
				LatencyP50: 100 * time.Millisecond, LatencyP99: 100 * time.Millisecond, TTFBP50: time.Millisecond, TTFBP99: time.Millisecond},
		},
		{
			name: "back_to_back_instances_do_not_overlap",
			insts: []Instance{
				{Deployment: "d", Instance: "a", MemoryMB: 1024, Start: at(0), End: at(100)},
				{Deployment: "d", Instance: "b", MemoryMB: 1024, Start: at(100), End: at(200)},
			},
			since: at(0), until: at(1000),
			want: Usage{ProvisionedGBSeconds: 0.2, PeakInstances: 1},
		},
		{
			name: "cpu_interpolated_and_clipped_to_the_window",
			// 100 ms of CPU by 1 s, 300 ms by 2 s, then stopped. On the
			// line through the samples cpu(0.5 s) = 50 ms and
			// cpu(1.5 s) = 200 ms: 150 ms in the window.
			insts: []Instance{{Deployment: "d", Instance: "a", MemoryMB: 1024, Start: at(0), End: at(2000), PeakRSS: 40 << 20,
				CPU: []CPUSample{{at(1000), 100 * time.Millisecond}, {at(2000), 300 * time.Millisecond}}}},
			since: at(500), until: at(1500),
			want: Usage{ProvisionedGBSeconds: 1, PeakInstances: 1, ActiveCPU: 150 * time.Millisecond, PeakRSS: 40 << 20},
		},
		{
			name: "cpu_after_the_last_sample_stays",
			insts: []Instance{
				{Deployment: "d", Instance: "a", MemoryMB: 1024, Start: at(0), CPU: []CPUSample{{at(1000), 100 * time.Millisecond}}, PeakRSS: 1},
				{Deployment: "d", Instance: "b", MemoryMB: 1024, Start: at(0), CPU: []CPUSample{{at(500), 20 * time.Millisecond}}, PeakRSS: 2},
			},
			since: at(0), until: at(3000),
			want: Usage{ProvisionedGBSeconds: 6, PeakInstances: 2, ActiveCPU: 120 * time.Millisecond, PeakRSS: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Compute(tt.invs, tt.insts, tt.since, tt.until)
			tt.want.Since, tt.want.Until = tt.since, tt.until
			if got.Invocations != tt.want.Invocations || got.Errors != tt.want.Errors || got.PeakInstances != tt.want.PeakInstances ||
				!near(got.ClassicGBSeconds, tt.want.ClassicGBSeconds) || !near(got.InstanceGBSeconds, tt.want.InstanceGBSeconds) ||
				!near(got.ProvisionedGBSeconds, tt.want.ProvisionedGBSeconds) ||
				got.LatencyP50 != tt.want.LatencyP50 || got.LatencyP99 != tt.want.LatencyP99 ||
				got.TTFBP50 != tt.want.TTFBP50 || got.TTFBP99 != tt.want.TTFBP99 ||
				got.ActiveCPU != tt.want.ActiveCPU || got.PeakRSS != tt.want.PeakRSS {
				t.Errorf("Compute =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func TestUsage_Savings(t *testing.T) {
	tests := []struct {
		name string
		u    Usage
		want float64
	}{
		{"none", Usage{}, 0},
		{"twenty_overlapping", Usage{ClassicGBSeconds: 4, InstanceGBSeconds: 0.2}, 0.95},
		{"classic", Usage{ClassicGBSeconds: 1, InstanceGBSeconds: 1}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.u.Savings(); !near(got, tt.want) {
				t.Errorf("Savings() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRecorder(t *testing.T) {
	r := NewRecorder()
	r.InstanceStarted(Instance{Deployment: "d1", Instance: "i1", MemoryMB: 1024, Start: at(0)})
	r.InstanceStarted(Instance{Deployment: "d2", Instance: "i2", MemoryMB: 1024, Start: at(0)})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.Invoked(Invocation{Deployment: "d1", Instance: "i1", Start: at(i), End: at(i + 200), Status: 200})
		}()
	}
	wg.Wait()
	r.Invoked(Invocation{Deployment: "d2", Instance: "i2", Start: at(0), End: at(100), Status: 200})
	r.InstanceStopped("i1", at(1000))
	r.InstanceStopped("i1", at(5000)) // a second stop changes nothing
	u := r.Usage([]string{"d1"}, at(0), at(2000))
	if u.Invocations != 20 || !near(u.ClassicGBSeconds, 4) || !near(u.ProvisionedGBSeconds, 1) {
		t.Errorf("d1 usage %+v, want 20 invocations, 4 classic GB-s, 1 provisioned GB-s", u)
	}
	if u := r.Usage([]string{"d1", "d2"}, at(0), at(2000)); u.Invocations != 21 || u.PeakInstances != 2 {
		t.Errorf("d1+d2 usage %+v, want 21 invocations on 2 instances", u)
	}
}

func TestRecorder_Waited(t *testing.T) {
	r := NewRecorder()
	r.InstanceStarted(Instance{Deployment: "d", Instance: "i1", MemoryMB: 1024, Start: at(0)})
	// The response ended at 10 ms; its waitUntil work went on to 500 ms.
	r.Invoked(Invocation{Deployment: "d", Instance: "i1", ID: "a", Start: at(0), FirstByte: at(5), End: at(10), Status: 200})
	r.Waited(Invocation{Deployment: "d", Instance: "i1", ID: "a", Start: at(9), End: at(500)})
	// The instance's report can beat the invoker's record of the end.
	r.Waited(Invocation{Deployment: "d", Instance: "i1", ID: "b", Start: at(1009), End: at(1300)})
	r.Invoked(Invocation{Deployment: "d", Instance: "i1", ID: "b", Start: at(1000), End: at(1010), Status: 200})
	// An end before the recorded one changes nothing.
	r.Waited(Invocation{Deployment: "d", Instance: "i1", ID: "a", Start: at(1), End: at(2)})
	u := r.Usage([]string{"d"}, at(0), at(2000))
	if u.Invocations != 2 || !near(u.ClassicGBSeconds, 0.8) || !near(u.InstanceGBSeconds, 0.8) || u.LatencyP99 != 500*time.Millisecond {
		t.Errorf("usage %+v, want 2 invocations lasting 500 and 300 ms: 0.8 classic and instance GB-s, p99 500 ms", u)
	}
}

func TestRecorder_KeepsTheNewest(t *testing.T) {
	r := NewRecorder()
	r.InstanceStarted(Instance{Deployment: "d", Instance: "i1", MemoryMB: 1024, Start: at(0)})
	const n = MaxInvocations + 2*chunkLen + 10
	for i := range n {
		r.Invoked(Invocation{Deployment: "d", Instance: "i1", ID: fmt.Sprint(i), Start: at(i), End: at(i + 1), Status: 200})
	}
	// The newest record and one a chunk before it, across a chunk's edge.
	r.Waited(Invocation{Deployment: "d", Instance: "i1", ID: fmt.Sprint(n - 1), Start: at(n - 1), End: at(n + 1)})
	r.Waited(Invocation{Deployment: "d", Instance: "i1", ID: fmt.Sprint(n - chunkLen - 5), Start: at(n - chunkLen - 5), End: at(n - chunkLen - 2)})
	recs := r.invocations["d"].appendTo(nil, "d")
	if len(recs) < MaxInvocations || len(recs) > MaxInvocations+chunkLen {
		t.Fatalf("%d records kept, want %d to %d", len(recs), MaxInvocations, MaxInvocations+chunkLen)
	}
	first := n - len(recs)
	for i, rec := range recs {
		if rec.ID != fmt.Sprint(first+i) {
			t.Fatalf("record %d is %s, want %d: the newest, oldest first", i, rec.ID, first+i)
		}
	}
	if end := recs[len(recs)-1].End; !end.Equal(at(n + 1)) {
		t.Errorf("newest record ends at %v, want the end Waited gave, %v", end, at(n+1))
	}
	if end := recs[len(recs)-chunkLen-5].End; !end.Equal(at(n - chunkLen - 2)) {
		t.Errorf("record %d ends at %v, want the end Waited gave, %v", n-chunkLen-5, end, at(n-chunkLen-2))
	}
	if len(r.early) != 0 {
		t.Errorf("%d early ends, want none: Waited found both records", len(r.early))
	}
}

func TestRecorder_InstanceSampled(t *testing.T) {
	r := NewRecorder()
	r.InstanceStarted(Instance{Deployment: "d", Instance: "i1", MemoryMB: 1024, Start: at(0)})
	r.InstanceSampled("nope", at(1), time.Second, 1) // an unknown instance is ignored
	// 10 ms of CPU every 100 ms for 1000 s: 100 s of CPU, RSS growing.
	for i := 1; i <= 10_000; i++ {
		r.InstanceSampled("i1", at(100*i), time.Duration(i)*10*time.Millisecond, int64(i))
	}
	r.mu.Lock()
	n := len(r.instances["i1"].CPU)
	r.mu.Unlock()
	if n > maxSamples {
		t.Errorf("%d samples kept, want at most %d", n, maxSamples)
	}
	u := r.Usage([]string{"d"}, at(0), at(1_000_000))
	if u.ActiveCPU != 100*time.Second || u.PeakRSS != 10_000 {
		t.Errorf("usage %+v, want 100 s of CPU and a peak RSS of 10000", u)
	}
	// A window in the middle: 10 ms per 100 ms over 100 s.
	if u := r.Usage([]string{"d"}, at(300_000), at(400_000)); u.ActiveCPU < 9900*time.Millisecond || u.ActiveCPU > 10100*time.Millisecond {
		t.Errorf("CPU from 300 s to 400 s = %v, want about 10 s", u.ActiveCPU)
	}
}

// TestRecorder_InstanceSampledKeepsTurns: where an instance's CPU rate
// turns (it starts to work, or stops) within a second of the sample kept
// before, the sample there stays, so that a window that begins with the
// work gets all of its CPU and none of what came before it.
func TestRecorder_InstanceSampledKeepsTurns(t *testing.T) {
	tests := []struct {
		name   string
		before func(ms int) int // CPU ms used by ms, up to 2450 ms
	}{
		{"idle", func(int) int { return 0 }},
		// 100 ms of CPU over the 300 ms before the work (a first request).
		{"warm", func(ms int) int { return min(max(ms-2150, 0), 300) / 3 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRecorder()
			r.InstanceStarted(Instance{Deployment: "d", Instance: "i1", MemoryMB: 1024, Start: at(0)})
			// Samples every 50 ms; from 2450 ms, 400 ms of CPU over 400 ms,
			// then none up to 5 s.
			base := tt.before(2450)
			for ms := 0; ms <= 5000; ms += 50 {
				cpu := tt.before(min(ms, 2450)) + min(max(ms-2450, 0), 400)
				r.InstanceSampled("i1", at(ms), time.Duration(cpu)*time.Millisecond, 1)
			}
			for _, tc := range []struct{ from, to, want int }{{2450, 5000, 400}, {2450, 2850, 400}, {0, 2850, base + 400}, {2850, 5000, 0}} {
				u := r.Usage([]string{"d"}, at(tc.from), at(tc.to))
				if d := u.ActiveCPU - time.Duration(tc.want)*time.Millisecond; d.Abs() > 10*time.Millisecond {
					t.Errorf("CPU from %d to %d ms = %v, want %d ms", tc.from, tc.to, u.ActiveCPU, tc.want)
				}
			}
		})
	}
}

func TestBusy(t *testing.T) {
	type add struct{ start, end, want int }
	tests := []struct {
		name string
		adds []add
	}{
		{"one", []add{{0, 100, 100}}},
		{"empty", []add{{100, 100, 0}, {100, 50, 0}}},
		{"disjoint", []add{{0, 100, 100}, {200, 300, 100}}},
		{"overlapping", []add{{0, 100, 100}, {50, 150, 50}, {20, 80, 0}}},
		{"touching", []add{{0, 100, 100}, {100, 200, 100}}},
		// A long invocation that ends last covers the gap between two that
		// ended before it.
		{"out_of_order", []add{{0, 100, 100}, {120, 200, 80}, {50, 300, 120}}},
		{"spanning_many", []add{{0, 10, 10}, {20, 30, 10}, {40, 50, 10}, {60, 70, 10}, {0, 100, 60}, {0, 100, 0}}},
		{"earlier", []add{{200, 300, 100}, {0, 100, 100}, {90, 210, 100}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b Busy
			for _, a := range tt.adds {
				if got := b.Add(at(a.start), at(a.end)); got != time.Duration(a.want)*time.Millisecond {
					t.Errorf("Add(%d, %d) = %v, want %d ms", a.start, a.end, got, a.want)
				}
			}
		})
	}
}

func TestBusy_BoundedAndMatchesUnion(t *testing.T) {
	var b Busy
	var ivs []interval
	var total time.Duration
	for i := range 2000 {
		// Overlapping bursts with gaps between them.
		start := at(i*7 + (i%5)*3)
		end := start.Add(time.Duration(5+i%11) * time.Millisecond)
		total += b.Add(start, end)
		ivs = append(ivs, interval{start, end})
	}
	for i := range 3 * maxStretches {
		// Then one invocation at a time, with gaps: a stretch each.
		start := at(20_000 + i*10)
		end := start.Add(time.Duration(1+i%7) * time.Millisecond)
		total += b.Add(start, end)
		ivs = append(ivs, interval{start, end})
	}
	if n := len(b.stretches); n < maxStretches || n > 2*maxStretches {
		t.Errorf("%d stretches kept, want %d to %d", n, maxStretches, 2*maxStretches)
	}
	if want := union(ivs); total != want {
		t.Errorf("busy %v, union %v", total, want)
	}
}

func TestCompute_Instances(t *testing.T) {
	insts := []Instance{
		{Deployment: "d", Instance: "b", MemoryMB: 512, Start: at(100), CPU: []CPUSample{{at(1100), 40 * time.Millisecond}}, PeakRSS: 7},
		{Deployment: "d", Instance: "a", MemoryMB: 512, Start: at(0), End: at(500)},
		{Deployment: "d", Instance: "gone", MemoryMB: 512, Start: at(0), End: at(50)}, // before the window
	}
	invs := []Invocation{inv("a", 100, 110, 300, 200), inv("a", 200, 210, 400, 200), inv("b", 600, 601, 700, 200)}
	u := Compute(invs, insts, at(60), at(2000))
	if len(u.Instances) != 2 {
		t.Fatalf("instances %+v, want a and b", u.Instances)
	}
	a, b := u.Instances[0], u.Instances[1]
	if a.Instance != "a" || a.Busy != 300*time.Millisecond || !a.End.Equal(at(500)) || a.MemoryMB != 512 {
		t.Errorf("a: %+v, want busy 300 ms, stopped at 500 ms", a)
	}
	if b.Instance != "b" || b.Busy != 100*time.Millisecond || !b.End.IsZero() || b.CPU != 40*time.Millisecond || b.PeakRSS != 7 {
		t.Errorf("b: %+v, want busy 100 ms, running, 40 ms of CPU", b)
	}
	if !near(u.InstanceGBSeconds, 0.2) {
		t.Errorf("instance GB-s %v, want 0.4 s at 0.5 GB = 0.2", u.InstanceGBSeconds)
	}
}

func TestRecorder_ForgetsOldInstances(t *testing.T) {
	r := NewRecorder()
	r.InstanceStarted(Instance{Deployment: "d", Instance: "running", MemoryMB: 1024, Start: at(0)})
	for i := range MaxInstances + MaxInstances/10 {
		id := fmt.Sprint("i", i)
		r.InstanceStarted(Instance{Deployment: "d", Instance: id, MemoryMB: 1024, Start: at(i)})
		r.InstanceStopped(id, at(i+1))
	}
	r.mu.Lock()
	n := len(r.instances)
	_, running := r.instances["running"]
	_, oldest := r.instances["i0"]
	_, newest := r.instances[fmt.Sprint("i", MaxInstances+MaxInstances/10-1)]
	r.mu.Unlock()
	if n > MaxInstances+MaxInstances/10 || !running || oldest || !newest {
		t.Errorf("%d instances kept (running %v, oldest %v, newest %v); want at most %d, the running one and the newest, not the oldest",
			n, running, oldest, newest, MaxInstances+MaxInstances/10)
	}
}

// BenchmarkRecorder_Invoked records invocations of one deployment past
// MaxInvocations, as a busy deployment does, with a GC now and then, which
// scans what the records hold.
func BenchmarkRecorder_Invoked(b *testing.B) {
	r := NewRecorder()
	start := time.Now()
	inv := Invocation{Project: "p", Deployment: "d", Instance: "i1", ID: "0123456789abcdef", Start: start,
		FirstByte: start.Add(time.Millisecond), End: start.Add(2 * time.Millisecond), Status: 200}
	for i := range MaxInvocations {
		inv.Start = start.Add(time.Duration(i))
		r.Invoked(inv)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		inv.Start = start.Add(time.Duration(i))
		r.Invoked(inv)
		if i++; i%50_000 == 0 {
			runtime.GC()
		}
	}
}

// Records keep what Compute reads of an invocation, compactly: its project,
// deployment, instance, times and status, and its id, cut to 16 bytes.
func TestRecorder_KeepsWhatItRecords(t *testing.T) {
	r := NewRecorder()
	in := []Invocation{
		{Project: "p", Deployment: "d", Instance: "i1", ID: "0123456789abcdef", Start: at(0), FirstByte: at(3), End: at(10), Status: 200},
		{Project: "p", Deployment: "d", Instance: "i2", ID: "an-id-longer-than-16-bytes", Start: at(5), End: at(7), Status: 504},
		{Project: "p", Deployment: "d", Instance: "i1", Start: at(8), FirstByte: at(9), End: at(9), Status: 201},
	}
	for _, inv := range in {
		r.Invoked(inv)
	}
	r.Waited(Invocation{Deployment: "d", ID: "an-id-longer-than-16-bytes", End: at(20)})
	got := r.invocations["d"].appendTo(nil, "d")
	in[1].ID, in[1].End = "an-id-longer-tha", at(20)
	if len(got) != len(in) {
		t.Fatalf("%d records, want %d", len(got), len(in))
	}
	for i, g := range got {
		w := in[i]
		if g.Project != w.Project || g.Deployment != w.Deployment || g.Instance != w.Instance || g.ID != w.ID ||
			!g.Start.Equal(w.Start) || !g.FirstByte.Equal(w.FirstByte) || g.FirstByte.IsZero() != w.FirstByte.IsZero() ||
			!g.End.Equal(w.End) || g.Status != w.Status {
			t.Errorf("record %d is %+v, want %+v", i, g, w)
		}
	}
	if len(r.early) != 0 {
		t.Errorf("%d early ends, want none: Waited found the record by its long id", len(r.early))
	}
}

// BenchmarkBusy_Add adds invocations one after another with gaps between
// them, as an instance serving one connection reports them: each a stretch
// of its own.
func BenchmarkBusy_Add(b *testing.B) {
	var busy Busy
	start := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		busy.Add(start, start.Add(40*time.Microsecond))
		start = start.Add(50 * time.Microsecond)
	}
}
