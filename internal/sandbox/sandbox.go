package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
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
	// Env is added to the function's environment.
	Env []string
}

// Sandbox starts instances.
type Sandbox struct {
	cfg Config
}

// New returns a sandbox that starts instances as cfg says.
func New(cfg Config) *Sandbox {
	if cfg.Exe == "" {
		panic("sandbox.New: Exe is required")
	}
	return &Sandbox{cfg: cfg}
}

// Argv returns the runtime's command line for spec, scratch folder dir.
func Argv(exe, node, dir string, s Spec) []string {
	argv := []string{exe, "runtime",
		"--id", s.ID,
		"--tunnel", s.TunnelAddr,
		"--bundle", s.Bundle,
		"--workdir", s.WorkDir,
		"--dir", dir,
		"--max-duration", s.MaxDuration.String(),
		"--memory", strconv.Itoa(s.MemoryMB),
	}
	if s.NoHelpers {
		argv = append(argv, "--no-helpers")
	}
	if node != "" {
		argv = append(argv, "--node", node)
	}
	return argv
}

// Env returns the runtime's environment for spec: only what a function
// should see, and the tunnel token.
func Env(dir string, s Spec) []string {
	return append(FunctionEnv(dir, s.Env), TokenEnv+"="+s.Token)
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

// Start starts the runtime for spec. The process is in its own process
// group and is killed if serve dies.
func (sb *Sandbox) Start(ctx context.Context, s Spec) (*Process, error) {
	// A short path: the runtime puts node's unix socket in it.
	dir, err := os.MkdirTemp("", "shoal-"+s.ID+"-")
	if err != nil {
		return nil, fmt.Errorf("instance %s scratch folder: %w", s.ID, err)
	}
	argv := Argv(sb.cfg.Exe, sb.cfg.Node, dir, s)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = Env(dir, s)
	// SIGTERM, not SIGKILL: the runtime then exits through its own shutdown,
	// and its node has Pdeathsig SIGKILL of its own.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	outR, outW, err := os.Pipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("instance %s stdout: %w", s.ID, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("instance %s stderr: %w", s.ID, err)
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("instance %s start: %w", s.ID, err)
	}
	p := &Process{id: s.ID, cmd: cmd, dir: dir, done: make(chan struct{})}
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); defer outR.Close(); sb.forward(&s, "stdout", outR) }()
	go func() { defer readers.Done(); defer errR.Close(); sb.forward(&s, "stderr", errR) }()
	go func() {
		p.err = cmd.Wait()
		// node (or anything else in the group) may linger after its
		// runtime, holding the output pipes: take the whole group, then
		// read what is left.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		readers.Wait()
		os.RemoveAll(dir)
		close(p.done)
	}()
	return p, nil
}

func (sb *Sandbox) forward(s *Spec, stream string, r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		for err == bufio.ErrBufferFull {
			// A line longer than the buffer: pass it on in pieces.
			if sb.cfg.Logs != nil {
				sb.cfg.Logs(s, stream, line)
			}
			line, err = br.ReadSlice('\n')
		}
		if len(line) > 0 && line[len(line)-1] == '\n' {
			line = line[:len(line)-1]
		}
		if len(line) > 0 && sb.cfg.Logs != nil {
			sb.cfg.Logs(s, stream, line)
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

	done chan struct{} // closed when the process exited and was reaped
	err  error         // its exit status; set before done is closed
}

// Pid is the runtime's process id, which is also its process group.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

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
