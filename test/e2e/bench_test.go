package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
//	go test -run '^$' -bench 'ColdStart$' -benchtime 40x ./test/e2e
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
				sv.samples = append(sv.samples, nodeStart(b, node))
				continue
			}
			b.StopTimer()
			url := sv.s.Deploy(testutil.WriteProject(b, "cold", map[string]string{
				"index.mjs": fmt.Sprintf("export default (req, res) => res.end(%q)\n", fmt.Sprint("hello ", i)),
			}))
			sv.samples = append(sv.samples, coldRequest(b, sv.s, sv.name, url))
		}
	}
	for _, sv := range serves {
		reportPercentiles(b, sv.name, sv.samples)
	}
	b.ReportMetric(pairedMedian(serves[0].samples, serves[1].samples), "ms-added-median")
	b.ReportMetric(pairedMedian(serves[2].samples, serves[1].samples), "ms-added-nospare-median")
	b.ReportMetric(pairedMedian(serves[0].samples, serves[3].samples), "ms-over-node-median")
}

// nodeStart is how long node -e 0 takes.
func nodeStart(b *testing.B, node string) time.Duration {
	start := time.Now()
	if out, err := exec.Command(node, "-e", "0").CombinedOutput(); err != nil {
		b.Fatalf("node -e 0: %v\n%s", err, out)
	}
	return time.Since(start)
}

// coldRequest times a request to url, a deployment of s made with the
// timer stopped, from zero instances to its response, and restarts the
// timer.
func coldRequest(b *testing.B, s *testutil.Serve, name, url string) time.Duration {
	// The last version's instance stops once this one is current (or at
	// the end of its keep-alive): let it go first, so its teardown is not
	// measured too.
	testutil.Eventually(b, 30*time.Second, "the previous instance stopped", func() bool {
		return len(testutil.InstancePids(s.DataDir)) == 0
	})
	// Then the kernel tears its namespaces down in the background (its
	// network namespace's veth and rules): measured right after, that
	// costs the next cold start about 7 ms. The time also lets serve
	// start its next spare.
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
		b.Fatalf("%s cold request: %d", name, resp.StatusCode)
	}
	return d
}

// pairedMedian is the median of the differences a[i] - b[i], in ms: it
// cancels what drifts between iterations (the machine's other load) better
// than the difference of the medians.
func pairedMedian(a, b []time.Duration) float64 {
	var diffs []time.Duration
	for i := range a {
		diffs = append(diffs, a[i]-b[i])
	}
	slices.Sort(diffs)
	return float64(diffs[len(diffs)/2].Microseconds()) / 1000
}

// reportPercentiles reports the p50 and p99 of samples, in ms.
func reportPercentiles(b *testing.B, name string, samples []time.Duration) {
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2].Microseconds())/1000, "ms-p50-"+name)
	b.ReportMetric(float64(samples[len(samples)*99/100].Microseconds())/1000, "ms-p99-"+name)
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
				w.samples = append(w.samples, nodeStart(b, node))
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
			w.samples = append(w.samples, coldRequest(b, s, w.name, url))
		}
	}
	b.ReportMetric(pairedMedian(ways[1].samples, ways[0].samples), "ms-saved-vs-nocache")
	b.ReportMetric(pairedMedian(ways[2].samples, ways[0].samples), "ms-saved-vs-esm")
	b.ReportMetric(pairedMedian(ways[0].samples, ways[3].samples), "ms-over-node")
	for _, w := range ways {
		reportPercentiles(b, w.name, w.samples)
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

// BenchmarkIdleInstance measures what a warm instance with nothing to do
// costs: the CPU its runtime and its node use, as a share of one CPU, over
// b.N seconds after its one invocation (and 2 s to settle).
//
//	go test -run '^$' -bench IdleInstance -benchtime 20x ./test/e2e
func BenchmarkIdleInstance(b *testing.B) {
	s := testutil.StartServe(b, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(b, "idle", map[string]string{
		"index.mjs": "export default (req, res) => res.end('hello')\n",
	}))
	if code, _, _ := testutil.Get(b, url); code != 200 {
		b.Fatalf("GET: %d", code)
	}
	time.Sleep(2 * time.Second)
	runtime, node := instanceProcesses(b, s)
	began := time.Now()
	runtime0, node0 := cpuOf(b, runtime), cpuOf(b, node)
	for b.Loop() {
		time.Sleep(time.Second)
	}
	d := time.Since(began)
	b.ReportMetric(100*float64(cpuOf(b, runtime)-runtime0)/float64(d), "%cpu-runtime")
	b.ReportMetric(100*float64(cpuOf(b, node)-node0)/float64(d), "%cpu-node")
}

// instanceProcesses returns the pids of s's one instance: its runtime and
// its node.
func instanceProcesses(b *testing.B, s *testutil.Serve) (runtime, node int) {
	runtimes := testutil.RuntimePids(s.DataDir)
	if len(runtimes) != 1 {
		b.Fatalf("%d instance runtimes, want 1", len(runtimes))
	}
	for _, pid := range testutil.InstancePids(s.DataDir) {
		if pid != runtimes[0] {
			node = pid
		}
	}
	if node == 0 {
		b.Fatal("no node process under the runtime")
	}
	return runtimes[0], node
}

// cpuOf is the CPU time (user + system) process pid has used, from
// /proc/PID/stat, in the kernel's 10 ms ticks.
func cpuOf(b *testing.B, pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the command's closing parenthesis: utime and stime
	// are the 12th and 13th.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat: %q", pid, stat)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
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
	runtime, node := instanceProcesses(b, s)
	for _, p := range []struct {
		name string
		pid  int
	}{{"runtime", runtime}, {"node", node}} {
		m, err := testutil.MemoryOf(p.pid)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(m.RSS)/(1<<20), "MiB-rss-"+p.name)
		b.ReportMetric(float64(m.Private)/(1<<20), "MiB-private-"+p.name)
		b.ReportMetric(float64(m.PSS)/(1<<20), "MiB-pss-"+p.name)
	}
}
