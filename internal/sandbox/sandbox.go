package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-dev/shoal/internal/jail"
	"github.com/shoal-dev/shoal/internal/network"
	"github.com/shoal-dev/shoal/internal/runtime"
)

// TokenEnv is the environment variable that carries the one-time tunnel
// token to the runtime, which removes it before it starts node.
const TokenEnv = "SHOAL_TUNNEL_TOKEN"

// Config says how instances are started.
type Config struct {
	// Exe is the shoal binary. Required.
	Exe string
	// Node is the node binary the runtime starts; "" means "node" from PATH.
	Node string
	// Isolation is how isolated instances are; "" means Off.
	Isolation Mode
	// HostPorts are the host's loopback ports that instances with a
	// network namespace reach, at network.HostAddr.
	HostPorts []uint16
	// Probe makes a sandbox that only reports what applies, as shoal
	// doctor does: it sets up nothing lasting on the host (no IPv4
	// forwarding, rules or spare network namespaces).
	Probe bool
	// Spares is how many runtimes are kept started ahead, each waiting to
	// learn which instance it is: a cold start then skips the runtime's
	// process start (and its namespaces' and cgroup's making).
	Spares int
	// Label is named on each runtime's command line (--of), so ps tells
	// whose it is: serve's data folder.
	Label string
	// Logs receives every line the runtime writes: stream "stdout" lines are
	// JSON log records, "stderr" lines the runtime's own text. The line is
	// valid only during the call. Nil drops them.
	Logs func(s *Spec, stream string, line []byte)
}

// Spec is one instance to start.
type Spec struct {
	ID         string
	Project    string
	Deployment string
	Bundle     string
	// WorkDir is node's working directory: the deployment folder.
	WorkDir     string
	MaxDuration time.Duration
	MemoryMB    int
	// NoHelpers turns the Node style request and response helpers off.
	NoHelpers  bool
	TunnelAddr string
	Token      string
	// Tunnel, when set, makes the runtime's tunnel a socket pair: the
	// runtime inherits one end, Tunnel gets the other once it started, and
	// TunnelAddr and Token are unused (the token stays out of its
	// environment).
	Tunnel func(net.Conn)
	// Env is added to the function's environment.
	Env []string
}

// Sandbox starts instances.
type Sandbox struct {
	// immutable after New
	cfg     Config
	node    string           // node's binary, resolved
	cgroups *cgroupFS        // nil: instances get no cgroup
	jailed  bool             // instances start in namespaces, in the jail
	net     *network.Network // nil: jailed instances share the host's network
	scratch *scratch         // holds the instances' scratch folders
	report  Report

	spares chan *Process  // started spares, up to cfg.Spares
	refill chan struct{}  // a spare was taken
	quit   chan struct{}  // closed by Close
	filler sync.WaitGroup // the goroutine that keeps spares started
}

// New returns a sandbox that starts instances as cfg says, having worked
// out what isolation the host allows. In strict mode a missing piece is an
// error that names it.
func New(cfg Config) (*Sandbox, error) {
	if cfg.Exe == "" {
		panic("sandbox.New: Exe is required")
	}
	sc, err := openScratch(searchableTempDir())
	if err != nil {
		return nil, err
	}
	sb := &Sandbox{cfg: cfg, node: cfg.Node, scratch: sc}
	if sb.node == "" {
		sb.node = "node"
	}
	if p, err := exec.LookPath(sb.node); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			sb.node = abs
		}
	}
	sb.report = sb.probe()
	if cfg.Isolation == Strict {
		if missing := sb.report.Missing(); len(missing) > 0 {
			sb.Close()
			var b strings.Builder
			for _, p := range missing {
				fmt.Fprintf(&b, "\n  %s: %s", p.Name, p.Detail)
			}
			return nil, fmt.Errorf("%w:%s", ErrStrict, b.String())
		}
	}
	if cfg.Spares > 0 && !cfg.Probe {
		sb.spares = make(chan *Process, cfg.Spares)
		sb.refill = make(chan struct{}, 1)
		sb.quit = make(chan struct{})
		sb.filler.Add(1)
		go sb.keepSpares()
	}
	return sb, nil
}

// keepSpares starts spares until cfg.Spares wait, again each time one is
// taken, until Close.
func (sb *Sandbox) keepSpares() {
	defer sb.filler.Done()
	failed := 0
	for {
		for len(sb.spares) < cap(sb.spares) {
			p, err := sb.launch(*spareSpec, spare)
			if err != nil {
				// Instances start without spares meanwhile; try again later,
				// each time later.
				failed++
				select {
				case <-sb.quit:
					return
				case <-time.After(min(time.Duration(failed)*time.Second, time.Minute)):
				}
				continue
			}
			failed = 0
			select {
			case <-sb.quit:
				sb.stopSpare(p)
				return
			default:
				sb.spares <- p
			}
		}
		select {
		case <-sb.quit:
			return
		case <-sb.refill:
		}
		// The next spare's start would take CPU from the cold start that
		// took this one: wait until that is likely over.
		select {
		case <-sb.quit:
			return
		case <-time.After(refillDelay):
		}
	}
}

// refillDelay is how long after a spare is taken the next one starts: a
// cold start's usual length, node's start included.
const refillDelay = 500 * time.Millisecond

// takeSpare returns a started spare, or nil if none waits.
func (sb *Sandbox) takeSpare() *Process {
	for {
		select {
		case p := <-sb.spares:
			select {
			case sb.refill <- struct{}{}:
			default:
			}
			select {
			case <-p.done:
				continue // it died waiting
			default:
				return p
			}
		default:
			return nil
		}
	}
}

// stopSpare stops a spare that was never assigned: its setup socket's end
// tells it to exit.
func (sb *Sandbox) stopSpare(p *Process) {
	p.setup.Close()
	p.tunnel.Close()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-p.Pid(), syscall.SIGKILL)
		<-p.done
	}
}

// Report is the isolation instances get.
func (sb *Sandbox) Report() Report { return sb.report }

// Close stops the spares and removes what New made on the host; instances
// must be stopped.
func (sb *Sandbox) Close() {
	if sb.quit != nil {
		close(sb.quit)
		sb.filler.Wait()
		for len(sb.spares) > 0 {
			sb.stopSpare(<-sb.spares)
		}
	}
	if sb.cgroups != nil {
		sb.cgroups.close()
	}
	if sb.net != nil {
		sb.net.Close()
	}
	sb.scratch.close()
}

// Argv returns the runtime's command line for spec, scratch folder dir.
func Argv(exe, node, dir string, s Spec) []string {
	argv := []string{exe, "runtime", "--id", s.ID}
	if s.Tunnel == nil {
		// Else start adds --tunnel-fd.
		argv = append(argv, "--tunnel", s.TunnelAddr)
	}
	argv = append(argv,
		"--bundle", s.Bundle,
		"--workdir", s.WorkDir,
		"--dir", dir,
		"--max-duration", s.MaxDuration.String(),
		"--memory", strconv.Itoa(s.MemoryMB),
	)
	if s.NoHelpers {
		argv = append(argv, "--no-helpers")
	}
	if node != "" {
		argv = append(argv, "--node", node)
	}
	return argv
}

// Env returns the runtime's environment for spec: only what a function
// should see, and the tunnel token unless the tunnel is a socket pair.
func Env(dir string, s Spec) []string {
	env := FunctionEnv(dir, s.Env)
	if s.Tunnel != nil {
		return env
	}
	return append(env, TokenEnv+"="+s.Token)
}

// FunctionEnv is the environment a function's code sees, with dir as its
// home and temporary folder and extra added.
func FunctionEnv(dir string, extra []string) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"TMPDIR=" + dir,
		"NODE_ENV=production",
		"TZ=UTC",
		"LANG=C.UTF-8",
	}
	return append(env, extra...)
}

// Host uids of jailed instances: the runtimes are uidBase, as their user
// namespace's uid 0; node is uidBase+nodeUID(project) as uid
// nodeUID(project) inside.
const (
	uidBase  = 1 << 30
	uidSlots = 1 << 16
)

// nodeUID is the uid a project's node runs as inside its user namespace,
// drawn from the project's name: in [1, uidSlots].
func nodeUID(project string) int {
	h := fnv.New32a()
	h.Write([]byte(project))
	return 1 + int(h.Sum32()%uidSlots)
}

// HostUIDs returns the host uids of a project's runtime and node.
func HostUIDs(project string) (runtime, node int) {
	return uidBase, uidBase + nodeUID(project)
}

// Start starts the runtime for spec, isolated as Report says. The process
// is in its own process group and is killed if serve dies.
func (sb *Sandbox) Start(ctx context.Context, s Spec) (*Process, error) {
	return sb.start(s, serving)
}

// purpose is what a runtime is started for.
type purpose int

const (
	serving        purpose = iota
	checkingJail           // run node in the jail and say so (--check)
	checkingBundle         // load the bundle and print a BundleCheck (--check-bundle)
	spare                  // wait to serve an instance not yet known (--spare)
)

// start starts a runtime for purpose: a spare's, one that waits, where it
// serves on a socket pair tunnel.
func (sb *Sandbox) start(s Spec, why purpose) (*Process, error) {
	if why == serving && s.Tunnel != nil {
		if p := sb.takeSpare(); p != nil {
			if err := sb.assign(p, s); err == nil {
				return p, nil
			}
			// It died between the check and the handover: start one.
		}
	}
	p, err := sb.launch(s, why)
	if err != nil {
		return nil, err
	}
	if err := sb.assign(p, s); err != nil {
		return nil, err
	}
	return p, nil
}

// launch starts a runtime for purpose; for spare, s holds only an ID. The
// runtime waits for assign where it has a setup socket.
func (sb *Sandbox) launch(s Spec, why purpose) (*Process, error) {
	jailed := sb.jailed || why == checkingJail
	// A short path: the runtime puts node's unix socket in it.
	dir, err := os.MkdirTemp(sb.scratch.dir, s.ID+"-")
	if err != nil {
		return nil, fmt.Errorf("instance %s scratch folder: %w", s.ID, err)
	}
	var undo []func()
	fail := func(step string, e error) (*Process, error) {
		for _, f := range undo {
			f()
		}
		os.RemoveAll(dir)
		return nil, fmt.Errorf("instance %s %s: %w", s.ID, step, e)
	}
	inCgroup := sb.cgroups != nil && why != checkingJail
	p := &Process{dir: dir, why: why, jailed: jailed, logs: sb.cfg.Logs, done: make(chan struct{})}
	var cmd *exec.Cmd
	if why == spare {
		cmd = exec.Command(sb.cfg.Exe, "runtime", "--spare", "--dir", dir, "--node", sb.node)
		cmd.Env = FunctionEnv(p.home(), nil)
	} else {
		argv := Argv(sb.cfg.Exe, sb.node, dir, s)
		cmd = exec.Command(argv[0], argv[1:]...)
		cmd.Env = Env(p.home(), s)
		p.spec.Store(&s)
	}
	p.cmd = cmd
	if sb.cfg.Label != "" {
		cmd.Args = append(cmd.Args, "--of", sb.cfg.Label)
	}
	cmd.Dir = dir
	// SIGTERM, not SIGKILL: the runtime then exits through its own shutdown,
	// and its node has Pdeathsig SIGKILL of its own.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}

	// The setup socket: the runtime waits on it while serve makes its
	// cgroup and mounts, then gets them in one message.
	if inCgroup || jailed || why == spare {
		var theirs *os.File
		if p.setup, theirs, err = socketPair("setup"); err != nil {
			return fail("setup socket", err)
		}
		undo = append(undo, func() { p.setup.Close() })
		defer theirs.Close()
		cmd.ExtraFiles = []*os.File{theirs}
		if inCgroup {
			cmd.Args = append(cmd.Args, "--cgroup")
		}
	}
	if jailed {
		exe, err := os.Open(sb.cfg.Exe)
		if err != nil {
			return fail("jail", err)
		}
		defer exe.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, exe)
		// The runtime, root of its user namespace as uidBase, starts
		// there; assign gives it to node.
		if err := os.Chown(dir, uidBase, uidBase); err != nil {
			return fail("jail", err)
		}
		cmd.Path = "/proc/self/fd/" + strconv.Itoa(jail.FdExe)
		cmd.Args = append(cmd.Args, "--jail")
		namespaces(cmd)
		if why != spare {
			cmd.Args = append(cmd.Args, "--node-uid", strconv.Itoa(nodeUID(s.Project)))
		}
	}
	if (s.Tunnel != nil && why == serving) || why == spare {
		var theirs *os.File
		if p.tunnel, theirs, err = socketPair("tunnel"); err != nil {
			return fail("tunnel socket", err)
		}
		undo = append(undo, func() { p.tunnel.Close() })
		defer theirs.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, theirs)
		cmd.Args = append(cmd.Args, "--tunnel-fd", strconv.Itoa(2+len(cmd.ExtraFiles)))
	}
	switch why {
	case checkingJail:
		cmd.Args = append(cmd.Args, "--check")
	case checkingBundle:
		cmd.Args = append(cmd.Args, "--check-bundle")
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return fail("stdout", err)
	}
	undo = append(undo, func() { outR.Close() })
	defer outW.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		return fail("stderr", err)
	}
	undo = append(undo, func() { errR.Close() })
	defer errW.Close()
	cmd.Stdout, cmd.Stderr = outW, errW
	// A jailed instance gets a network namespace of its own, wired to the
	// host; the jail's check needs none.
	switch {
	case why == checkingJail:
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWNET
		err = cmd.Start()
	case jailed && sb.net != nil:
		if p.ns, err = sb.net.Take(); err == nil {
			undo = append(undo, p.ns.Close)
			err = p.ns.Do(cmd.Start)
		}
	default:
		err = cmd.Start()
	}
	if err != nil {
		if cmd.Process != nil {
			// Started, but serve's thread could not leave its namespace.
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
		}
		return fail("start", err)
	}
	if inCgroup {
		// While the runtime starts, its cgroup is made.
		if p.cg, err = sb.cgroups.create(s.ID + "-" + filepath.Base(dir)); err == nil {
			if err = p.cg.add(cmd.Process.Pid); err != nil {
				p.cg.remove()
				p.cg = nil
			}
		}
		if err != nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
			return fail("cgroup", err)
		}
	}
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); defer outR.Close(); p.forward("stdout", outR, sb.cfg.Logs) }()
	go func() { defer readers.Done(); defer errR.Close(); p.forward("stderr", errR, sb.cfg.Logs) }()
	go func() {
		p.err = cmd.Wait()
		// node (or anything else of the instance) may linger after its
		// runtime, holding the output pipes: take the whole group, and the
		// whole cgroup, then read what is left.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if p.cg != nil {
			p.cg.kill()
		}
		readers.Wait()
		if p.cg != nil {
			p.final, p.finalOOMKills = p.cg.counts(), p.cg.oomKills()
			p.cg.remove()
		}
		if p.ns != nil {
			p.ns.Close()
		}
		os.RemoveAll(dir)
		close(p.done)
	}()
	return p, nil
}

// assign tells the started runtime p which instance it is (s): its
// cgroup's limits and the mounts on its setup socket, and for a spare the
// rest of s; then hands its tunnel to s. On failure p is gone.
func (sb *Sandbox) assign(p *Process, s Spec) error {
	err := sb.handOver(p, s)
	if err == nil && p.tunnel != nil {
		var c net.Conn
		if c, err = net.FileConn(p.tunnel); err == nil {
			s.Tunnel(c)
		}
	}
	for _, f := range []*os.File{p.setup, p.tunnel} {
		if f != nil {
			f.Close()
		}
	}
	if err != nil {
		// Without its message the runtime exits; make sure.
		syscall.Kill(-p.Pid(), syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("instance %s: %w", s.ID, err)
	}
	return nil
}

// handOver sends p its setup message (see jail.Setup), once its cgroup has
// the function's limits.
func (sb *Sandbox) handOver(p *Process, s Spec) error {
	p.spec.Store(&s)
	if p.setup == nil {
		return nil
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if p.cg != nil {
		if err := p.cg.limit(s.MemoryMB); err != nil {
			return err
		}
	}
	if p.jailed {
		// The runtime starts in the scratch folder as root of its
		// namespace; node, which makes its sockets there, owns it.
		_, host := HostUIDs(s.Project)
		if err := os.Chown(p.dir, host, host); err != nil {
			return fmt.Errorf("jail: %w", err)
		}
		for _, m := range []struct {
			path string
			attr uint64
		}{
			{s.WorkDir, unix.MOUNT_ATTR_RDONLY},
			{p.dir, 0},
			{sb.node, unix.MOUNT_ATTR_RDONLY},
		} {
			f, err := detachedMount(m.path, m.attr|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
			if err != nil {
				return fmt.Errorf("jail: %w", err)
			}
			files = append(files, f)
		}
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	if err := unix.Sendmsg(int(p.setup.Fd()), []byte{1}, unix.UnixRights(fds...), nil, 0); err != nil {
		return fmt.Errorf("setup message: %w", err)
	}
	if p.why == spare {
		in := jail.Instance{
			ID: s.ID, Bundle: s.Bundle, WorkDir: s.WorkDir, MaxDuration: s.MaxDuration,
			MemoryMB: s.MemoryMB, NoHelpers: s.NoHelpers, Env: FunctionEnv(p.home(), s.Env),
		}
		if p.jailed {
			in.NodeUID = nodeUID(s.Project)
		}
		if err := json.NewEncoder(p.setup).Encode(in); err != nil {
			return fmt.Errorf("setup message: %w", err)
		}
	}
	return nil
}

// socketPair returns the two ends of a new unix socket pair, both
// close-on-exec (ExtraFiles hands one to a child all the same).
func socketPair(name string) (ours, theirs *os.File, err error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(pair[0]), name), os.NewFile(uintptr(pair[1]), name), nil
}

// searchableTempDir is the temporary folder if every uid may pass through
// it ($TMPDIR may be private to serve's user), else /tmp.
func searchableTempDir() string {
	dir := os.TempDir()
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if d == filepath.Dir(d) {
			return dir
		}
	}
}

// detachedMount returns a copy of path's mount, not attached anywhere,
// with attr set: the runtime attaches it inside its own mount namespace.
func detachedMount(path string, attr uint64) (*os.File, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, path, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return nil, fmt.Errorf("open_tree %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	err = unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: attr})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("mount_setattr %s: %w", path, err)
	}
	return f, nil
}

// namespaces sets cmd up to start in new namespaces, root of its user
// namespace, in which every project's node uid is mapped: a spare learns
// its project later.
func namespaces(cmd *exec.Cmd) {
	cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID |
		syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS | syscall.CLONE_NEWCGROUP
	maps := []syscall.SysProcIDMap{{ContainerID: 0, HostID: uidBase, Size: 1 + uidSlots}}
	cmd.SysProcAttr.UidMappings = maps
	cmd.SysProcAttr.GidMappings = maps
	cmd.SysProcAttr.GidMappingsEnableSetgroups = true
	// serve's uid is not mapped: become the namespace's root, or the
	// runtime would keep no capability in it across exec.
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}}
}

// forward passes each line r gives to logs, as stream of p's instance;
// those of a check to its output.
func (p *Process) forward(stream string, r io.Reader, logs func(*Spec, string, []byte)) {
	if p.why == checkingJail || p.why == checkingBundle {
		// Read whole, for when the check is done: a BundleCheck line
		// carries the code cache, which can be megabytes.
		b, _ := io.ReadAll(r)
		p.checkMu.Lock()
		defer p.checkMu.Unlock()
		p.checkOut.Write(b)
		if len(b) > 0 && b[len(b)-1] != '\n' {
			p.checkOut.WriteByte('\n')
		}
		return
	}
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		for err == bufio.ErrBufferFull {
			// A line longer than the buffer: pass it on in pieces.
			if logs != nil {
				logs(p.specOrSpare(), stream, line)
			}
			line, err = br.ReadSlice('\n')
		}
		if len(line) > 0 && line[len(line)-1] == '\n' {
			line = line[:len(line)-1]
		}
		if len(line) > 0 && logs != nil {
			logs(p.specOrSpare(), stream, line)
		}
		if err != nil {
			return
		}
	}
}

// Process is a started instance.
type Process struct {
	// immutable once started
	why    purpose
	jailed bool
	cmd    *exec.Cmd
	dir    string
	cg     *cgroup            // nil: none
	ns     *network.Namespace // nil: none
	logs   func(s *Spec, stream string, line []byte)

	// Serve's ends of the runtime's sockets, until assign closes them.
	setup, tunnel *os.File

	spec     atomic.Pointer[Spec] // the instance's; nil while a spare
	checkMu  sync.Mutex           // held by a reader writing checkOut
	checkOut bytes.Buffer         // a check's output, stdout's and stderr's; its readers' until done
	final    counts               // what the cgroup counted in all; set before done is closed
	// finalOOMKills is the cgroup's count of OOM kills; set before done
	// is closed.
	finalOOMKills int

	done chan struct{} // closed when the process exited and was reaped
	err  error         // its exit status; set before done is closed
}

// spareSpec is what a spare is started with, and names its lines (it
// writes some only when it fails) until it learns its instance.
var spareSpec = &Spec{ID: "spare"}

// home is the function's home and temporary folder, as node sees it.
func (p *Process) home() string {
	if p.jailed {
		return "/tmp"
	}
	return p.dir
}

func (p *Process) specOrSpare() *Spec {
	if s := p.spec.Load(); s != nil {
		return s
	}
	return spareSpec
}

// Pid is the runtime's process id, which is also its process group.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Counted returns what the instance's cgroup counted so far: its CPU time
// and peak memory; ok is false without a cgroup.
func (p *Process) Counted() (cpu time.Duration, peakMemory int64, ok bool) {
	if p.cg == nil {
		return 0, 0, false
	}
	var u counts
	select {
	case <-p.done:
		u = p.final
	default:
		u = p.cg.counts()
	}
	// Zero: the cgroup is being removed as the process ends.
	return u.CPU, u.PeakMemory, u.CPU > 0 || u.PeakMemory > 0
}

// OutOfMemory reports whether a process of the instance was killed at its
// memory limit; false without a cgroup.
func (p *Process) OutOfMemory() bool {
	if p.cg == nil {
		return false
	}
	select {
	case <-p.done:
		return p.finalOOMKills > 0
	default:
		return p.cg.oomKills() > 0
	}
}

// Socket is the unix socket node's first event loop serves on, once the
// instance is ready (its tunnel is up): node makes it in the scratch
// folder, which is /run/shoal in the jail.
func (p *Process) Socket() string { return filepath.Join(p.dir, runtime.SocketName) }

// Log adds a record of the platform's own to the instance's logs, for the
// invocation id, as the runtime writes its own.
func (p *Process) Log(id, msg string) {
	if p.logs == nil {
		return
	}
	b, err := json.Marshal(runtime.Record{Type: "log", ID: id, Stream: "system", Msg: msg, TS: time.Now().UnixMilli()})
	if err == nil {
		p.logs(p.specOrSpare(), "stdout", b)
	}
}

// Err is the exit status; valid after Done.
func (p *Process) Err() error { return p.err }

// Stop asks the instance to stop (SIGTERM to its group), and kills the
// group when ctx is done first. It returns once the process is reaped.
func (p *Process) Stop(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop instance %s: %w", p.specOrSpare().ID, err)
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return ctx.Err()
	}
}
