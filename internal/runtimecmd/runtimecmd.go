// Package runtimecmd is the runtime command, what runs beside each node
// process: it enters the instance's jail, starts node with the bundle, and
// reports node's load to serve over the tunnel until either goes away.
// Both binaries carry it: shoal-runtime, small, which serve starts when it
// sits beside shoal, and shoal itself (as shoal runtime) otherwise.
package runtimecmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/jail"
	"github.com/shoal-dev/shoal/internal/runtime"
	"github.com/shoal-dev/shoal/internal/runtime/bootstrap"
	"github.com/shoal-dev/shoal/internal/sandbox"
	"github.com/shoal-dev/shoal/internal/tunnel"
)

// New is the runtime command. serve starts it; users do not.
func New() *cobra.Command {
	var (
		id, tunnelAddr, bundle, workDir, dir, node string
		maxDuration                                time.Duration
		memory                                     int
		noHelpers, inCgroup, inJail, check         bool
		checkBundle, spare                         bool
		tunnelFD, nodeUID                          int
	)
	cmd := &cobra.Command{
		Use:   "runtime",
		Short: "Run one instance (started by serve inside its sandbox)",
		Long: `Run one instance: with --cgroup or --jail, wait for serve to hand over the
instance's cgroup and mounts and enter the jail; start node with the bundle;
then serve invocations on the tunnel (the inherited socket --tunnel-fd, or
a dial of --tunnel with the one-time token from $SHOAL_TUNNEL_TOKEN) until
the tunnel or node goes away. serve starts this; users do not.`,
		Args:   cobra.NoArgs,
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			// A runtime only supervises node and reports its load: one P
			// is plenty, and fewer threads keep its memory down.
			goruntime.GOMAXPROCS(1)
			var missing []string
			for _, f := range []struct{ name, value string }{{"id", id}, {"bundle", bundle}, {"dir", dir}} {
				if f.value == "" && (!spare || f.name == "dir") {
					missing = append(missing, strconv.Quote(f.name))
				}
			}
			if len(missing) > 0 {
				return fmt.Errorf("required flag(s) %s not set", strings.Join(missing, ", "))
			}
			if spare {
				id = "spare" // until serve says which instance it is
			}
			if tunnelFD > 0 {
				// node, started before the tunnel is used, must not
				// inherit it.
				syscall.CloseOnExec(tunnelFD)
			}
			var setup jail.Setup
			if inJail {
				// While serve makes the cgroup, or while a spare waits.
				if err := jail.Prepare(dir); err != nil {
					return fmt.Errorf("instance %s: jail: %w", id, err)
				}
			}
			if inCgroup || inJail || spare {
				var err error
				if setup, err = jail.Receive(jail.FdSetup, inJail, spare); err != nil {
					if spare && errors.Is(err, jail.ErrNoSetup) {
						return nil // not needed after all
					}
					return fmt.Errorf("instance %s: %w", id, err)
				}
			}
			var env []string
			if in := setup.Instance; in != nil {
				id, bundle, workDir, maxDuration, memory = in.ID, in.Bundle, in.WorkDir, in.MaxDuration, in.MemoryMB
				noHelpers, env, nodeUID = in.NoHelpers, in.Env, in.NodeUID
			} else {
				for _, kv := range os.Environ() {
					if !strings.HasPrefix(kv, sandbox.TokenEnv+"=") {
						env = append(env, kv)
					}
				}
			}
			if inJail {
				rel, err := filepath.Rel(workDir, bundle)
				if err != nil || !filepath.IsLocal(rel) {
					return fmt.Errorf("instance %s: bundle %s is not in %s", id, bundle, workDir)
				}
				if err := jail.Enter(jail.Config{Mounts: setup, Root: dir, Hostname: id, Node: node, TmpMB: tmpMB(memory), NodeUID: nodeUID, NodeTasks: sandbox.PidsMax - sandbox.RuntimeTasks}); err != nil {
					return fmt.Errorf("instance %s: jail: %w", id, err)
				}
				if err := jail.Lock(node); err != nil {
					return fmt.Errorf("instance %s: jail: %w", id, err)
				}
				dir = jail.Scratch
				workDir, bundle = jail.Task, filepath.Join(jail.Task, rel)
			}
			if check {
				if err := checkJail(ctx, node, workDir, nodeUID, cmd.ErrOrStderr()); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), sandbox.CheckPassed)
				return nil
			}
			token := os.Getenv(sandbox.TokenEnv)
			if checkBundle {
				return runBundleCheck(ctx, node, bundle, workDir, dir, env, memory, nodeUID, cmd.OutOrStdout())
			}
			sup, err := runtime.Start(ctx, runtime.Config{
				Node: node, Bundle: bundle, WorkDir: workDir, Dir: dir, MaxDuration: maxDuration,
				MemoryMB: memory, NoHelpers: noHelpers, Env: env, Logs: cmd.OutOrStdout(),
				NodeUID: nodeUID, ReapOrphans: inJail,
			})
			if err != nil {
				return fmt.Errorf("instance %s: %w", id, err)
			}
			defer sup.Close()
			// serve removes the scratch folder too, unless it was killed.
			defer os.RemoveAll(dir)
			conn, err := tunnelConn(ctx, tunnelFD, tunnelAddr, id, token)
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
			// Invocations go to node's sockets; the tunnel carries the
			// reports and the loops.
			h := tunnel.WithReports(tctx, http.NotFoundHandler(), func() tunnel.Report { return report(sup.Stats()) }, sup.Working())
			tunnel.Serve(tctx, conn, tunnel.WithLoops(h, sup.SetLoops))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&id, "id", "", "instance id")
	f.StringVar(&tunnelAddr, "tunnel", "", "invoker tunnel address, dialed with the token in $SHOAL_TUNNEL_TOKEN")
	f.IntVar(&tunnelFD, "tunnel-fd", 0, "inherited socket that is the tunnel (instead of --tunnel)")
	f.StringVar(&bundle, "bundle", "", "bundled entry to run")
	f.StringVar(&workDir, "workdir", "", "node's working directory (default: the bundle's folder)")
	f.StringVar(&dir, "dir", "", "scratch folder")
	f.StringVar(&node, "node", "", "node binary (default: node from PATH)")
	f.DurationVar(&maxDuration, "max-duration", 60*time.Second, "bound of each invocation")
	f.IntVar(&memory, "memory", 0, "memory size in MB")
	f.BoolVar(&noHelpers, "no-helpers", false, "serve Node style handlers without the request and response helpers")
	f.BoolVar(&inCgroup, "cgroup", false, "wait on fd 3 until serve has placed the runtime in its cgroup")
	f.BoolVar(&inJail, "jail", false, "enter the jail (namespaces made by serve, mounts handed over on fd 3) before node starts")
	f.BoolVar(&check, "check", false, "only check that node runs in the jail")
	f.BoolVar(&checkBundle, "check-bundle", false, "only load the bundle as an instance would, and print its config or why it cannot serve")
	f.BoolVar(&spare, "spare", false, "start as a spare: wait on fd 3 for the instance to run too (its id, bundle, environment...), which the flags otherwise give")
	f.IntVar(&nodeUID, "node-uid", 0, "uid (and gid) node runs as, inside the jail's user namespace (default: the runtime's)")
	f.String("of", "", "the data folder of the serve that started it, for ps to show; unused")
	cmd.MarkFlagsOneRequired("tunnel", "tunnel-fd")
	cmd.MarkFlagsMutuallyExclusive("tunnel", "tunnel-fd")
	return cmd
}

// tunnelConn is the tunnel, once node is ready: the inherited socket fd,
// on which it says so, else a dial of addr.
func tunnelConn(ctx context.Context, fd int, addr, id, token string) (net.Conn, error) {
	if fd == 0 {
		return tunnel.Dial(ctx, addr, id, token)
	}
	f := os.NewFile(uintptr(fd), "tunnel")
	// FileConn's copy is close-on-exec: node must not inherit the tunnel.
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("tunnel fd %d: %w", fd, err)
	}
	if err := tunnel.Ready(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// tmpMB sizes an instance's /tmp: a quarter of its memory, which it counts
// against, between 16 and 512 MB.
func tmpMB(memoryMB int) int {
	return max(16, min(512, memoryMB/4))
}

// checkJail runs node in the jail with jail.CheckScript.
func checkJail(ctx context.Context, node, workDir string, uid int, stderr io.Writer) error {
	c := exec.CommandContext(ctx, node, "-e", jail.CheckScript(uid))
	c.Dir = workDir
	c.Env = []string{"PATH=/usr/bin:/bin", "HOME=/tmp"}
	c.Stdout, c.Stderr = stderr, stderr
	if uid != 0 {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}}
	}
	if err := c.Run(); err != nil {
		return fmt.Errorf("node in the jail: %w", err)
	}
	return nil
}

// runBundleCheck loads the bundle with bootstrap.CheckAs, as an instance of
// memoryMB would, and prints the outcome as one sandbox.BundleCheck line;
// only a failure to check at all is an error.
func runBundleCheck(ctx context.Context, node, bundle, workDir, scratch string, env []string, memoryMB, uid int, stdout io.Writer) error {
	checked, err := bootstrap.CheckAs(ctx, node, bundle, workDir, scratch, env, memoryMB, uid)
	out := sandbox.BundleCheck{Type: sandbox.BundleCheckType, Config: checked.Config, CodeCache: checked.CodeCache}
	var ce *bootstrap.CheckError
	switch {
	case errors.As(err, &ce):
		out.Error = ce.Msg
	case err != nil:
		return err
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", b)
	return err
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
