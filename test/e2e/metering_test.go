package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/testutil"
)

func TestMetering_OverlappingInvocations(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "metered", map[string]string{
		"index.mjs":  pidHandler,
		"shoal.json": `{ "memory": 512 }`,
	}))
	testutil.Get(t, url) // warm, so the 20 overlap on one instance
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before := usage(ctx, t, s, "metered")
	getAll(t, 20, url+"?ms=200")
	// An invocation is recorded just after its last byte went out, so the
	// client can ask before the last record lands.
	var u api.Usage
	testutil.Eventually(t, 5*time.Second, "20 invocations metered", func() bool {
		u = usage(ctx, t, s, "metered")
		return u.Invocations-before.Invocations >= 20
	})
	// 20 × 0.2 s × 0.5 GB classic; the instance busy ~0.2 s × 0.5 GB.
	classic := u.ClassicGBSeconds - before.ClassicGBSeconds
	instance := u.InstanceGBSeconds - before.InstanceGBSeconds
	if u.Invocations-before.Invocations != 20 {
		t.Errorf("invocations %d, want 20", u.Invocations-before.Invocations)
	}
	if classic < 2.0 || classic > 2.6 {
		t.Errorf("classic GB-s %.3f, want about 20 x 0.2 s x 0.5 GB = 2", classic)
	}
	if instance < 0.1 || instance > 0.25 {
		t.Errorf("instance GB-s %.3f, want about 0.2 s x 0.5 GB = 0.1", instance)
	}
	if u.Savings < 0.8 {
		t.Errorf("savings %.2f, want above 0.8", u.Savings)
	}
	if u.PeakInstances != 1 {
		t.Errorf("peak instances %d, want 1", u.PeakInstances)
	}
	// The warm-up and the 20: about 0.2 s busy on the one instance.
	if len(u.Instances) != 1 || u.Instances[0].BusySeconds < 0.2 || u.Instances[0].BusySeconds > 0.5 ||
		u.Instances[0].MemoryMB != 512 || u.Instances[0].Stopped != nil || u.Instances[0].PeakRSSMB <= 0 {
		t.Errorf("instances %+v, want one running 512 MB instance, busy about 0.2 s", u.Instances)
	}
	out, _, err := s.CLI(ctx, "usage", "metered")
	if err != nil || !strings.Contains(out, "savings") || !strings.Contains(out, "classic GB-s") || !strings.Contains(out, "busy s") {
		t.Errorf("shoal usage: %v %q", err, out)
	}
}

func usage(ctx context.Context, t *testing.T, s *testutil.Serve, project string) api.Usage {
	t.Helper()
	out, errOut, err := s.CLI(ctx, "usage", project, "--json")
	if err != nil {
		t.Fatalf("shoal usage --json: %v %s", err, errOut)
	}
	var u api.Usage
	if err := json.Unmarshal([]byte(out), &u); err != nil {
		t.Fatalf("usage JSON %q: %v", out, err)
	}
	return u
}

func TestMetering_Prometheus(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "scraped", map[string]string{"index.mjs": pidHandler}))
	getAll(t, 5, url)
	// An invocation is recorded just after its last byte went out, so a
	// scrape right after the responses can precede the last record.
	var body string
	testutil.Eventually(t, 5*time.Second, "5 invocations in /metrics", func() bool {
		code, b, _ := testutil.Get(t, s.URL+"/_shoal/metrics")
		if code != 200 {
			t.Fatalf("metrics: %d", code)
		}
		body = b
		return strings.Contains(body, `shoal_invocations_total{code="200",project="scraped"} 5`)
	})
	for _, want := range []string{
		`shoal_invocations_total{code="200",project="scraped"} 5`,
		`shoal_invocation_duration_seconds_count{project="scraped"} 5`,
		`shoal_instances{project="scraped"} 1`,
		`shoal_classic_gb_seconds_total{project="scraped"}`,
		`shoal_instance_gb_seconds_total{project="scraped"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// A function's CPU time and memory come from the kernel; waitUntil work is
// part of its invocation.
func TestMetering_CPUMemoryAndWaitUntil(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "worker", map[string]string{
		"index.mjs": `
export default {
  async fetch(req, ctx) {
    const u = new URL(req.url);
    if (u.searchParams.has('burn')) {
      const t = Date.now();
      while (Date.now() - t < 400) {}
    }
    if (u.searchParams.has('later')) ctx.waitUntil(new Promise((r) => setTimeout(r, 500)));
    return new Response('ok');
  },
};`,
		"shoal.json": `{ "memory": 1024 }`,
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	testutil.Get(t, url)               // warm
	time.Sleep(200 * time.Millisecond) // and metered before the window
	began := time.Now()
	testutil.Get(t, url+"?burn")
	if code, body, _ := testutil.Get(t, url+"?later"); code != 200 || body != "ok" {
		t.Fatalf("later: %d %q", code, body)
	}
	if d := time.Since(began); d > 900*time.Millisecond+400*time.Millisecond {
		t.Errorf("the response waited for waitUntil: %v", d)
	}
	since := began.UTC().Format(time.RFC3339Nano)
	var u api.Usage
	testutil.Eventually(t, 10*time.Second, "CPU and waitUntil metered", func() bool {
		out, _, err := s.CLI(ctx, "usage", "worker", "--json", "--since", since)
		if err != nil || json.Unmarshal([]byte(out), &u) != nil {
			return false
		}
		// The burn and the waitUntil tail: 0.4 s + 0.5 s at 1 GB.
		return u.Invocations == 2 && u.ActiveCPUSeconds >= 0.35 && u.ClassicGBSeconds >= 0.85
	})
	// The tail's end is node's clock, and node's timers may fire a little
	// early by it: a few ms under 500 (CI saw 499.965).
	if u.LatencyP99Ms < 450 || u.ClassicGBSeconds > 1.3 {
		t.Errorf("usage %+v: want the waitUntil invocation to last its 500 ms, 0.9 classic GB-s in all", u)
	}
	if u.PeakRSSMB < 10 || u.PeakRSSMB > 1024 {
		t.Errorf("peak RSS %.1f MB, want node's (tens of MB)", u.PeakRSSMB)
	}
	out, _, err := s.CLI(ctx, "usage", "worker")
	if err != nil || !strings.Contains(out, "active CPU") || !strings.Contains(out, "MB resident") {
		t.Errorf("shoal usage: %v %q", err, out)
	}
}
