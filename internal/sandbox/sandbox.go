package sandbox

import (
	"bufio"
	"bytes"
	"context"
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
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-dev/shoal/internal/jail"
	"github.com/shoal-dev/shoal/internal/network"
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
	report  Report
}

// New returns a sandbox that starts instances as cfg says, having worked
// out what isolation the host allows. In strict mode a missing piece is an
// error that names it.
func New(cfg Config) (*Sandbox, error) {
	if cfg.Exe == "" {
		panic("sandbox.New: Exe is required")
	}
	sb := &Sandbox{cfg: cfg, node: cfg.Node}
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
	return sb, nil
}

// Report is the isolation instances get.
func (sb *Sandbox) Report() Report { return sb.report }

// Close removes what New made on the host; instances must be stopped.
func (sb *Sandbox) Close() {
	if sb.cgroups != nil {
		sb.cgroups.close()
	}
	if sb.net != nil {
		sb.net.Close()
	}
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

// Host uids of jailed instances: the runtime of a project's instances is
// uidBase+2k inside its user namespace's uid 0, node is uidBase+2k+1 as
// jail.NodeUID, where k is drawn from the project's name.
const (
	uidBase  = 1 << 30
	uidSlots = 1 << 16
)

// HostUIDs returns the host uids of a project's runtime and node.
func HostUIDs(project string) (runtime, node int) {
	h := fnv.New32a()
	h.Write([]byte(project))
	k := int(h.Sum32() % uidSlots)
	return uidBase + 2*k, uidBase + 2*k + 1
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
)

// start starts a runtime for purpose.
func (sb *Sandbox) start(s Spec, why purpose) (*Process, error) {
	jailed := sb.jailed || why == checkingJail
	// A short path: the runtime puts node's unix socket in it. A jailed
	// runtime reaches it by path as an unprivileged uid.
	base := ""
	if jailed {
		base = searchableTempDir()
	}
	dir, err := os.MkdirTemp(base, "shoal-"+s.ID+"-")
	if err != nil {
		return nil, fmt.Errorf("instance %s scratch folder: %w", s.ID, err)
	}
	fail := func(step string, e error) (*Process, error) {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("instance %s %s: %w", s.ID, step, e)
	}
	inCgroup := sb.cgroups != nil && why != checkingJail
	home := dir
	if jailed {
		home = "/tmp"
	}
	argv := Argv(sb.cfg.Exe, sb.node, dir, s)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = Env(home, s)
	// SIGTERM, not SIGKILL: the runtime then exits through its own shutdown,
	// and its node has Pdeathsig SIGKILL of its own.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}

	// The setup socket: the runtime waits on it while serve makes its
	// cgroup and mounts, then gets them in one message.
	var setup *os.File
	if inCgroup || jailed {
		var theirs *os.File
		if setup, theirs, err = socketPair("setup"); err != nil {
			return fail("setup socket", err)
		}
		defer setup.Close()
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
		// The runtime starts in the scratch folder as root of its
		// namespace; node, which makes its sockets there, owns it.
		_, nodeUID := HostUIDs(s.Project)
		if err := os.Chown(dir, nodeUID, nodeUID); err != nil {
			return fail("jail", err)
		}
		cmd.ExtraFiles = append(cmd.ExtraFiles, exe)
		cmd.Path = "/proc/self/fd/" + strconv.Itoa(jail.FdExe)
		cmd.Args = append(cmd.Args, "--jail")
		sb.namespaces(cmd, s.Project)
	}

	var tunnelEnd *os.File
	if s.Tunnel != nil && why == serving {
		var theirs *os.File
		if tunnelEnd, theirs, err = socketPair("tunnel"); err != nil {
			return fail("tunnel socket", err)
		}
		defer tunnelEnd.Close()
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
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return fail("stderr", err)
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	// A jailed instance gets a network namespace of its own, wired to the
	// host; the jail's check needs none.
	var ns *network.Namespace
	switch {
	case why == checkingJail:
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWNET
		err = cmd.Start()
	case jailed && sb.net != nil:
		if ns, err = sb.net.Take(); err == nil {
			err = ns.Do(cmd.Start)
		}
	default:
		err = cmd.Start()
	}
	outW.Close()
	errW.Close()
	if err != nil {
		if cmd.Process != nil {
			// Started, but serve's thread could not leave its namespace.
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
		}
		outR.Close()
		errR.Close()
		if ns != nil {
			ns.Close()
		}
		return fail("start", err)
	}
	p := &Process{id: s.ID, cmd: cmd, dir: dir, done: make(chan struct{})}
	if setup != nil {
		// While the runtime starts, its cgroup and mounts are made.
		var err error
		if p.cg, err = sb.handOver(setup, cmd.Process.Pid, s, dir, inCgroup, jailed); err != nil {
			err = fmt.Errorf("instance %s: %w", s.ID, err)
			// The runtime gets no message, and exits.
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		p.setupErr = err
	}
	if tunnelEnd != nil && p.setupErr == nil {
		c, err := net.FileConn(tunnelEnd)
		if err == nil {
			s.Tunnel(c)
		} else {
			p.setupErr = fmt.Errorf("instance %s tunnel: %w", s.ID, err)
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	logs := sb.cfg.Logs
	if why != serving {
		logs = func(_ *Spec, _ string, line []byte) {
			p.checkOut.Write(line)
			p.checkOut.WriteByte('\n')
		}
	}
	cg := p.cg
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); defer outR.Close(); forward(logs, &s, "stdout", outR) }()
	go func() { defer readers.Done(); defer errR.Close(); forward(logs, &s, "stderr", errR) }()
	go func() {
		p.err = cmd.Wait()
		if p.setupErr != nil {
			p.err = p.setupErr
		}
		// node (or anything else of the instance) may linger after its
		// runtime, holding the output pipes: take the whole group, and the
		// whole cgroup, then read what is left.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if cg != nil {
			cg.kill()
		}
		readers.Wait()
		if cg != nil {
			p.final = cg.counts()
			cg.remove()
		}
		if ns != nil {
			ns.Close()
		}
		os.RemoveAll(dir)
		close(p.done)
	}()
	if p.setupErr != nil {
		<-p.done
		return nil, p.setupErr
	}
	return p, nil
}

// handOver puts the started runtime pid in a new cgroup and sends it its
// setup message (see jail.Setup).
func (sb *Sandbox) handOver(setup *os.File, pid int, s Spec, dir string, inCgroup, jailed bool) (*cgroup, error) {
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	var cg *cgroup
	if inCgroup {
		var err error
		if cg, err = sb.cgroups.create(s.ID, s.MemoryMB); err != nil {
			return nil, err
		}
		oom, err := os.Open(cg.oomFile())
		if err == nil {
			files = append(files, oom)
			err = cg.add(pid)
		}
		if err != nil {
			cg.remove()
			return nil, fmt.Errorf("cgroup: %w", err)
		}
	}
	if jailed {
		for _, m := range []struct {
			path string
			attr uint64
		}{
			{s.WorkDir, unix.MOUNT_ATTR_RDONLY},
			{dir, 0},
			{sb.node, unix.MOUNT_ATTR_RDONLY},
		} {
			f, err := detachedMount(m.path, m.attr|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
			if err != nil {
				return cg, fmt.Errorf("jail: %w", err)
			}
			files = append(files, f)
		}
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	if err := unix.Sendmsg(int(setup.Fd()), []byte{1}, unix.UnixRights(fds...), nil, 0); err != nil {
		return cg, fmt.Errorf("setup message: %w", err)
	}
	return cg, nil
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

// namespaces sets cmd up to start in new namespaces as its project's
// unprivileged uids.
func (sb *Sandbox) namespaces(cmd *exec.Cmd, project string) {
	runtimeUID, nodeUID := HostUIDs(project)
	cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID |
		syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS | syscall.CLONE_NEWCGROUP
	maps := []syscall.SysProcIDMap{{ContainerID: 0, HostID: runtimeUID, Size: 1}, {ContainerID: jail.NodeUID, HostID: nodeUID, Size: 1}}
	cmd.SysProcAttr.UidMappings = maps
	cmd.SysProcAttr.GidMappings = maps
	cmd.SysProcAttr.GidMappingsEnableSetgroups = true
	// serve's uid is not mapped: become the namespace's root, or the
	// runtime would keep no capability in it across exec.
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}}
}

func forward(logs func(*Spec, string, []byte), s *Spec, stream string, r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		for err == bufio.ErrBufferFull {
			// A line longer than the buffer: pass it on in pieces.
			if logs != nil {
				logs(s, stream, line)
			}
			line, err = br.ReadSlice('\n')
		}
		if len(line) > 0 && line[len(line)-1] == '\n' {
			line = line[:len(line)-1]
		}
		if len(line) > 0 && logs != nil {
			logs(s, stream, line)
		}
		if err != nil {
			return
		}
	}
}

// Process is a started instance.
type Process struct {
	// immutable
	id  string
	cmd *exec.Cmd
	dir string
	cg  *cgroup // nil: none

	checkOut bytes.Buffer // a check's output; owned by its readers until done
	final    counts       // what the cgroup counted in all; set before done is closed
	setupErr error        // the cgroup or mounts could not be handed over

	done chan struct{} // closed when the process exited and was reaped
	err  error         // its exit status; set before done is closed
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
	u := p.final
	select {
	case <-p.done:
	default:
		u = p.cg.counts()
	}
	// Zero: the cgroup is being removed as the process ends.
	return u.CPU, u.PeakMemory, u.CPU > 0 || u.PeakMemory > 0
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
		return fmt.Errorf("stop instance %s: %w", p.id, err)
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
