package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"text/tabwriter"
	"time"

	"github.com/shoal-dev/shoal/internal/metering"
)

// Modes: each workload runs in both, on the same arrivals.
const (
	// ModeConcurrent is concurrency on: one instance serves many
	// invocations at once.
	ModeConcurrent = "concurrent"
	// ModeClassic is "concurrency": false, one invocation per instance.
	ModeClassic = "classic"
)

// Report is what a run measured. Its JSON keys are stable, for tracking.
type Report struct {
	Arrivals string `json:"arrivals"`
	Seed     uint64 `json:"seed"`
	Rounds   int    `json:"rounds"`
	// DurationSeconds is how long each mode was measured per workload and
	// rate, over all rounds.
	DurationSeconds float64 `json:"duration_seconds"`
	// Rows holds, per workload and rate, the concurrent row, then the
	// classic one.
	Rows []Row `json:"rows"`
	// CPUs is the machine's CPU count.
	CPUs int `json:"cpus"`
	// WallSeconds is the time from the first slice's start to the last
	// one's end.
	WallSeconds float64 `json:"wall_seconds"`
	// LoadCPUSeconds is the CPU the benchmark process itself (the load
	// generator and the backend) used over WallSeconds.
	LoadCPUSeconds float64 `json:"load_cpu_seconds"`
	// LoadCPUShare is LoadCPUSeconds over the machine's CPU time in
	// WallSeconds; InstanceCPUShare is the same for the instances' active
	// CPU, summed over the rows.
	LoadCPUShare     float64 `json:"load_cpu_share"`
	InstanceCPUShare float64 `json:"instance_cpu_share"`
}

// Row is one workload at one rate in one mode.
type Row struct {
	Workload string  `json:"workload"`
	Mode     string  `json:"mode"`
	Rate     float64 `json:"rate"`
	// Achieved is 2xx responses per second of sending time.
	Achieved float64 `json:"achieved"`
	Sent     int     `json:"sent"`
	// Errors counts non-2xx responses and requests that got no response.
	Errors int `json:"errors"`
	// Invocations is how many invocations the platform metered.
	Invocations int `json:"invocations"`
	// Latency to the body's end and time to the response headers, of 2xx
	// responses, as the load generator saw them.
	LatencyP50Ms float64 `json:"latency_p50_ms"`
	LatencyP95Ms float64 `json:"latency_p95_ms"`
	LatencyP99Ms float64 `json:"latency_p99_ms"`
	TTFBP50Ms    float64 `json:"ttfb_p50_ms"`
	TTFBP95Ms    float64 `json:"ttfb_p95_ms"`
	TTFBP99Ms    float64 `json:"ttfb_p99_ms"`
	// PeakInstances is the most instances alive at once in any slice.
	PeakInstances int `json:"peak_instances"`
	// The platform's metering, summed over the slices (see package
	// metering).
	InstanceGBSeconds    float64 `json:"instance_gb_seconds"`
	ProvisionedGBSeconds float64 `json:"provisioned_gb_seconds"`
	ClassicGBSeconds     float64 `json:"classic_gb_seconds"`
	ActiveCPUSeconds     float64 `json:"active_cpu_seconds"`
	// Savings is 1 − InstanceGBSeconds/ClassicGBSeconds of this row; 0
	// when ClassicGBSeconds is.
	Savings float64 `json:"savings"`
	// LearnedLimit is the concurrency limit per event loop the instances
	// had learned at the end (what a new one starts at), and LearnedLoops
	// the most event loops one of them ran; always 1 and 1 in classic mode.
	LearnedLimit int `json:"learned_limit"`
	LearnedLoops int `json:"learned_loops"`
	// Routes has the latency of each route of a workload that has more
	// than one, as the load generator saw it.
	Routes []RouteRow `json:"routes,omitempty"`
	// VsClassic, on a concurrent row, is 1 − its instance GB-s over the
	// classic row's; P99Ratio is its latency p99 over the classic row's.
	// Nil on classic rows, and when the classic figure is 0.
	VsClassic *float64 `json:"vs_classic,omitempty"`
	P99Ratio  *float64 `json:"p99_ratio,omitempty"`
}

// RouteRow is one route's share of a row.
type RouteRow struct {
	Path         string  `json:"path"`
	Share        float64 `json:"share"`
	Count        int     `json:"count"` // 2xx responses
	LatencyP50Ms float64 `json:"latency_p50_ms"`
	LatencyP95Ms float64 `json:"latency_p95_ms"`
	LatencyP99Ms float64 `json:"latency_p99_ms"`
}

// compare fills in c's figures against the classic row cl.
func compare(c *Row, cl Row) {
	if cl.InstanceGBSeconds > 0 {
		v := 1 - c.InstanceGBSeconds/cl.InstanceGBSeconds
		c.VsClassic = &v
	}
	if cl.LatencyP99Ms > 0 {
		v := c.LatencyP99Ms / cl.LatencyP99Ms
		c.P99Ratio = &v
	}
}

// WriteTable writes the report as a table with a line on settings above
// it and one on CPU use below.
func (r Report) WriteTable(w io.Writer) error {
	rounds := "1 round"
	if r.Rounds > 1 {
		rounds = fmt.Sprintf("%d interleaved rounds", r.Rounds)
	}
	fmt.Fprintf(w, "%s arrivals (seed %d), %s per mode in %s\n", r.Arrivals, r.Seed, seconds(r.DurationSeconds), rounds)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\tmode\trate\tachieved\terrors\tp50 ms\tp95 ms\tp99 ms\tttfb p50\tttfb p99\tpeak inst\tlimit\tloops\tinst GB-s\tprov GB-s\tclassic GB-s\tcpu-s\tsavings\tvs classic\tp99 ratio")
	for _, row := range r.Rows {
		vs, ratio := "-", "-"
		if row.VsClassic != nil {
			vs = percent(*row.VsClassic)
		}
		if row.P99Ratio != nil {
			ratio = fmt.Sprintf("%.2fx", *row.P99Ratio)
		}
		fmt.Fprintf(tw, "%s\t%s\t%g\t%.1f\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\t%s\n",
			row.Workload, row.Mode, row.Rate, row.Achieved, row.Errors,
			row.LatencyP50Ms, row.LatencyP95Ms, row.LatencyP99Ms, row.TTFBP50Ms, row.TTFBP99Ms,
			row.PeakInstances, row.LearnedLimit, row.LearnedLoops, row.InstanceGBSeconds, row.ProvisionedGBSeconds, row.ClassicGBSeconds,
			row.ActiveCPUSeconds, percent(row.Savings), vs, ratio)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := r.writeRoutes(w); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "load generator + backend: %s of %d CPUs; instances (active CPU): %s\n",
		percent(r.LoadCPUShare), r.CPUs, percent(r.InstanceCPUShare))
	return err
}

// writeRoutes writes a table of the routes of the rows that have some.
func (r Report) writeRoutes(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := false
	for _, row := range r.Rows {
		for _, rt := range row.Routes {
			if !header {
				fmt.Fprintln(tw, "workload\tmode\trate\troute\tshare\tok\tp50 ms\tp95 ms\tp99 ms")
				header = true
			}
			fmt.Fprintf(tw, "%s\t%s\t%g\t%s\t%s\t%d\t%.1f\t%.1f\t%.1f\n", row.Workload, row.Mode, row.Rate,
				rt.Path, percent(rt.Share), rt.Count, rt.LatencyP50Ms, rt.LatencyP95Ms, rt.LatencyP99Ms)
		}
	}
	return tw.Flush()
}

// WriteJSON writes the report as indented JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// percent formats f as a percentage, with no "-0.0%".
func percent(f float64) string {
	p := math.Round(f*1000) / 10
	if p == 0 {
		p = 0 // not -0
	}
	return fmt.Sprintf("%.1f%%", p)
}

func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}

// percentiles returns the percentiles ps of ds in ms, computed as the
// platform's metering computes its own; zeros when ds is empty. It sorts ds.
func percentiles(ds []time.Duration, ps ...float64) []float64 {
	out := make([]float64, len(ps))
	for i, p := range ps {
		out[i] = float64(metering.Percentile(ds, p)) / float64(time.Millisecond)
	}
	return out
}
