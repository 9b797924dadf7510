package server

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/archive"
	"github.com/shoal-dev/shoal/internal/build"
	"github.com/shoal-dev/shoal/internal/invoker"
	"github.com/shoal-dev/shoal/internal/metering"
	"github.com/shoal-dev/shoal/internal/model"
	"github.com/shoal-dev/shoal/internal/observe"
	"github.com/shoal-dev/shoal/internal/routes"
	"github.com/shoal-dev/shoal/internal/runtime/bootstrap"
	"github.com/shoal-dev/shoal/internal/sandbox"
	"github.com/shoal-dev/shoal/internal/store"
)

// maxProjectBytes bounds an unpacked project folder.
const maxProjectBytes = 1 << 30

// control carries out what the control API asks.
type control struct {
	// immutable
	isolation sandbox.Report
	sandbox   *sandbox.Sandbox
	store     *store.Store
	inv       *invoker.Invoker
	logs      *observe.Logs
	meter     *metering.Recorder
	dataDir   string
	baseURL   string
	node      string // the node binary; "" means "node" from PATH
	idKey     []byte // keys the hash that names a deployment
	log       *slog.Logger
}

func (c *control) projectURL(name string) string { return c.baseURL + "/" + name + "/" }

func (c *control) deploymentDir(id string) string {
	return filepath.Join(c.dataDir, "deployments", id)
}

// restore puts every project's current deployment back in service.
func (c *control) restore(ctx context.Context) error {
	ps, err := c.store.Projects(ctx)
	if err != nil {
		return fmt.Errorf("restore projects: %w", err)
	}
	for _, p := range ps {
		d, err := c.store.Deployment(ctx, p.Current)
		if err != nil {
			return fmt.Errorf("restore project %s: %w", p.Name, err)
		}
		served, err := c.invokerDeployment(d)
		if err != nil {
			return fmt.Errorf("restore project %s: %w", p.Name, err)
		}
		c.inv.Deploy(served)
	}
	return nil
}

// invokerDeployment is what the invoker needs of d, its routes built.
func (c *control) invokerDeployment(d store.Deployment) (invoker.Deployment, error) {
	served := invoker.Deployment{ID: d.ID, Project: d.Project, Dir: c.deploymentDir(d.ID), Env: d.Env, Functions: d.Functions}
	if d.Routed {
		files := make([]string, len(d.Functions))
		for i, fn := range d.Functions {
			files[i] = fn.File
		}
		t, err := routes.New(files)
		if err != nil {
			return invoker.Deployment{}, fmt.Errorf("deployment %s: %w", d.ID, err)
		}
		served.Routes = t
	}
	return served, nil
}

// Deploy unpacks, builds and puts in service one project upload, with the
// project's environment variables as they are now.
func (c *control) Deploy(ctx context.Context, project string, upload io.Reader) (api.Deployment, error) {
	if err := model.ValidateProjectName(project); err != nil {
		return api.Deployment{}, fmt.Errorf("%w: %v", adminapi.ErrBadRequest, err)
	}
	env, err := c.deployEnv(ctx, project)
	if err != nil {
		return api.Deployment{}, err
	}
	work, err := os.MkdirTemp(filepath.Join(c.dataDir, "tmp"), "deploy-")
	if err != nil {
		return api.Deployment{}, err
	}
	defer os.RemoveAll(work)
	src := filepath.Join(work, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		return api.Deployment{}, err
	}
	if err := archive.Unpack(upload, src, maxProjectBytes); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) || ctx.Err() != nil {
			return api.Deployment{}, err
		}
		return api.Deployment{}, fmt.Errorf("%w: %v", adminapi.ErrBadRequest, err)
	}
	checked := map[string]codeCache{} // by bundle
	inspect := func(ctx context.Context, bundle string, memoryMB int) (json.RawMessage, error) {
		out, err := c.check(ctx, project, work, src, bundle, env, memoryMB)
		checked[bundle] = codeCache{memoryMB, out.CodeCache}
		return out.Config, err
	}
	res, err := build.Build(ctx, src, build.Options{Inspect: inspect})
	if be, ok := errors.AsType[*build.Error](err); ok {
		return api.Deployment{}, &adminapi.BuildError{Msg: "build failed: " + be.Error()}
	}
	if _, ok := errors.AsType[*bootstrap.CheckError](err); ok {
		return api.Deployment{}, &adminapi.BuildError{Msg: "deploy failed: " + err.Error()}
	}
	if err != nil {
		return api.Deployment{}, fmt.Errorf("build %s: %w", project, err)
	}
	// The same project, code and variables give the same id. The hash is
	// keyed, so that an id, which users see, tells nothing of the
	// variables' values.
	mac := hmac.New(sha256.New, c.idKey)
	mac.Write([]byte(project + "\x00" + res.Digest + "\x00" + strings.Join(env, "\x00")))
	id := "d-" + hex.EncodeToString(mac.Sum(nil)[:6])
	final := c.deploymentDir(id)
	if _, err := os.Stat(final); errors.Is(err, os.ErrNotExist) {
		c.writeCodeCaches(ctx, project, work, src, src, env, res.Functions, checked)
		if err := os.Rename(src, final); err != nil {
			return api.Deployment{}, fmt.Errorf("store deployment: %w", err)
		}
	} else {
		// The same deployment again: its caches are made anew, for a node
		// that may have changed since.
		c.writeCodeCaches(ctx, project, work, src, final, env, res.Functions, checked)
	}
	d := store.Deployment{ID: id, Project: project, Routed: res.Routed, Functions: res.Functions, Env: env}
	served, err := c.invokerDeployment(d)
	if err != nil {
		return api.Deployment{}, err
	}
	if err := c.store.Deploy(ctx, d); err != nil {
		return api.Deployment{}, err
	}
	c.inv.Deploy(served)
	c.log.Info("deployed", "project", project, "deployment", id, "entry", res.Entry, "functions", len(res.Functions))
	out := api.Deployment{ID: id, Project: project, URL: c.projectURL(project), Entry: res.Entry}
	if res.Routed {
		for _, fn := range res.Functions {
			p, _ := routes.Pattern(fn.File) // the build checked it
			out.Routes = append(out.Routes, api.Route{Path: p, File: fn.File})
		}
	}
	return out, nil
}

// checkTimeout bounds how long a bundle's top-level code may take to load at
// deploy.
const checkTimeout = 30 * time.Second

// check loads a bundle in node, as an instance of memoryMB would, with the
// deployment's environment and src as its working directory: in an
// instance's sandbox where instances have one. It returns the bundle's
// `config` export and code cache, and a *bootstrap.CheckError when the
// bundle fails to load or exports nothing that serves.
func (c *control) check(ctx context.Context, project, work, src, bundle string, env []string, memoryMB int) (bootstrap.Checked, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	if c.sandbox.ChecksBundles() {
		var id [6]byte
		rand.Read(id[:])
		return c.sandbox.CheckBundle(ctx, sandbox.Spec{
			ID: "check-" + hex.EncodeToString(id[:]), Project: project, Deployment: "check",
			WorkDir: src, Bundle: bundle, Env: env, MemoryMB: memoryMB, MaxDuration: checkTimeout,
		})
	}
	scratch, err := os.MkdirTemp(work, "check-")
	if err != nil {
		return bootstrap.Checked{}, err
	}
	defer os.RemoveAll(scratch)
	return bootstrap.Check(ctx, c.node, bundle, src, scratch, sandbox.FunctionEnv(scratch, env), memoryMB)
}

// codeCache is the V8 code cache a check made for a bundle (nil for an ES
// module), with the memory of the instance it checked as.
type codeCache struct {
	memoryMB int
	data     []byte
}

// writeCodeCaches writes each function's code cache beside its bundle in
// dst, the deployment built in src (bootstrap.WriteCodeCache), outside the
// digest, which is of the code. V8 takes a cache only from a
// node with the same flags, which depend on the memory: where a function's
// config export set another memory than it was checked with, it is
// checked again with that one. A cache that cannot be made is logged and
// left out: instances then compile the bundle.
func (c *control) writeCodeCaches(ctx context.Context, project, work, src, dst string, env []string, fns []model.Function, checked map[string]codeCache) {
	for _, fn := range fns {
		bundle := filepath.Join(src, filepath.FromSlash(fn.Bundle))
		cc := checked[bundle]
		if cc.data != nil && cc.memoryMB != fn.Config.MemoryMB {
			out, err := c.check(ctx, project, work, src, bundle, env, fn.Config.MemoryMB)
			if err != nil {
				c.log.Warn("code cache not made", "project", project, "function", fn.File, "err", err)
				continue
			}
			cc.data = out.CodeCache
		}
		if cc.data == nil {
			if strings.HasSuffix(bundle, ".cjs") {
				c.log.Warn("code cache not made", "project", project, "function", fn.File)
			}
			continue
		}
		if err := bootstrap.WriteCodeCache(filepath.Join(dst, filepath.FromSlash(fn.Bundle)), cc.data); err != nil {
			c.log.Warn("code cache not written", "project", project, "function", fn.File, "err", err)
		}
	}
}

// DeployDir deploys a folder on this machine, named after the folder.
func (c *control) DeployDir(ctx context.Context, dir string) (api.Deployment, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return api.Deployment{}, err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(archive.Pack(abs, pw)) }()
	defer pr.Close()
	return c.Deploy(ctx, filepath.Base(abs), pr)
}

// Projects lists the projects.
func (c *control) Projects(ctx context.Context) ([]api.Project, error) {
	ps, err := c.store.Projects(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Project, len(ps))
	for i, p := range ps {
		out[i] = api.Project{Name: p.Name, Deployment: p.Current, URL: c.projectURL(p.Name), UpdatedAt: p.UpdatedAt}
	}
	return out, nil
}

// Remove takes a project out of service and deletes it.
func (c *control) Remove(ctx context.Context, project string) error {
	if err := c.store.DeleteProject(ctx, project); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("project %q: %w", project, adminapi.ErrNotFound)
		}
		return err
	}
	c.inv.Remove(project)
	return nil
}

// Logs reads the project's stored log lines.
func (c *control) Logs(ctx context.Context, project string, after int64, limit int, wait bool) ([]api.LogLine, error) {
	if _, err := c.store.Project(ctx, project); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("project %q: %w", project, adminapi.ErrNotFound)
		}
		return nil, err
	}
	lines, err := c.logs.Read(ctx, project, after, limit, wait)
	if err != nil {
		return nil, err
	}
	out := make([]api.LogLine, len(lines))
	for i, l := range lines {
		out[i] = api.LogLine{ID: l.ID, Time: l.Time, Deployment: l.Deployment, Instance: l.Instance,
			Invocation: l.Invocation, Stream: l.Stream, Message: l.Message}
	}
	return out, nil
}

// Usage computes what the project's deployments cost since then.
func (c *control) Usage(ctx context.Context, project string, since, until time.Time) (api.Usage, error) {
	ds, err := c.store.Deployments(ctx, project)
	if err != nil {
		return api.Usage{}, err
	}
	if len(ds) == 0 {
		return api.Usage{}, fmt.Errorf("project %q: %w", project, adminapi.ErrNotFound)
	}
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	u := c.meter.Usage(ids, since, until)
	limits, learned, loops, learnedLoops := []int{}, 0, []int{}, 0
	stats := c.inv.Stats()
	slices.SortFunc(stats, func(a, b invoker.Stats) int { return strings.Compare(a.Function, b.Function) })
	for _, st := range stats {
		if st.Project == project && st.Current {
			limits, learned = append(limits, st.Limits...), max(learned, st.Learned)
			loops, learnedLoops = append(loops, st.Loops...), max(learnedLoops, st.MostLoops())
		}
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	instances := make([]api.InstanceUsage, len(u.Instances))
	for i, in := range u.Instances {
		instances[i] = api.InstanceUsage{ID: in.Instance, MemoryMB: in.MemoryMB, Started: in.Start,
			BusySeconds: in.Busy.Seconds(), CPUSeconds: in.CPU.Seconds(), PeakRSSMB: float64(in.PeakRSS) / (1 << 20)}
		if !in.End.IsZero() {
			instances[i].Stopped = &in.End
		}
	}
	return api.Usage{
		Project: project, Since: u.Since, Until: u.Until,
		Invocations: u.Invocations, Errors: u.Errors,
		InstanceGBSeconds: u.InstanceGBSeconds, ProvisionedGBSeconds: u.ProvisionedGBSeconds,
		ClassicGBSeconds: u.ClassicGBSeconds, ActiveCPUSeconds: u.ActiveCPU.Seconds(), Savings: u.Savings(),
		PeakInstances: u.PeakInstances, PeakRSSMB: float64(u.PeakRSS) / (1 << 20),
		ConcurrencyLimits: limits, LearnedLimit: learned, EventLoops: loops, LearnedLoops: learnedLoops, Instances: instances,
		LatencyP50Ms: ms(u.LatencyP50), LatencyP99Ms: ms(u.LatencyP99), TTFBP50Ms: ms(u.TTFBP50), TTFBP99Ms: ms(u.TTFBP99),
	}, nil
}

var _ adminapi.Control = (*control)(nil)

func (c *control) Isolation() api.Isolation {
	iso := api.Isolation{Mode: string(c.isolation.Mode)}
	for _, p := range c.isolation.Pieces {
		iso.Pieces = append(iso.Pieces, api.IsolationPiece{Name: p.Name, On: p.On, Detail: p.Detail})
	}
	return iso
}
