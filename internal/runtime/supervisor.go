package runtime

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/shoal-dev/shoal/internal/runtime/bootstrap"
)

// Platform error codes the runtime answers with, in the x-shoal-error
// header of a response that carries no body of its own.
const (
	CodeTimeout = "FUNCTION_INVOCATION_TIMEOUT"
	CodeFailed  = "FUNCTION_INVOCATION_FAILED"
	// CodeOutOfMemory answers the invocations of a node killed at its
	// cgroup's memory limit.
	CodeOutOfMemory = "FUNCTION_OUT_OF_MEMORY"
	// CodeInstanceGone answers an invocation that arrived after node
	// exited: it reached no user code, so the invoker places it again.
	// Clients never see it.
	CodeInstanceGone = "INSTANCE_GONE"

	// ErrorHeader names the header that marks a platform error response.
	ErrorHeader = "x-shoal-error"
	// IDHeader carries the invocation id.
	IDHeader = "x-shoal-id"
)

// SocketName is the name of the unix socket node's first event loop serves
// on, in Config.Dir; loop n serves on SocketName + ".n".
const SocketName = "node.sock"

// Config says what the supervisor runs.
type Config struct {
	// Node is the node binary; "" means "node" from PATH.
	Node string
	// Bundle is the deployment's bundled entry (index.mjs). Required.
	Bundle string
	// WorkDir is node's working directory; "" means the bundle's folder.
	WorkDir string
	// Dir is a scratch folder for the socket and the bootstrap. Required;
	// a short path, since a unix socket path is limited to 107 bytes.
	Dir string
	// MaxDuration bounds each invocation. Required.
	MaxDuration time.Duration
	// MemoryMB sizes node's heap; 0 leaves node's default.
	MemoryMB int
	// NoHelpers serves Node style handlers without the bootstrap's request
	// and response helpers.
	NoHelpers bool
	// Env is node's environment; nil means an empty one.
	Env []string
	// Logs receives one JSON log record per line (see Record). Required.
	Logs io.Writer
	// StartTimeout bounds node's start to ready; 0 means 30 s.
	StartTimeout time.Duration
	// NodeUID, when not 0, is the uid and gid node runs as.
	NodeUID int
	// ReapOrphans makes the runtime reap the processes node's children
	// leave behind: it is pid 1 of its pid namespace, which inherits them.
	ReapOrphans bool
}

// Record is one log line as the runtime writes it to Config.Logs.
type Record struct {
	Type   string `json:"type"` // always "log"
	ID     string `json:"id"`   // invocation id; "" outside an invocation
	Stream string `json:"stream"`
	Msg    string `json:"msg"`
	TS     int64  `json:"ts"` // unix milliseconds
}

// Supervisor runs one node process, which serves invocations on its
// sockets (see SocketName), and watches it.
type Supervisor struct {
	// immutable
	cfg  Config
	cmd  *exec.Cmd
	sock string // loop 0's socket; loop n's is sock.n
	logs *lockedWriter

	exited  chan struct{} // closed by the wait goroutine when node exited
	exitErr error         // set before exited is closed
	working chan struct{} // signalled when node reports a loop at work (see Working)

	codeCache string // what became of the code cache; set before Start returns

	readers sync.WaitGroup // log pipe readers

	commands   *os.File   // node's command pipe, write end
	commandsMu sync.Mutex // one command at a time

	mu     sync.Mutex
	waited []Waited      // guarded by mu; taken by Stats
	loops  []*loop       // guarded by mu; by number, nil while starting
	asked  int           // guarded by mu; the loops asked of node
	failed bool          // guarded by mu; a loop could not start: ask for no more
	idle   time.Duration // guarded by mu; the host's idle CPU time at the last Stats
	idleAt time.Time     // guarded by mu; when it was read

	procMu sync.Mutex // one Stats at a time reads proc
	proc   procFiles  // guarded by procMu
}

// codeCacheRejected is what the bootstrap's ready message says when V8
// refused the bundle's code cache (bootstrap.CodeCache).
const codeCacheRejected = "rejected"

// CodeCache says what became of the bundle's code cache at node's start:
// "none" (an ES module bundle, or no cache), "accepted" or "rejected".
func (s *Supervisor) CodeCache() string { return s.codeCache }

// loop is one of node's event loops.
type loop struct {
	// guarded by Supervisor.mu
	load   Loop          // its last load report
	loadAt time.Time     // when it came; zero: none yet
	next   time.Duration // when node said the next would come, after loadAt
	woke   bool          // the report is of idle time an invocation ended
}

// Start starts node and returns once the bootstrap reported ready, or with
// the error it reported (a bundle that throws at import, no usable export).
func Start(ctx context.Context, cfg Config) (*Supervisor, error) {
	if cfg.Bundle == "" || cfg.Dir == "" || cfg.MaxDuration <= 0 || cfg.Logs == nil {
		panic("runtime.Start: Bundle, Dir, MaxDuration and Logs are required")
	}
	if cfg.Node == "" {
		cfg.Node = "node"
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	bootPath, err := bootstrap.Write(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("write bootstrap: %w", err)
	}
	sock := filepath.Join(cfg.Dir, SocketName)
	os.Remove(sock)

	args := append(bootstrap.NodeFlags(cfg.MemoryMB), bootPath, sock, cfg.Bundle)
	opts, _ := json.Marshal(struct {
		Helpers       bool   `json:"helpers"`
		MaxDurationMs int64  `json:"maxDurationMs"`
		CommandFd     int    `json:"commandFd"`
		CodeCache     string `json:"codeCache"`
	}{!cfg.NoHelpers, cfg.MaxDuration.Milliseconds(), 4, bootstrap.CodeCache(cfg.Bundle)})
	args = append(args, string(opts))
	cmd := exec.Command(cfg.Node, args...)
	cmd.Dir = cfg.WorkDir
	if cmd.Dir == "" {
		cmd.Dir = filepath.Dir(cfg.Bundle)
	}
	cmd.Env = cfg.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	// node dies with its supervisor, whatever kills the supervisor.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if cfg.NodeUID != 0 {
		id := uint32(cfg.NodeUID)
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: id, Gid: id, Groups: []uint32{}}
	}

	// fd 3 is the control pipe (node -> runtime), fd 4 the command pipe
	// (runtime -> node); stdout and stderr are pipes too.
	var pipes [4][2]*os.File
	for i := range pipes {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll(pipes[:i])
			return nil, fmt.Errorf("pipe: %w", err)
		}
		pipes[i] = [2]*os.File{r, w}
	}
	ctrl, commands, out, stderr := pipes[0], pipes[1], pipes[2], pipes[3]
	cmd.ExtraFiles = []*os.File{ctrl[1], commands[0]}
	cmd.Stdout = out[1]
	cmd.Stderr = stderr[1]
	if err := cmd.Start(); err != nil {
		closeAll(pipes[:])
		return nil, fmt.Errorf("start node: %w", err)
	}
	for _, f := range []*os.File{ctrl[1], commands[0], out[1], stderr[1]} {
		f.Close()
	}
	if cfg.ReapOrphans {
		// At the memory limit, node is the one to kill: the runtime must
		// live on to tell serve.
		os.WriteFile("/proc/"+strconv.Itoa(cmd.Process.Pid)+"/oom_score_adj", []byte("500"), 0)
	}

	s := &Supervisor{
		cfg:     cfg,
		cmd:     cmd,
		sock:    sock,
		logs:    &lockedWriter{w: cfg.Logs},
		exited:  make(chan struct{}),
		working: make(chan struct{}, 1),
		proc: procFiles{
			node: procFile{path: "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/stat"},
			self: procFile{path: "/proc/" + strconv.Itoa(os.Getpid()) + "/stat"},
			host: procFile{path: "/proc/stat"},
		},
		commands: commands[1],
		asked:    1,
	}
	s.loops = []*loop{{}}
	if cfg.ReapOrphans {
		go reapOrphans(cmd.Process.Pid, s.exited)
	}
	ctrlR, outR, errR := ctrl[0], out[0], stderr[0]

	ready := make(chan error, 1)
	s.readers.Add(3)
	go func() { defer s.readers.Done(); s.readControl(ctrlR, ready) }()
	go func() { defer s.readers.Done(); s.readRaw(outR, "stdout") }()
	go func() { defer s.readers.Done(); s.readRaw(errR, "stderr") }()
	go func() {
		err := cmd.Wait()
		s.readers.Wait()
		s.commandsMu.Lock()
		s.commands.Close()
		s.commandsMu.Unlock()
		s.exitErr = err
		close(s.exited)
	}()

	timer := time.NewTimer(cfg.StartTimeout)
	defer timer.Stop()
	select {
	case err := <-ready:
		if err == nil {
			return s, nil
		}
		s.Close()
		return nil, err
	case <-s.exited:
		// The control reader saw EOF before ready: node died at start.
		select {
		case err := <-ready:
			if err != nil {
				return nil, err
			}
		default:
		}
		return nil, fmt.Errorf("node exited before ready: %v", s.exitErr)
	case <-timer.C:
		s.Close()
		return nil, fmt.Errorf("node not ready after %s", cfg.StartTimeout)
	case <-ctx.Done():
		s.Close()
		return nil, ctx.Err()
	}
}

// StartError is the error node's bootstrap reported at start.
type StartError struct{ Msg string }

func (e *StartError) Error() string { return e.Msg }

func (s *Supervisor) readControl(r io.ReadCloser, ready chan<- error) {
	defer r.Close()
	br := bufio.NewReaderSize(r, 64<<10)
	readySent := false
	for {
		line, err := readLine(br)
		if len(line) > 0 {
			switch {
			case bytes.HasPrefix(line, []byte(`{"type":"log"`)):
				s.logs.writeLine(line)
			case bytes.HasPrefix(line, []byte(`{"type":"load"`)):
				var l struct {
					Loop     int     `json:"loop"`
					InFlight int     `json:"inflight"`
					ELU      float64 `json:"elu"`
					ELDMean  float64 `json:"eld_mean"`
					ELDMax   float64 `json:"eld_max"`
					Next     float64 `json:"next"`
					Woke     bool    `json:"woke"`
				}
				if json.Unmarshal(line, &l) == nil {
					next := ms(l.Next)
					if next <= 0 {
						next = loadEvery
					}
					s.setLoad(l.Loop, Loop{InFlight: l.InFlight, Utilization: l.ELU, DelayMean: ms(l.ELDMean), DelayMax: ms(l.ELDMax)}, next, l.Woke)
					if next <= loadEvery {
						s.signalWorking()
					}
				}
			case bytes.HasPrefix(line, []byte(`{"type":"loop"`)):
				var l struct{ Loop int }
				if json.Unmarshal(line, &l) == nil {
					s.addLoop(l.Loop)
				}
			case bytes.HasPrefix(line, []byte(`{"type":"waited"`)):
				var m struct {
					ID       string
					From, To int64
				}
				if json.Unmarshal(line, &m) == nil {
					s.addWaited(Waited{ID: m.ID, From: time.UnixMilli(m.From), To: time.UnixMilli(m.To)})
					s.signalWorking()
				}
			case bytes.HasPrefix(line, []byte(`{"type":"ready"`)):
				var m struct{ CodeCache string }
				if json.Unmarshal(line, &m) == nil && m.CodeCache == codeCacheRejected {
					s.System("", "node refused the bundle's code cache (node, or its flags, changed since the deploy): it compiled the bundle instead; deploy again to make a new one")
				}
				if !readySent {
					readySent = true
					s.codeCache = m.CodeCache
					ready <- nil
				}
			default:
				var m struct {
					Type, Msg string
					Loop      int
				}
				if json.Unmarshal(line, &m) == nil && m.Type == "error" {
					if m.Loop > 0 {
						s.loopFailed() // before the record, which tells the world
					}
					s.System("", m.Msg)
					if !readySent {
						readySent = true
						ready <- &StartError{Msg: m.Msg}
					}
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// readRaw turns what node writes outside the bootstrap's logging (native
// crash output, child processes) into untagged records.
func (s *Supervisor) readRaw(r io.ReadCloser, stream string) {
	defer r.Close()
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := readLine(br)
		if len(line) > 0 || err == nil {
			s.write(Record{Type: "log", Stream: stream, Msg: string(line), TS: time.Now().UnixMilli()})
		}
		if err != nil {
			return
		}
	}
}

// maxLine bounds one log line; longer lines are cut.
const maxLine = 256 << 10

// readLine returns the next line without its newline, cut at maxLine.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) <= maxLine {
			line = append(line, chunk...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		return line, err
	}
}

// System writes a record of the platform's own, for invocation id.
func (s *Supervisor) System(id, msg string) {
	s.write(Record{Type: "log", ID: id, Stream: "system", Msg: msg, TS: time.Now().UnixMilli()})
}

func (s *Supervisor) write(r Record) {
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	s.logs.writeLine(b)
}

// Exited is closed when node has exited.
func (s *Supervisor) Exited() <-chan struct{} { return s.exited }

// Working receives when node reports a loop at work, or waitUntil work
// that ended: while node idles it reports once a second, so a sampler of
// Stats may sample that seldom too, and sooner when this says so.
func (s *Supervisor) Working() <-chan struct{} { return s.working }

func (s *Supervisor) signalWorking() {
	select {
	case s.working <- struct{}{}:
	default:
	}
}

// ExitErr is node's exit status; valid after Exited is closed.
func (s *Supervisor) ExitErr() error { return s.exitErr }

// Close kills node and waits for it to exit. It is safe to call twice.
func (s *Supervisor) Close() error {
	select {
	case <-s.exited:
	default:
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.procMu.Lock()
	s.proc.close()
	s.procMu.Unlock()
	return nil
}

func closeAll(pipes [][2]*os.File) {
	for _, p := range pipes {
		p[0].Close()
		p[1].Close()
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) writeLine(b []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// One write per line keeps lines whole on a pipe shared with others.
	l.w.Write(append(b, '\n'))
}
