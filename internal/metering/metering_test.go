package metering

import (
	"math"
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Compute(tt.invs, tt.insts, tt.since, tt.until)
			tt.want.Since, tt.want.Until = tt.since, tt.until
			if got.Invocations != tt.want.Invocations || got.Errors != tt.want.Errors || got.PeakInstances != tt.want.PeakInstances ||
				!near(got.ClassicGBSeconds, tt.want.ClassicGBSeconds) || !near(got.InstanceGBSeconds, tt.want.InstanceGBSeconds) ||
				!near(got.ProvisionedGBSeconds, tt.want.ProvisionedGBSeconds) ||
				got.LatencyP50 != tt.want.LatencyP50 || got.LatencyP99 != tt.want.LatencyP99 ||
				got.TTFBP50 != tt.want.TTFBP50 || got.TTFBP99 != tt.want.TTFBP99 {
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
