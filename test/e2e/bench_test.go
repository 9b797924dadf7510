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
// the tunnel. Each iteration deploys a new version, so nothing is warm.
//
//	go test -run '^$' -bench ColdStart -benchtime 20x ./test/e2e
func BenchmarkColdStart(b *testing.B) {
	s := testutil.StartServe(b, testutil.ServeOptions{})
	var samples []time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		url := s.Deploy(testutil.WriteProject(b, "cold", map[string]string{
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
			b.Fatalf("cold request: %d", resp.StatusCode)
		}
		samples = append(samples, d)
	}
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2].Microseconds())/1000, "ms-median")
	b.ReportMetric(float64(samples[len(samples)-1].Microseconds())/1000, "ms-max")
}
