package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testutil"
)

// BenchmarkColdStart measures a request to a deployment with zero instances
// to its response: the process start, node's start, the bundle's load and
// the tunnel. Each iteration deploys a new version, so nothing is warm.
// Serves run side by side, one isolating its instances (cgroup, namespaces,
// seccomp where the host allows), one not, and one isolating without a
// spare runtime started ahead; and node's own start (node -e 0). Each
// iteration measures all, so the figures share the machine's noise.
//
//	go test -run '^$' -bench ColdStart -benchtime 50x ./test/e2e
func BenchmarkColdStart(b *testing.B) {
	node, err := exec.LookPath("node")
	if err != nil {
		b.Fatal(err)
	}
	serves := []struct {
		name    string
		s       *testutil.Serve // nil: node -e 0
		samples []time.Duration
	}{
		{name: "isolated", s: testutil.StartServe(b, testutil.ServeOptions{Args: []string{"--isolation", "auto"}})},
		{name: "plain", s: testutil.StartServe(b, testutil.ServeOptions{Args: []string{"--isolation", "off"}})},
		{name: "isolated-nospare", s: testutil.StartServe(b, testutil.ServeOptions{Args: []string{"--isolation", "auto", "--spares", "0"}})},
		{name: "node"},
	}
	for i := 0; b.Loop(); i++ {
		for j := range serves {
			sv := &serves[j]
			if sv.s == nil {
				start := time.Now()
				if out, err := exec.Command(node, "-e", "0").CombinedOutput(); err != nil {
					b.Fatalf("node -e 0: %v\n%s", err, out)
				}
				sv.samples = append(sv.samples, time.Since(start))
				continue
			}
			b.StopTimer()
			url := sv.s.Deploy(testutil.WriteProject(b, "cold", map[string]string{
				"index.mjs": fmt.Sprintf("export default (req, res) => res.end(%q)\n", fmt.Sprint("hello ", i)),
			}))
			// The last version's instance stops once this one is current:
			// let it go first, so its teardown is not measured too.
			testutil.Eventually(b, 30*time.Second, "the previous instance stopped", func() bool {
				return len(testutil.InstancePids(sv.s.DataDir)) == 0
			})
			// Then the kernel tears its namespaces down in the background
			// (its network namespace's veth and rules): measured right
			// after, that costs the next cold start about 7 ms. The time
			// also lets serve start its next spare.
			time.Sleep(300 * time.Millisecond)
			b.StartTimer()
			start := time.Now()
			resp, err := http.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			d := time.Since(start)
			if resp.StatusCode != 200 {
				b.Fatalf("%s cold request: %d", sv.name, resp.StatusCode)
			}
			sv.samples = append(sv.samples, d)
		}
	}
	// The median of each iteration's difference cancels what drifts
	// between iterations (the machine's other load) better than the
	// difference of the medians.
	added := func(a, b int) float64 {
		var diffs []time.Duration
		for i := range serves[a].samples {
			diffs = append(diffs, serves[a].samples[i]-serves[b].samples[i])
		}
		slices.Sort(diffs)
		return float64(diffs[len(diffs)/2].Microseconds()) / 1000
	}
	for _, sv := range serves {
		slices.Sort(sv.samples)
		b.ReportMetric(float64(sv.samples[len(sv.samples)/2].Microseconds())/1000, "ms-p50-"+sv.name)
		b.ReportMetric(float64(sv.samples[len(sv.samples)*99/100].Microseconds())/1000, "ms-p99-"+sv.name)
	}
	b.ReportMetric(added(0, 1), "ms-added-median")
	b.ReportMetric(added(2, 1), "ms-added-nospare-median")
	b.ReportMetric(added(0, 3), "ms-over-node-median")
}

// BenchmarkInstanceMemory measures what one instance holds in memory after
// b.N hello invocations: its runtime (the Go supervisor) and its node, each
// as resident memory (RSS), the part of it no other process shares
// (private) and its proportional share (PSS). The runtime's RSS is mostly
// its binary's pages, which every other runtime shares: the sub-benchmarks
// run it as shoal-runtime, serve's default, and as the whole shoal binary.
//
//	go test -run '^$' -bench InstanceMemory -benchtime 2000x ./test/e2e
func BenchmarkInstanceMemory(b *testing.B) {
	b.Run("runtime=shoal-runtime", func(b *testing.B) { instanceMemory(b) })
	b.Run("runtime=shoal", func(b *testing.B) { instanceMemory(b, "--runtime-exe", testutil.PlainBinary(b)) })
}

func instanceMemory(b *testing.B, args ...string) {
	s := testutil.StartServe(b, testutil.ServeOptions{Args: args})
	url := s.Deploy(testutil.WriteProject(b, "mem", map[string]string{
		"index.mjs": "export default (req, res) => res.end('hello')\n",
	}))
	for b.Loop() {
		resp, err := http.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("GET: %d", resp.StatusCode)
		}
	}
	runtimes := testutil.RuntimePids(s.DataDir)
	if len(runtimes) != 1 {
		b.Fatalf("%d instance runtimes, want 1", len(runtimes))
	}
	var node int
	for _, pid := range testutil.InstancePids(s.DataDir) {
		if pid != runtimes[0] {
			node = pid
		}
	}
	if node == 0 {
		b.Fatal("no node process under the runtime")
	}
	for _, p := range []struct {
		name string
		pid  int
	}{{"runtime", runtimes[0]}, {"node", node}} {
		m, err := testutil.MemoryOf(p.pid)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(m.RSS)/(1<<20), "MiB-rss-"+p.name)
		b.ReportMetric(float64(m.Private)/(1<<20), "MiB-private-"+p.name)
		b.ReportMetric(float64(m.PSS)/(1<<20), "MiB-pss-"+p.name)
	}
}
