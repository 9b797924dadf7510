package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/runtime"
	"github.com/shoal-dev/shoal/internal/sandbox"
	"github.com/shoal-dev/shoal/internal/tunnel"
)

func newRuntime() *cobra.Command {
	var (
		id, tunnelAddr, bundle, workDir, dir, node string
		maxDuration                                time.Duration
		memory                                     int
		noHelpers                                  bool
	)
	cmd := &cobra.Command{
		Use:   "runtime",
		Short: "Run one instance (started by serve inside its sandbox)",
		Long: `Run one instance: start node with the bundle, dial the invoker's tunnel
with the one-time token from $SHOAL_TUNNEL_TOKEN, and serve invocations
until the tunnel or node goes away. serve starts this; users do not.`,
		Args:   cobra.NoArgs,
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			token := os.Getenv(sandbox.TokenEnv)
			env := make([]string, 0, len(os.Environ()))
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, sandbox.TokenEnv+"=") {
					env = append(env, kv)
				}
			}
			sup, err := runtime.Start(ctx, runtime.Config{
				Node: node, Bundle: bundle, WorkDir: workDir, Dir: dir, MaxDuration: maxDuration,
				MemoryMB: memory, NoHelpers: noHelpers, Env: env, Logs: cmd.OutOrStdout(),
			})
			if err != nil {
				return fmt.Errorf("instance %s: %w", id, err)
			}
			defer sup.Close()
			// serve removes the scratch folder too, unless it was killed.
			defer os.RemoveAll(dir)
			conn, err := tunnel.Dial(ctx, tunnelAddr, id, token)
			if err != nil {
				return fmt.Errorf("instance %s: %w", id, err)
			}
			tctx, cancel := context.WithCancel(ctx)
			defer cancel()
			go func() {
				// When node exits the instance is gone: Serve refuses new
				// invocations and lets the failed ones send their errors.
				select {
				case <-sup.Exited():
					cancel()
				case <-tctx.Done():
				}
			}()
			h := tunnel.WithReports(tctx, sup, func() tunnel.Report { return report(sup.Stats()) })
			tunnel.Serve(tctx, conn, tunnel.WithLoops(h, sup.SetLoops))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&id, "id", "", "instance id")
	f.StringVar(&tunnelAddr, "tunnel", "", "invoker tunnel address")
	f.StringVar(&bundle, "bundle", "", "bundled entry to run")
	f.StringVar(&workDir, "workdir", "", "node's working directory (default: the bundle's folder)")
	f.StringVar(&dir, "dir", "", "scratch folder")
	f.StringVar(&node, "node", "", "node binary (default: node from PATH)")
	f.DurationVar(&maxDuration, "max-duration", 60*time.Second, "bound of each invocation")
	f.IntVar(&memory, "memory", 0, "memory size in MB")
	f.BoolVar(&noHelpers, "no-helpers", false, "serve Node style handlers without the request and response helpers")
	for _, name := range []string{"id", "tunnel", "bundle", "dir"} {
		cmd.MarkFlagRequired(name)
	}
	return cmd
}

// report is the tunnel's form of the supervisor's stats.
func report(st runtime.Stats) tunnel.Report {
	r := tunnel.Report{
		TS: time.Now().UnixMilli(), CPUMs: st.CPU.Milliseconds(), NodeCPUMs: st.NodeCPU.Milliseconds(), RSS: st.RSS, InFlight: st.InFlight,
		Loops: st.Loops, HostIdleCPUs: st.HostIdle,
		LoopKnown:   st.LoopKnown,
		ELU:         st.Loop.Utilization,
		DelayMeanMs: float64(st.Loop.DelayMean) / float64(time.Millisecond),
		DelayMaxMs:  float64(st.Loop.DelayMax) / float64(time.Millisecond),
	}
	for _, w := range st.Waited {
		r.Waited = append(r.Waited, tunnel.Waited{ID: w.ID, From: w.From.UnixMilli(), To: w.To.UnixMilli()})
	}
	return r
}
