package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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

// BenchmarkColdStartExpress measures what the V8 code cache does for the
// cold start of an Express app (a 1.2 MB bundle): from a request to a
// deployment with zero instances to its response, three ways side by side
// in each iteration, each a new deployment: as deployed (a CommonJS bundle
// with the code cache its check made), the same with the cache removed,
// and as an ES module bundle (a top-level await makes the build choose
// one), how every bundle loaded before the cache. And node's own start
// (node -e 0).
//
//	go test -run '^$' -bench ColdStartExpress -benchtime 20x ./test/e2e
func BenchmarkColdStartExpress(b *testing.B) {
	node, err := exec.LookPath("node")
	if err != nil {
		b.Fatal(err)
	}
	// Each way is a project of its own, whose instance stops 1 s after its
	// request, before the next way's.
	s := testutil.StartServe(b, testutil.ServeOptions{Args: []string{"--isolation", "auto", "--keep-alive", "1s"}})
	ways := []struct {
		name         string
		esm, noCache bool
		samples      []time.Duration
	}{{name: "cache"}, {name: "nocache", noCache: true}, {name: "esm", esm: true}, {name: "node"}}
	for i := 0; b.Loop(); i++ {
		for j := range ways {
			w := &ways[j]
			if w.name == "node" {
				start := time.Now()
				if out, err := exec.Command(node, "-e", "0").CombinedOutput(); err != nil {
					b.Fatalf("node -e 0: %v\n%s", err, out)
				}
				w.samples = append(w.samples, time.Since(start))
				continue
			}
			b.StopTimer()
			src := "import express from 'express';\n"
			if w.esm {
				src += "await 0;\n"
			}
			src += fmt.Sprintf("const app = express();\napp.get('/', (req, res) => res.send(%q));\nexport default app;\n", fmt.Sprint("hi ", i))
			url := s.Deploy(frameworkProject(b, "express-"+w.name, map[string]string{"index.mjs": src}))
			dir := newestDeployment(b, s.DataDir)
			cache := filepath.Join(dir, ".shoal-index.mjs.cjs.v8cache")
			want := cache
			if w.esm {
				want = filepath.Join(dir, ".shoal-index.mjs.mjs")
			}
			if _, err := os.Stat(want); err != nil {
				b.Fatalf("%s: %v", w.name, err)
			}
			if w.noCache {
				if err := os.Remove(cache); err != nil {
					b.Fatal(err)
				}
			}
			testutil.Eventually(b, 30*time.Second, "the previous instance stopped", func() bool {
				return len(testutil.InstancePids(s.DataDir)) == 0
			})
			time.Sleep(300 * time.Millisecond) // see BenchmarkColdStart
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
				b.Fatalf("%s cold request: %d", w.name, resp.StatusCode)
			}
			w.samples = append(w.samples, d)
		}
	}
	// As in BenchmarkColdStart: the median of each iteration's difference.
	diff := func(a, b int) float64 {
		var diffs []time.Duration
		for i := range ways[a].samples {
			diffs = append(diffs, ways[a].samples[i]-ways[b].samples[i])
		}
		slices.Sort(diffs)
		return float64(diffs[len(diffs)/2].Microseconds()) / 1000
	}
	b.ReportMetric(diff(1, 0), "ms-saved-vs-nocache")
	b.ReportMetric(diff(2, 0), "ms-saved-vs-esm")
	b.ReportMetric(diff(0, 3), "ms-over-node")
	for _, w := range ways {
		slices.Sort(w.samples)
		b.ReportMetric(float64(w.samples[len(w.samples)/2].Microseconds())/1000, "ms-p50-"+w.name)
		b.ReportMetric(float64(w.samples[len(w.samples)*99/100].Microseconds())/1000, "ms-p99-"+w.name)
	}
}

// newestDeployment is the folder of the deployment made last.
func newestDeployment(b *testing.B, dataDir string) string {
	dirs, err := filepath.Glob(filepath.Join(dataDir, "deployments", "*"))
	if err != nil || len(dirs) == 0 {
		b.Fatalf("no deployments in %s: %v", dataDir, err)
	}
	var newest string
	var at time.Time
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.ModTime().After(at) {
			newest, at = d, fi.ModTime()
		}
	}
	return newest
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
