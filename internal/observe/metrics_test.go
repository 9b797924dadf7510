package observe

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/metering"
)

func TestMetrics(t *testing.T) {
	m := NewMetrics()
	m.WatchLimits(func() map[string]Learned { return map[string]Learned{"app": {Limit: 7, Loops: 3}} })
	t0 := time.Unix(1000, 0)
	m.InstanceStarted(metering.Instance{Project: "app", Deployment: "d", Instance: "i1", MemoryMB: 2048, Start: t0})
	for range 3 {
		m.Invoked(metering.Invocation{Project: "app", Deployment: "d", Instance: "i1", Start: t0, FirstByte: t0.Add(10 * time.Millisecond), End: t0.Add(500 * time.Millisecond), Status: 200})
	}
	m.Invoked(metering.Invocation{Project: "app", Deployment: "d", Instance: "i1", Start: t0, End: t0.Add(time.Second), Status: 504})
	// Another project's series are its own.
	m.InstanceStarted(metering.Instance{Project: "other", Deployment: "e", Instance: "j1", MemoryMB: 1024, Start: t0})
	m.Invoked(metering.Invocation{Project: "other", Deployment: "e", Instance: "j1", Start: t0, End: t0.Add(time.Second), Status: 200})
	// waitUntil work from 2 s to 2.5 s.
	m.Waited(metering.Invocation{Project: "app", Deployment: "d", Instance: "i1", Start: t0.Add(2 * time.Second), End: t0.Add(2500 * time.Millisecond)})
	m.InstanceSampled("i1", t0.Add(time.Second), 250*time.Millisecond, 1)
	m.InstanceSampled("i1", t0.Add(2*time.Second), 750*time.Millisecond, 1)
	m.InstanceSampled("i1", t0.Add(3*time.Second), 700*time.Millisecond, 1) // never counts back
	m.InstanceStopped("i1", t0.Add(10*time.Second))
	m.InstanceStopped("i1", t0.Add(20*time.Second)) // twice: counted once

	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(w.Body)
	for _, want := range []string{
		`shoal_invocations_total{code="200",project="app"} 3`,
		`shoal_invocations_total{code="504",project="app"} 1`,
		`shoal_invocation_duration_seconds_count{project="app"} 4`,
		`shoal_invocation_ttfb_seconds_count{project="app"} 3`,
		`shoal_instances{project="app"} 0`,
		// 3 × 0.5 s + 1 s + 0.5 s of waitUntil, at 2 GB
		`shoal_classic_gb_seconds_total{project="app"} 6`,
		// busy from 0 to 1 s and 2 to 2.5 s, at 2 GB
		`shoal_instance_gb_seconds_total{project="app"} 3`,
		`shoal_instance_cpu_seconds_total{project="app"} 0.75`,
		`shoal_concurrency_limit{project="app"} 7`,
		`shoal_event_loops{project="app"} 3`,
		// 10 s at 2 GB
		`shoal_provisioned_gb_seconds_total{project="app"} 20`,
		`shoal_invocations_total{code="200",project="other"} 1`,
		`shoal_invocation_duration_seconds_count{project="other"} 1`,
		`shoal_invocation_ttfb_seconds_count{project="other"} 0`,
		`shoal_classic_gb_seconds_total{project="other"} 1`,
		`shoal_instance_gb_seconds_total{project="other"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// BenchmarkMetricsInvoked is the metrics' share of one invocation.
func BenchmarkMetricsInvoked(b *testing.B) {
	m := NewMetrics()
	t0 := time.Now()
	m.InstanceStarted(metering.Instance{Project: "app", Deployment: "d", Instance: "i1", MemoryMB: 1024, Start: t0})
	inv := metering.Invocation{Project: "app", Deployment: "d", Instance: "i1", Start: t0, FirstByte: t0, End: t0, Status: 200}
	b.ReportAllocs()
	for b.Loop() {
		inv.End = inv.End.Add(time.Microsecond)
		m.Invoked(inv)
	}
}
