package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// sampleReport is a hand-made report of one workload at one rate.
func sampleReport() Report {
	conc := Row{
		Workload: "io", Mode: ModeConcurrent, Rate: 20, Achieved: 19.8, Sent: 120,
		Invocations: 120, LatencyP50Ms: 101.25, LatencyP95Ms: 110, LatencyP99Ms: 120,
		TTFBP50Ms: 100.5, TTFBP95Ms: 109, TTFBP99Ms: 119, PeakInstances: 1,
		InstanceGBSeconds: 5, ProvisionedGBSeconds: 6, ClassicGBSeconds: 12, ActiveCPUSeconds: 0.5,
		Savings: 1 - 5.0/12, LearnedLimit: 37, LearnedLoops: 3,
		Routes: []RouteRow{
			{Path: "/io", Share: 0.8, Count: 96, LatencyP50Ms: 101, LatencyP95Ms: 105, LatencyP99Ms: 110},
			{Path: "/cpu", Share: 0.2, Count: 24, LatencyP50Ms: 51, LatencyP95Ms: 60, LatencyP99Ms: 70.25},
		},
	}
	classic := Row{
		Workload: "io", Mode: ModeClassic, Rate: 20, Achieved: 19.5, Sent: 120, Errors: 2,
		Invocations: 120, LatencyP50Ms: 130, LatencyP95Ms: 900, LatencyP99Ms: 1200,
		TTFBP50Ms: 129, TTFBP95Ms: 899, TTFBP99Ms: 1199, PeakInstances: 9,
		InstanceGBSeconds: 20, ProvisionedGBSeconds: 80, ClassicGBSeconds: 20, ActiveCPUSeconds: 4,
		LearnedLimit: 1, LearnedLoops: 1,
	}
	compare(&conc, classic)
	return Report{
		Arrivals: Poisson, Seed: 1, Rounds: 2, DurationSeconds: 6,
		Rows: []Row{conc, classic},
		CPUs: 2, WallSeconds: 14, LoadCPUSeconds: 0.28, LoadCPUShare: 0.01, InstanceCPUShare: 0.161,
	}
}

func TestCompare(t *testing.T) {
	rep := sampleReport()
	conc := rep.Rows[0]
	if conc.VsClassic == nil || *conc.VsClassic != 0.75 {
		t.Errorf("vs classic: got %v, want 1 - 5/20 = 0.75", conc.VsClassic)
	}
	if conc.P99Ratio == nil || *conc.P99Ratio != 0.1 {
		t.Errorf("p99 ratio: got %v, want 120/1200 = 0.1", conc.P99Ratio)
	}
	var zero Row
	compare(&zero, Row{})
	if zero.VsClassic != nil || zero.P99Ratio != nil {
		t.Errorf("against a classic row of zeros: got %v, %v; want nil, nil", zero.VsClassic, zero.P99Ratio)
	}
}

func TestReport_WriteTable(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleReport().WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 8 {
		t.Fatalf("got %d lines, want settings, header, 2 rows, routes header, 2 routes, CPU:\n%s", len(lines), buf.String())
	}
	if want := "poisson arrivals (seed 1), 6s per mode in 2 interleaved rounds"; lines[0] != want {
		t.Errorf("settings line %q, want %q", lines[0], want)
	}
	header := strings.Join(strings.Fields(lines[1]), " ")
	if want := "workload mode rate achieved errors p50 ms p95 ms p99 ms ttfb p50 ttfb p99 peak inst limit loops inst GB-s prov GB-s classic GB-s cpu-s savings vs classic p99 ratio"; header != want {
		t.Errorf("header %q, want %q", header, want)
	}
	tests := []struct {
		name string
		line string
		want []string
	}{
		{"concurrent", lines[2], []string{"io", "concurrent", "20", "19.8", "0", "101.2", "110.0", "120.0", "100.5", "119.0", "1", "37", "3", "5.00", "6.00", "12.00", "0.50", "58.3%", "75.0%", "0.10x"}},
		{"routes_header", lines[4], []string{"workload", "mode", "rate", "route", "share", "ok", "p50", "ms", "p95", "ms", "p99", "ms"}},
		{"route_io", lines[5], []string{"io", "concurrent", "20", "/io", "80.0%", "96", "101.0", "105.0", "110.0"}},
		{"route_cpu", lines[6], []string{"io", "concurrent", "20", "/cpu", "20.0%", "24", "51.0", "60.0", "70.2"}},
		{"classic", lines[3], []string{"io", "classic", "20", "19.5", "2", "130.0", "900.0", "1200.0", "129.0", "1199.0", "9", "1", "1", "20.00", "80.00", "20.00", "4.00", "0.0%", "-", "-"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Fields(tt.line); strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("row %q, want the cells %q", tt.line, tt.want)
			}
		})
	}
	// Columns line up: each row's mode starts where the header's does.
	col := strings.Index(lines[1], "mode")
	for _, l := range lines[2:4] {
		if !strings.HasPrefix(l[col:], "c") {
			t.Errorf("row %q: no mode at column %d", l, col)
		}
	}
	if want := "load generator + backend: 1.0% of 2 CPUs; instances (active CPU): 16.1%"; lines[7] != want {
		t.Errorf("CPU line %q, want %q", lines[7], want)
	}
}

func TestReport_WriteJSON(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleReport().WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%v:\n%s", err, buf.String())
	}
	for _, k := range []string{"arrivals", "seed", "rounds", "duration_seconds", "rows", "cpus", "wall_seconds", "load_cpu_seconds", "load_cpu_share", "instance_cpu_share"} {
		if _, ok := got[k]; !ok {
			t.Errorf("no key %q in %s", k, buf.String())
		}
	}
	rows, _ := got["rows"].([]any)
	if len(rows) != 2 {
		t.Fatalf("got %d rows, want 2", len(rows))
	}
	keys := []string{"workload", "mode", "rate", "achieved", "sent", "errors", "invocations",
		"latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "ttfb_p50_ms", "ttfb_p95_ms", "ttfb_p99_ms",
		"peak_instances", "instance_gb_seconds", "provisioned_gb_seconds", "classic_gb_seconds",
		"active_cpu_seconds", "savings", "learned_limit", "learned_loops"}
	conc, classic := rows[0].(map[string]any), rows[1].(map[string]any)
	for _, k := range keys {
		if _, ok := conc[k]; !ok {
			t.Errorf("concurrent row: no key %q", k)
		}
		if _, ok := classic[k]; !ok {
			t.Errorf("classic row: no key %q", k)
		}
	}
	if len(conc) != len(keys)+3 || conc["vs_classic"] != 0.75 || conc["p99_ratio"] != 0.1 || len(conc["routes"].([]any)) != 2 {
		t.Errorf("concurrent row %v: want %d keys with vs_classic 0.75, p99_ratio 0.1 and 2 routes", conc, len(keys)+3)
	}
	if len(classic) != len(keys) {
		t.Errorf("classic row %v: want %d keys, without vs_classic, p99_ratio and routes", classic, len(keys))
	}
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || back.Rows[1].PeakInstances != 9 {
		t.Errorf("report does not read back: %v %+v", err, back)
	}
}

func TestPercentiles(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	var hundred []time.Duration
	for i := 100; i >= 1; i-- {
		hundred = append(hundred, time.Duration(i)*time.Millisecond)
	}
	tests := []struct {
		name string
		ds   []time.Duration
		want []float64
	}{
		{"empty", nil, []float64{0, 0, 0}},
		{"one", ms(7), []float64{7, 7, 7}},
		{"unsorted_hundred", hundred, []float64{50, 95, 99}},
		{"four", ms(4, 1, 3, 2), []float64{2, 4, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := percentiles(tt.ds, 0.50, 0.95, 0.99)
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("got %v, want %v", got, tt.want)
					break
				}
			}
		})
	}
}
