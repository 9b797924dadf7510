package cli

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	goruntime "runtime"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/gateway"
	"github.com/shoal-dev/shoal/internal/invoker"
	"github.com/shoal-dev/shoal/internal/network"
	"github.com/shoal-dev/shoal/internal/sandbox"
	"github.com/shoal-dev/shoal/internal/server"
)

func newServe() *cobra.Command {
	var cfg server.Config
	var verbose bool
	var isolation string
	var hostPorts []int
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the whole platform on this machine",
		Long: `Run the whole platform on this machine: the gateway, the control API and
the instances of every deployed project. SIGTERM or SIGINT stops taking
requests, lets in-flight invocations finish and stops every instance.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			setProcs()
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			mode, err := sandbox.ParseMode(isolation)
			if err != nil {
				return err
			}
			cfg.Isolation = mode
			if cfg.Spares < 0 {
				return fmt.Errorf("--spares %d: want 0 or more", cfg.Spares)
			}
			for _, p := range hostPorts {
				if p < 1 || p > 65535 {
					return fmt.Errorf("--host-port %d: want a port from 1 to 65535", p)
				}
				cfg.HostPorts = append(cfg.HostPorts, uint16(p))
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			return server.Run(ctx, cfg, cmd.OutOrStdout(), log)
		},
	}
	d := invoker.DefaultConfig()
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:3000", "address for clients and the control API")
	f.StringVar(&cfg.DataDir, "data", ".shoal", "data folder: store, token, deployments")
	f.StringVar(&cfg.TunnelListen, "tunnel-listen", "127.0.0.1:0", "address instances dial back to")
	f.StringVar(&cfg.Node, "node", "", "node binary (default: node from PATH)")
	f.DurationVar(&cfg.KeepAlive, "keep-alive", d.KeepAlive, "how long an idle instance stays started")
	f.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", gateway.DefaultMaxBodyBytes, "request body limit in bytes")
	f.IntVar(&cfg.MaxHeaderBytes, "max-header-bytes", gateway.DefaultMaxHeaderBytes, "limit of one request header (name and value) in bytes")
	f.IntVar(&cfg.MaxHeadersBytes, "max-headers-bytes", gateway.DefaultMaxHeadersBytes, "limit of all request headers together in bytes")
	f.IntVar(&cfg.MaxURLBytes, "max-url-bytes", gateway.DefaultMaxURLBytes, "request URL (path and query) limit in bytes")
	f.Int64Var(&cfg.MaxResponseBytes, "max-response-bytes", gateway.DefaultMaxResponseBytes, "limit of a response with a Content-Length in bytes; streamed responses are not limited")
	f.DurationVar(&cfg.SendTimeout, "send-timeout", gateway.DefaultSendTimeout, "how long a client may take none of a response before it is cut off and the invocation ends")
	f.IntVar(&cfg.QueueSize, "queue-size", d.QueueSize, "invocations of one deployment that may wait for a slot")
	f.DurationVar(&cfg.QueueTimeout, "queue-timeout", d.QueueTimeout, "how long an invocation may wait for a slot")
	f.IntVar(&cfg.MaxInstances, "max-instances", d.MaxInstances, "instances of one deployment at most")
	f.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 30e9, "how long in-flight invocations may finish after a stop")
	f.DurationVar(&cfg.IdleTimeout, "idle-timeout", server.DefaultIdleTimeout, "how long a client's connection may stay open with no request")
	f.StringArrayVar(&cfg.Deploy, "deploy", nil, "project folder to deploy at start (repeatable)")
	f.IntSliceVar(&hostPorts, "host-port", nil, "a TCP port of the host's loopback that instances in a network namespace may reach, at "+network.HostAddr.String()+" (repeatable; a database on this machine)")
	f.StringVar(&isolation, "isolation", string(sandbox.Auto), "how instances are isolated: auto (what this host allows, with a warning for each missing piece), strict (refuse to start without every piece) or off")
	f.IntVar(&cfg.Spares, "spares", 1, "runtimes kept started ahead, each waiting to become a new instance: a cold start then skips a process start (0: none)")
	f.BoolVar(&verbose, "verbose", false, "log debug detail")
	// The tests' serve runs under the race detector and its instances
	// from a build without it, which starts a second sooner.
	f.StringVar(&cfg.Exe, "runtime-exe", "", "binary each instance runs as its supervisor, with the arguments runtime ... (default: shoal-runtime beside this binary, else this one)")
	return cmd
}

// setProcs gives serve's Go scheduler half the CPUs (at least one) unless
// $GOMAXPROCS says otherwise: node, the functions' code, needs the rest, and
// a scheduler with fewer Ps parks and wakes fewer threads per invocation.
// On 2 cores, GOMAXPROCS=1 took hello through shoal from 37% to 43% of bare
// node's req/s and the p50 added from 193 to 95 µs (bench/hello.sh).
func setProcs() {
	if os.Getenv("GOMAXPROCS") == "" {
		goruntime.GOMAXPROCS(max(1, goruntime.GOMAXPROCS(0)/2))
	}
}
