// Package testutil helps tests run the real thing: it builds the shoal
// binary once, starts `shoal serve` on a loopback port with its own data
// and config folders, deploys project folders written by the test, and
// finds the instance processes serve started. Only _test.go files import it.
package testutil

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binDir    string
	binPath   string // built with -race when the tests are
	plainPath string // built without: binPath where they are the same
	buildErr  error
)

// Binary builds the shoal binary once per test process and returns its
// path: built with the race detector when the tests are.
func Binary(t testing.TB) string {
	t.Helper()
	build(t)
	return binPath
}

// PlainBinary is the shoal binary built without the race detector. A
// race-built binary takes about a second to start here (mostly the
// detector clearing shadow memory for the globals, 32 MiB of which are
// Go's FIPS DRBG buffer), so the tests run their CLI commands from this
// one, and serves started for tests (under the race detector) run their
// instances from shoal-runtime, built without it beside this one, which
// serve finds there as it would beside a user's build.
func PlainBinary(t testing.TB) string {
	t.Helper()
	build(t)
	return plainPath
}

func build(t testing.TB) {
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "shoal-bin-"); buildErr != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		goBuild := func(env []string, out string, args ...string) error {
			cmd := exec.Command("go", append([]string{"build", "-o", out}, args...)...)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), env...)
			if b, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("go build: %v\n%s", err, b)
			}
			return nil
		}
		// Both binaries in one folder, built as the README says (without
		// cgo, so shoal-runtime links no libc): serve finds shoal-runtime
		// beside itself.
		plainPath = filepath.Join(binDir, "shoal")
		if buildErr = goBuild([]string{"CGO_ENABLED=0"}, binDir+"/", "./cmd/shoal", "./cmd/shoal-runtime"); buildErr != nil || !raceEnabled {
			binPath = plainPath
			return
		}
		binPath = filepath.Join(binDir, "shoal-race")
		buildErr = goBuild(nil, binPath, "-race", "./cmd/shoal")
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// Main runs the tests, then deletes the binaries Binary and PlainBinary
// built: the TestMain of a package whose tests start shoal.
func Main(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// WriteProject writes files (slash paths to contents) into a new folder
// named name and returns the folder.
func WriteProject(t testing.TB, name string, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	for p, body := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Serve is a running `shoal serve`.
type Serve struct {
	URL     string
	DataDir string
	// Env is the environment the CLI needs to reach this serve (its config
	// folder, where serve recorded the token).
	Env []string

	t      testing.TB
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
}

// ServeOptions configures StartServe.
type ServeOptions struct {
	// DataDir reuses a data folder; "" makes a new one.
	DataDir string
	// ConfigHome reuses a config folder; "" makes a new one.
	ConfigHome string
	// Args are more serve flags.
	Args []string
}

// StartServe starts serve on a free loopback port and waits until it
// serves. It is stopped (SIGTERM, then SIGKILL) when the test ends, and the
// test fails if any instance process outlives it.
func StartServe(t testing.TB, opt ServeOptions) *Serve {
	t.Helper()
	bin := Binary(t)
	if opt.DataDir == "" {
		opt.DataDir = filepath.Join(t.TempDir(), "data")
	}
	if opt.ConfigHome == "" {
		opt.ConfigHome = filepath.Join(t.TempDir(), "config")
	}
	args := append([]string{"serve", "--listen", "127.0.0.1:0", "--data", opt.DataDir}, opt.Args...)
	cmd := exec.Command(bin, args...)
	env := []string{"XDG_CONFIG_HOME=" + opt.ConfigHome, "HOME=" + opt.ConfigHome}
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &syncBuffer{}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &Serve{DataDir: opt.DataDir, Env: env, t: t, cmd: cmd, out: out, exited: make(chan struct{})}
	urlCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			out.Write([]byte(line + "\n"))
			if u, ok := strings.CutPrefix(line, "shoal serving on "); ok {
				urlCh <- u
			}
		}
	}()
	go func() { cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		s.Stop()
		s.checkNoInstances()
		if t.Failed() {
			t.Logf("serve output:\n%s", s.out.String())
		}
	})
	select {
	case s.URL = <-urlCh:
	case <-s.exited:
		t.Fatalf("serve exited before serving:\n%s", out.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("serve not ready after 60 s:\n%s", out.String())
	}
	return s
}

// Output is what serve wrote so far.
func (s *Serve) Output() string { return s.out.String() }

// Signal sends sig to serve alone.
func (s *Serve) Signal(sig syscall.Signal) { s.cmd.Process.Signal(sig) }

// Exited is closed when serve has exited.
func (s *Serve) Exited() <-chan struct{} { return s.exited }

// Stop stops serve with SIGTERM and waits, killing it after 30 s.
func (s *Serve) Stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		s.t.Errorf("serve did not stop within 30 s of SIGTERM; killing it")
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
}

// checkNoInstances fails the test if an instance of this serve outlived it.
func (s *Serve) checkNoInstances() {
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := ProcessPids(s.DataDir)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			s.t.Errorf("instance processes outlived serve: %v", pids)
			for _, p := range pids {
				syscall.Kill(p, syscall.SIGKILL)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// CLICommand returns the shoal binary with args, set to reach this serve.
func (s *Serve) CLICommand(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, PlainBinary(s.t), args...)
	cmd.Env = append(append(os.Environ(), s.Env...), "SHOAL_URL="+s.URL)
	return cmd
}

// CLI runs the shoal binary with args against this serve and returns its
// stdout, stderr and error.
func (s *Serve) CLI(ctx context.Context, args ...string) (string, string, error) {
	cmd := s.CLICommand(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// Deploy deploys dir with the CLI and fails the test if that fails.
func (s *Serve) Deploy(dir string, args ...string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, errOut, err := s.CLI(ctx, append([]string{"deploy", dir}, args...)...)
	if err != nil {
		s.t.Fatalf("shoal deploy %s: %v\n%s", dir, err, errOut)
	}
	return strings.TrimSpace(out)
}

// Get fetches url and returns the status, body and response.
func Get(t testing.TB, url string) (int, string, *http.Response) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp
}

// InstancePids returns the pids of dataDir's runtimes that serve an
// instance (not the spares waiting to) and of their descendants (node, and
// what node started).
func InstancePids(dataDir string) []int { return processTree(dataDir, false) }

// ProcessPids returns the pids of all dataDir's runtimes, spares included,
// and of their descendants: nothing of them should outlive serve.
func ProcessPids(dataDir string) []int { return processTree(dataDir, true) }

// processTree returns dataDir's runtimes (a runtime's command line names
// dataDir: its bundle's folder or its --of) and their descendants. A spare
// counts once it has a child (it started node), or always with spares.
func processTree(dataDir string, spares bool) []int {
	abs, _ := filepath.Abs(dataDir)
	var runtimes []int
	isSpare := map[int]bool{}
	parents := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || isZombie(pid) {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte("\x00runtime\x00")) &&
			(bytes.Contains(b, []byte(abs+"/deployments/")) || bytes.Contains(b, []byte("\x00--of\x00"+abs+"\x00"))) {
			runtimes = append(runtimes, pid)
			isSpare[pid] = bytes.Contains(b, []byte("\x00--spare\x00"))
		} else if ppid := parentOf(pid); ppid > 0 {
			parents[pid] = ppid
		}
	}
	hasChild := map[int]bool{}
	for _, ppid := range parents {
		hasChild[ppid] = true
	}
	// Descendants, however deep, of the runtimes kept.
	var pids []int
	in := map[int]bool{}
	for _, p := range runtimes {
		if spares || !isSpare[p] || hasChild[p] {
			in[p] = true
			pids = append(pids, p)
		}
	}
	for grew := true; grew; {
		grew = false
		for pid, ppid := range parents {
			if in[ppid] && !in[pid] {
				in[pid], grew = true, true
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// parentOf returns pid's parent, or 0.
func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// RuntimePids returns the pids of dataDir's runtimes that serve an instance.
func RuntimePids(dataDir string) []int {
	var out []int
	for _, pid := range InstancePids(dataDir) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if bytes.Contains(b, []byte("\x00runtime\x00")) {
			out = append(out, pid)
		}
	}
	return out
}

var stateRE = regexp.MustCompile(`\) (\S) `)

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	m := stateRE.FindSubmatch(b)
	return m != nil && string(m[1]) == "Z"
}

// Eventually polls cond every 20 ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Memory is a process's memory, in bytes, from /proc/PID/smaps_rollup.
type Memory struct {
	RSS     int64 // resident
	PSS     int64 // resident, each shared page divided among its sharers
	Private int64 // resident and shared with no other process
}

// MemoryOf reads pid's memory.
func MemoryOf(pid int) (Memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return Memory{}, err
	}
	var m Memory
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[2] != "kB" {
			continue
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("smaps_rollup of %d: %q: %w", pid, line, err)
		}
		switch f[0] {
		case "Rss:":
			m.RSS = kb << 10
		case "Pss:":
			m.PSS = kb << 10
		case "Private_Clean:", "Private_Dirty:":
			m.Private += kb << 10
		}
	}
	if m.RSS == 0 {
		return Memory{}, fmt.Errorf("smaps_rollup of %d: no Rss", pid)
	}
	return m, nil
}
