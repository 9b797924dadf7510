package bench

import (
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/apiclient"
	"github.com/shoal-dev/shoal/internal/sandbox"
	"github.com/shoal-dev/shoal/internal/testutil"
)

func TestConfig_Defaults(t *testing.T) {
	d := DefaultConfig()
	if err := (Config{Binary: "shoal"}).withDefaults().Validate(); err != nil {
		t.Errorf("zero config with a binary: %v", err)
	}
	// A zero Warmup measures from cold; it is not taken for unset.
	d.Binary, d.Warmup = "shoal", 0
	if got := (Config{Binary: "shoal", Seed: 1}).withDefaults(); !reflect.DeepEqual(got, d) {
		t.Errorf("zero config with defaults: got %+v, want %+v", got, d)
	}
}

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string // in the error; "" for none
	}{
		{"defaults", func(*Config) {}, ""},
		{"all_workloads", func(c *Config) { c.Workloads = []string{"io", "seed", "ai", "cpu", "hello"} }, ""},
		{"existing_serve", func(c *Config) { c.Binary, c.Client = "", apiclient.New("http://127.0.0.1:1", "t") }, ""},
		{"unknown_workload", func(c *Config) { c.Workloads = []string{"io", "nope"} }, `unknown workload "nope": want some of io, seed, ai, cpu, hello`},
		{"no_workload", func(c *Config) { c.Workloads = []string{} }, "no workload"},
		{"workload_twice", func(c *Config) { c.Workloads = []string{"io", "io"} }, `workload "io" named twice`},
		{"no_rate", func(c *Config) { c.Rates = []float64{} }, "no rate"},
		{"zero_rate", func(c *Config) { c.Rates = []float64{50, 0} }, "rate 0: want a mean rate above 0"},
		{"negative_rate", func(c *Config) { c.Rates = []float64{-1} }, "rate -1"},
		{"arrivals", func(c *Config) { c.Arrivals = "bursty" }, `arrivals "bursty": want poisson or constant`},
		{"rounds", func(c *Config) { c.Rounds = -1 }, "rounds -1: want at least 1"},
		{"negative_duration", func(c *Config) { c.Duration = -time.Second }, "duration -1s"},
		{"short_rounds", func(c *Config) { c.Duration, c.Rounds = time.Second, 2 }, "duration 1s over 2 rounds: want at least 1s per round"},
		{"warmup", func(c *Config) { c.Warmup = -time.Second }, "warmup -1s"},
		{"no_serve", func(c *Config) { c.Binary = "" }, "no shoal binary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Binary = "shoal"
			tt.edit(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got %v, want no error", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v, want an error with %q", err, tt.want)
			}
		})
	}
}

// TestWorkloads checks that the embedded workloads are the listed ones and
// that node parses each, and the module they share.
func TestWorkloads(t *testing.T) {
	dirs, err := fs.ReadDir(workloadFiles, "workloads")
	if err != nil {
		t.Fatal(err)
	}
	var embedded, listed []string
	for _, d := range dirs {
		if d.IsDir() {
			embedded = append(embedded, d.Name())
		}
	}
	for _, w := range Workloads() {
		listed = append(listed, w.Name)
	}
	slices.Sort(embedded)
	slices.Sort(listed)
	if !slices.Equal(embedded, listed) {
		t.Errorf("embedded %v, listed %v", embedded, listed)
	}
	files := []string{"workloads/" + sharedFile}
	for _, w := range listed {
		files = append(files, "workloads/"+w+"/index.mjs")
	}
	for _, name := range files {
		t.Run(name, func(t *testing.T) {
			src, err := fs.ReadFile(workloadFiles, name)
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "index.mjs")
			if err := os.WriteFile(file, src, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("node", "--check", file).CombinedOutput(); err != nil {
				t.Errorf("node --check: %v\n%s", err, out)
			}
		})
	}
}

// TestRun_ExistingServe measures a serve the test started, as --url does,
// with a warm-up so that no cold start counts. Where its instances have a
// network namespace each, the serve lets them reach the backend's port,
// and without that port the benchmark says what to do.
func TestRun_ExistingServe(t *testing.T) {
	port := testutil.FreePort(t)
	s := testutil.StartServe(t, testutil.ServeOptions{Args: []string{"--host-port", strconv.Itoa(port)}})
	token, err := os.ReadFile(filepath.Join(s.DataDir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	client := apiclient.New(s.URL, strings.TrimSpace(string(token)))
	iso, err := client.Isolation(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range iso.Pieces {
		if p.Name != sandbox.PieceNetwork || !p.On {
			continue
		}
		_, err := Run(t.Context(), Config{Client: client, Workloads: []string{"io"}, Duration: time.Second, Rounds: 1}, nil)
		if err == nil || !strings.Contains(err.Error(), "--backend-port") {
			t.Errorf("no backend port for a serve with network namespaces: %v, want a hint at --backend-port", err)
		}
	}
	cfg := Config{
		BackendPort: port,
		Client:      client,
		Workloads:   []string{"hello", "mixed"},
		Rates:       []float64{10},
		Duration:    2 * time.Second,
		Rounds:      2,
		Arrivals:    Constant,
		Warmup:      time.Second,
	}
	var progress strings.Builder
	before := runtime.NumGoroutine()
	rep, err := Run(t.Context(), cfg, &progress)
	if err != nil {
		t.Fatal(err)
	}
	// apiclient keeps its connections in http.DefaultTransport.
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	testutil.Eventually(t, 5*time.Second, "Run's goroutines end", func() bool { return runtime.NumGoroutine() <= before })
	if len(rep.Rows) != 4 || rep.Rows[0].Mode != ModeConcurrent || rep.Rows[1].Mode != ModeClassic || rep.Rows[2].Workload != "mixed" {
		t.Fatalf("rows %+v, want hello then mixed, each concurrent then classic", rep.Rows)
	}
	for _, row := range rep.Rows[2:] {
		// Both routes, with the same draw in both modes.
		if len(row.Routes) != 2 || row.Routes[0].Path != "/io" || row.Routes[1].Path != "/cpu" ||
			row.Routes[0].Count+row.Routes[1].Count != row.Sent || row.Routes[1].Count == 0 ||
			(row.Sent == rep.Rows[2].Sent && row.Routes[0].Count != rep.Rows[2].Routes[0].Count) || row.Routes[1].LatencyP50Ms < 40 {
			t.Errorf("mixed %s routes %+v of %d sent, want /io and /cpu (50 ms of CPU) adding up", row.Mode, row.Routes, row.Sent)
		}
	}
	if rep.Rows[0].LearnedLimit < 1 || rep.Rows[1].LearnedLimit != 1 || rep.Rows[0].LearnedLoops < 1 || rep.Rows[1].LearnedLoops != 1 {
		t.Errorf("learned limits %d (concurrent), %d (classic), loops %d and %d; want some, and 1", rep.Rows[0].LearnedLimit, rep.Rows[1].LearnedLimit,
			rep.Rows[0].LearnedLoops, rep.Rows[1].LearnedLoops)
	}
	for _, row := range rep.Rows {
		// Constant arrivals at 10/s: 10 in each 1 s round. On a loaded
		// machine the generator's workers may all wait on cold starts and
		// send a few late, after the round (16 of 20 seen in CI beside the
		// isolated e2e tests): every one sent must be served and metered.
		if row.Sent < 14 || row.Sent > 20 || row.Errors != 0 || row.Invocations != row.Sent || row.Achieved < 7 || row.Achieved > 10 {
			t.Errorf("%s %s: sent %d, errors %d, invocations %d, achieved %g; want about 20 sent, 0 errors, all metered, about 10/s",
				row.Workload, row.Mode, row.Sent, row.Errors, row.Invocations, row.Achieved)
		}
		// Classic needs two or three at 10/s; on a loaded machine, where
		// the 50 ms of CPU and each cold start take longer, more start
		// while the first ones do (8 seen with isolation, beside the e2e
		// tests).
		if row.PeakInstances < 1 || row.PeakInstances > 12 || row.InstanceGBSeconds <= 0 || row.LatencyP50Ms <= 0 || row.TTFBP50Ms <= 0 {
			t.Errorf("%s: %+v; want an instance or a few and some GB-s, latency and TTFB", row.Mode, row)
		}
	}
	for _, want := range []string{"\rhello concurrent 10/s round 1/2", "\rhello classic 10/s round 1/2", "hello classic 10/s round 2/2", "sent 10  ok 10  errors 0"} {
		if !strings.Contains(progress.String(), want) {
			t.Errorf("progress %q lacks %q", progress.String(), want)
		}
	}
	if !strings.HasSuffix(progress.String(), "\n") {
		t.Errorf("progress %q does not end its line", progress.String())
	}
	if rep.LoadCPUShare <= 0 || rep.LoadCPUShare >= 1 || rep.CPUs < 1 || rep.WallSeconds < 4 {
		t.Errorf("load CPU share %g of %d CPUs over %g s; want some, below 1, over at least 4 s", rep.LoadCPUShare, rep.CPUs, rep.WallSeconds)
	}
}
