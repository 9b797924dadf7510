package e2e

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testutil"
)

// BenchmarkColdStart measures a request to a deployment with zero instances
// to its response: the process start, node's start, the bundle's load and
// the tunnel. Each iteration deploys a new version, so nothing is warm. Two
// serves run side by side, one isolating its instances (cgroup, namespaces,
// seccomp where the host allows) and one not, and each iteration measures
// both, so the figures share the machine's noise.
//
//	go test -run '^$' -bench ColdStart -benchtime 40x ./test/e2e
func BenchmarkColdStart(b *testing.B) {
	serves := []struct {
		name    string
		s       *testutil.Serve
		samples []time.Duration
	}{
		{name: "isolated", s: testutil.StartServe(b, testutil.ServeOptions{Args: []string{"--isolation", "auto"}})},
		{name: "plain", s: testutil.StartServe(b, testutil.ServeOptions{Args: []string{"--isolation", "off"}})},
	}
	for i := 0; b.Loop(); i++ {
		for j := range serves {
			sv := &serves[j]
			b.StopTimer()
			url := sv.s.Deploy(testutil.WriteProject(b, "cold", map[string]string{
				"index.mjs": fmt.Sprintf("export default (req, res) => res.end(%q)\n", fmt.Sprint("hello ", i)),
			}))
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
	var p50 [2]float64
	for j, sv := range serves {
		slices.Sort(sv.samples)
		p50[j] = float64(sv.samples[len(sv.samples)/2].Microseconds()) / 1000
		b.ReportMetric(p50[j], "ms-p50-"+sv.name)
		b.ReportMetric(float64(sv.samples[len(sv.samples)*99/100].Microseconds())/1000, "ms-p99-"+sv.name)
	}
	b.ReportMetric(p50[0]-p50[1], "ms-p50-added")
}
