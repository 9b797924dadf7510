package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/credentials"
	"github.com/shoal-dev/shoal/internal/fastlane"
	"github.com/shoal-dev/shoal/internal/gateway"
	"github.com/shoal-dev/shoal/internal/invoker"
	"github.com/shoal-dev/shoal/internal/metering"
	"github.com/shoal-dev/shoal/internal/observe"
	"github.com/shoal-dev/shoal/internal/runtime"
	"github.com/shoal-dev/shoal/internal/sandbox"
	"github.com/shoal-dev/shoal/internal/store"
	"github.com/shoal-dev/shoal/internal/tunnel"
)

// Config is everything `shoal serve` can be told.
type Config struct {
	// Listen is the client and control API address; "" means 127.0.0.1:3000.
	Listen string
	// DataDir holds the store, the token and the deployments; "" means .shoal.
	DataDir string
	// TunnelListen is where instances dial back; "" means 127.0.0.1:0.
	TunnelListen string
	// Exe is the binary started (with the arguments runtime ...) as each
	// instance's supervisor; "" means RuntimeBinary beside this process's
	// executable, else that executable.
	Exe string
	// Node is the node binary; "" means "node" from PATH.
	Node string
	// KeepAlive is how long an idle instance stays started; 0 means 5 min.
	KeepAlive time.Duration
	// MaxBodyBytes bounds a request body; 0 means 4.5 MB.
	MaxBodyBytes int64
	// MaxHeaderBytes bounds one request header, name and value; 0 means
	// 16 KB.
	MaxHeaderBytes int
	// MaxHeadersBytes bounds all request headers together; 0 means 32 KB.
	MaxHeadersBytes int
	// MaxURLBytes bounds the request target, path and query; 0 means 14 KB.
	MaxURLBytes int
	// MaxResponseBytes bounds a response with a Content-Length (a streamed
	// one is not bounded); 0 means 4.5 MB.
	MaxResponseBytes int64
	// SendTimeout bounds how long a client may take no bytes of a
	// response; 0 means gateway.DefaultSendTimeout.
	SendTimeout time.Duration
	// QueueSize, QueueTimeout and MaxInstances bound each deployment's
	// queue and instances; 0 means the invoker's defaults.
	QueueSize    int
	QueueTimeout time.Duration
	MaxInstances int
	// ShutdownTimeout bounds how long in-flight invocations may run on
	// after a stop was asked; 0 means 30 s.
	ShutdownTimeout time.Duration
	// IdleTimeout is how long a client's connection may stay open with no
	// request; 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Deploy lists project folders to deploy once serving.
	Deploy []string
	// Isolation is how isolated instances are; "" means sandbox.Off.
	Isolation sandbox.Mode
	// HostPorts are ports of the host's loopback that instances in a
	// network namespace of their own may reach (at network.HostAddr).
	HostPorts []uint16
	// Spares is how many runtimes are kept started ahead of cold starts;
	// 0: none.
	Spares int
}

// Run serves until ctx is done, then stops taking requests, lets in-flight
// invocations finish (bounded by ShutdownTimeout) and stops every instance.
// It writes the URL it serves on to stdout once it is ready.
func Run(ctx context.Context, cfg Config, stdout io.Writer, log *slog.Logger) (err error) {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:3000"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = ".shoal"
	}
	if cfg.TunnelListen == "" {
		cfg.TunnelListen = "127.0.0.1:0"
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 30 * time.Second
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Exe == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find own binary: %w", err)
		}
		cfg.Exe = runtimeExe(self)
		if filepath.Base(cfg.Exe) != RuntimeBinary {
			log.Info("instances run serve's own binary as their supervisor; "+RuntimeBinary+" beside it (CGO_ENABLED=0 go build -o bin/ ./cmd/...) takes half the memory or less", "binary", cfg.Exe)
		}
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	for _, d := range []string{dataDir, filepath.Join(dataDir, "deployments"), filepath.Join(dataDir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("data folder: %w", err)
		}
	}
	st, err := store.Open(ctx, filepath.Join(dataDir, "shoal.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	token, err := loadToken(dataDir)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	defer ln.Close()
	baseURL := urlOf(ln.Addr())
	if err := credentials.Save(token, baseURL, strings.Replace(baseURL, "127.0.0.1", "localhost", 1)); err != nil {
		log.Warn("could not record the token for the CLI", "err", err)
	}

	tl, err := tunnel.Listen(cfg.TunnelListen, log)
	if err != nil {
		return err
	}
	logs := observe.NewLogs(st, log)
	meter := metering.NewRecorder()
	metrics := observe.NewMetrics()
	sb, err := sandbox.New(sandbox.Config{
		Exe: cfg.Exe, Node: cfg.Node, Isolation: cfg.Isolation, HostPorts: cfg.HostPorts,
		Spares: cfg.Spares, Label: dataDir, Logs: collect(logs),
	})
	if err != nil {
		return err
	}
	defer sb.Close()
	isolation := sb.Report()
	fmt.Fprintln(stdout, isolation.Line())
	if isolation.Mode != sandbox.Off {
		for _, p := range isolation.Missing() {
			log.Warn("isolation: "+p.Name+" does not apply", "why", p.Detail)
		}
	}
	inv := invoker.New(invoker.Config{
		QueueSize:    cfg.QueueSize,
		QueueTimeout: cfg.QueueTimeout,
		KeepAlive:    cfg.KeepAlive,
		MaxInstances: cfg.MaxInstances,
	}, starter{sb, tl}, tl, meters{meter, metrics}, log)
	metrics.WatchLimits(func() map[string]observe.Learned {
		learned := map[string]observe.Learned{}
		for _, s := range inv.Stats() {
			if s.Current {
				l := learned[s.Project]
				learned[s.Project] = observe.Learned{Limit: max(l.Limit, s.Learned), Loops: max(l.Loops, s.MostLoops())}
			}
		}
		return learned
	})

	ctl := &control{isolation: isolation, sandbox: sb, store: st, inv: inv, logs: logs, meter: meter, dataDir: dataDir, baseURL: baseURL, node: cfg.Node, idKey: []byte(token), log: log}
	if err := ctl.restore(ctx); err != nil {
		inv.Close()
		return err
	}
	control := http.NewServeMux()
	control.Handle(MetricsPath, metrics.Handler())
	control.Handle("/", adminapi.New(token, ctl, log))
	gw := gateway.New(gateway.Config{
		MaxBodyBytes:     cfg.MaxBodyBytes,
		MaxHeaderBytes:   cfg.MaxHeaderBytes,
		MaxHeadersBytes:  cfg.MaxHeadersBytes,
		MaxURLBytes:      cfg.MaxURLBytes,
		MaxResponseBytes: cfg.MaxResponseBytes,
		SendTimeout:      cfg.SendTimeout,
	}, inv, control, log)
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           gw,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    gw.ServerMaxHeaderBytes(),
		Protocols:         &protocols,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	// The lane serves bodiless requests to functions; the control API,
	// whose handlers may want more of net/http, and all else go to srv.
	front := &fastlane.Server{HTTP: srv, Serves: func(r *http.Request) bool {
		return !strings.HasPrefix(r.URL.Path, gateway.APIPrefix)
	}}

	// Background parts, each stopped by cancelling bg and waited for.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	run := func(f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(bg); err != nil {
				log.Error("background part stopped", "err", err)
			}
		}()
	}
	run(tl.Run)
	run(func(ctx context.Context) error {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		return inv.Run(ctx, t.C)
	})
	run(func(ctx context.Context) error {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		return logs.Run(ctx, t.C)
	})
	defer func() {
		stopBG()
		wg.Wait()
	}()

	serveErr := make(chan error, 1)
	go func() { serveErr <- front.Serve(ln) }()

	for _, dir := range cfg.Deploy {
		d, err := ctl.DeployDir(ctx, dir)
		if err != nil {
			front.Close()
			return fmt.Errorf("deploy %s: %w", dir, err)
		}
		fmt.Fprintf(stdout, "deployed %s: %s\n", d.Project, d.URL)
	}
	fmt.Fprintf(stdout, "shoal serving on %s\n", baseURL)

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight invocations", "timeout", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := front.Shutdown(sctx); err != nil {
		front.Close()
	}
	return nil
}

// DefaultIdleTimeout is how long a client's connection stays open with no
// request: longer than the 60 s after which load balancers commonly close
// theirs (AWS's, for one), so that serve is not the side that closes a
// connection a balancer in front is about to send on.
const DefaultIdleTimeout = 2 * time.Minute

// MetricsPath serves the Prometheus metrics. Like the rest of serve it
// listens on loopback by default; it needs no token.
const MetricsPath = "/_shoal/metrics"

// meters hands every metering record to each of its meters.
type meters []invoker.Meter

func (ms meters) InstanceStarted(in metering.Instance) {
	for _, m := range ms {
		m.InstanceStarted(in)
	}
}

func (ms meters) InstanceStopped(instance string, now time.Time) {
	for _, m := range ms {
		m.InstanceStopped(instance, now)
	}
}

func (ms meters) InstanceSampled(instance string, at time.Time, cpu time.Duration, rss int64) {
	for _, m := range ms {
		m.InstanceSampled(instance, at, cpu, rss)
	}
}

func (ms meters) Invoked(inv metering.Invocation) {
	for _, m := range ms {
		m.Invoked(inv)
	}
}

func (ms meters) Waited(inv metering.Invocation) {
	for _, m := range ms {
		m.Waited(inv)
	}
}

// urlOf is the URL clients on this machine use for addr.
func urlOf(addr net.Addr) string {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return "http://" + addr.String()
	}
	host := ta.IP.String()
	if ta.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, fmt.Sprint(ta.Port))
}

// loadToken reads the control API token from the data folder, creating it
// on first start.
func loadToken(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "token")
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read token: %w", err)
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	token := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write token: %w", err)
	}
	return token, nil
}

var _ invoker.Counted = (*sandbox.Process)(nil)

// starter adapts the sandbox to the invoker.
type starter struct {
	sb *sandbox.Sandbox
	tl *tunnel.Listener
}

func (s starter) Start(ctx context.Context, l invoker.Launch) (invoker.Process, error) {
	return s.sb.Start(ctx, sandbox.Spec{
		ID:          l.Instance,
		Project:     l.Deployment.Project,
		Deployment:  l.Deployment.ID,
		Bundle:      filepath.Join(l.Deployment.Dir, filepath.FromSlash(l.Function.Bundle)),
		WorkDir:     l.Deployment.Dir,
		Env:         l.Deployment.Env,
		MaxDuration: l.Function.Config.MaxDuration,
		MemoryMB:    l.Function.Config.MemoryMB,
		NoHelpers:   l.Function.Config.NoHelpers,
		TunnelAddr:  l.TunnelAddr,
		Token:       l.Token,
		Tunnel:      func(c net.Conn) { s.tl.Adopt(l.Instance, c) },
	})
}

// collect turns what a runtime writes into stored log lines.
func collect(logs *observe.Logs) func(s *sandbox.Spec, stream string, line []byte) {
	return func(s *sandbox.Spec, stream string, line []byte) {
		l := store.LogLine{Project: s.Project, Deployment: s.Deployment, Instance: s.ID}
		var rec runtime.Record
		if stream == "stdout" && json.Unmarshal(line, &rec) == nil && rec.Type == "log" {
			l.Time = time.UnixMilli(rec.TS).UTC()
			l.Invocation, l.Stream, l.Message = rec.ID, rec.Stream, rec.Msg
		} else {
			l.Time = time.Now().UTC()
			l.Stream, l.Message = "system", string(line)
		}
		logs.Add(l)
	}
}

// RuntimeBinary is the small binary that runs beside each node process,
// which serve prefers to itself when it sits in the same folder.
const RuntimeBinary = "shoal-runtime"

// runtimeExe is what each instance runs as its supervisor: RuntimeBinary
// beside self (serve's binary) if it is there, else self (as shoal
// runtime), which links all of serve and so maps three times the memory.
func runtimeExe(self string) string {
	small := filepath.Join(filepath.Dir(self), RuntimeBinary)
	if fi, err := os.Stat(small); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return small
	}
	return self
}
