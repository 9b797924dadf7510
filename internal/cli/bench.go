package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/bench"
)

func newBench() *cobra.Command {
	var cf clientFlags
	var jsonPath string
	cfg := bench.DefaultConfig()
	rates := []string{"50"}
	var list strings.Builder
	for _, w := range bench.Workloads() {
		fmt.Fprintf(&list, "\n  %-6s %s", w.Name, w.About)
	}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure what in-function concurrency saves against one invocation per instance",
		Long: `Measure what in-function concurrency saves against the classic model (one
invocation per instance). bench starts its own serve on loopback (or uses
the one at --url, which must run on this machine), deploys each workload
twice, as bench-NAME and as bench-NAME-classic ("concurrency": false), and
runs a backend the workloads call over real sockets. It sends each mode
the same open-loop arrivals at a mean --rate (Poisson by default) for
--duration, the modes taking turns over --rounds, and prints per workload,
rate and mode: achieved rate, errors, latency and time to first byte,
peak instances, GB-s and active CPU as the platform metered them, and
what concurrency saved. Workloads:` + list.String(),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Rates = nil
			for _, r := range rates {
				f, err := strconv.ParseFloat(r, 64)
				if err != nil {
					return fmt.Errorf("--rate %s: not a number", r)
				}
				cfg.Rates = append(cfg.Rates, f)
			}
			switch {
			case cf.url != "":
				c, _, err := cf.client()
				if err != nil {
					return err
				}
				cfg.Client = c
			case cf.token != "":
				return errors.New("--token needs --url")
			default:
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("find own binary: %w", err)
				}
				cfg.Binary = exe
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			rep, err := bench.Run(ctx, cfg, cmd.ErrOrStderr())
			if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
				return errors.New("interrupted")
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch jsonPath {
			case "":
				return rep.WriteTable(out)
			case "-":
				return rep.WriteJSON(out)
			}
			if err := writeFile(jsonPath, rep.WriteJSON); err != nil {
				return err
			}
			return rep.WriteTable(out)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&cfg.Workloads, "workloads", cfg.Workloads, "comma-separated workloads to run (see above)")
	f.StringSliceVar(&rates, "rate", rates, "comma-separated mean arrival rates, requests per second; each workload runs at each")
	f.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long each mode is measured per workload and rate, over all rounds")
	f.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "how many times the modes take turns (ABBA order)")
	f.StringVar(&cfg.Arrivals, "arrivals", cfg.Arrivals, "poisson (exponential gaps, bursty like real traffic) or constant (even gaps)")
	f.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the Poisson arrivals")
	f.IntVar(&cfg.BackendPort, "backend-port", 0, "loopback port of the benchmark's backend (0: any free one); with --url, a port that serve lets instances reach (serve --host-port)")
	f.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "unmeasured load at each rate, per mode, before its rounds (0: measure from cold)")
	f.StringVar(&jsonPath, "json", "", `also write the report as JSON to this file ("-": to stdout, instead of the table)`)
	cf.register(cmd)
	f.Lookup("url").Usage = "measure the serve at this URL instead of starting one (not $SHOAL_URL)"
	return cmd
}

// writeFile writes path with write, and reports the first error.
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
