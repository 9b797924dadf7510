package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestArgv(t *testing.T) {
	spec := Spec{ID: "i1", Project: "app", Deployment: "d1", Bundle: "/data/deployments/d1/bundle.js", WorkDir: "/data/deployments/d1",
		MaxDuration: 90 * time.Second, MemoryMB: 256, TunnelAddr: "127.0.0.1:4567", Token: "tok"}
	tests := []struct {
		name      string
		exe, node string
		spec      Spec
		want      []string
	}{
		{"default_node", "/usr/bin/shoal", "", spec, []string{"/usr/bin/shoal", "runtime",
			"--id", "i1", "--tunnel", "127.0.0.1:4567", "--bundle", "/data/deployments/d1/bundle.js",
			"--workdir", "/data/deployments/d1", "--dir", "/tmp/s", "--max-duration", "1m30s", "--memory", "256"}},
		{"node", "/usr/bin/shoal", "/opt/node/bin/node", spec, []string{"/usr/bin/shoal", "runtime",
			"--id", "i1", "--tunnel", "127.0.0.1:4567", "--bundle", "/data/deployments/d1/bundle.js",
			"--workdir", "/data/deployments/d1", "--dir", "/tmp/s", "--max-duration", "1m30s", "--memory", "256", "--node", "/opt/node/bin/node"}},
		{"zero_spec", "shoal", "", Spec{}, []string{"shoal", "runtime",
			"--id", "", "--tunnel", "", "--bundle", "", "--workdir", "", "--dir", "/tmp/s", "--max-duration", "0s", "--memory", "0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Argv(tt.exe, tt.node, "/tmp/s", tt.spec)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if slices.ContainsFunc(got, func(a string) bool { return tt.spec.Token != "" && strings.Contains(a, tt.spec.Token) }) {
				t.Errorf("argv %q holds the token: it would show in ps", got)
			}
		})
	}
}

func TestEnv(t *testing.T) {
	// Secrets and noise of the parent that must not reach an instance.
	t.Setenv("SHOAL_TOKEN", "admin-secret")
	t.Setenv("SHOAL_TEST_PARENT_VAR", "leak")
	t.Setenv("NODE_OPTIONS", "--require /tmp/evil.js")
	t.Setenv("TZ", "Europe/Paris")
	path := os.Getenv("PATH")
	tests := []struct {
		name string
		spec Spec
		want []string
	}{
		{"plain", Spec{ID: "i1", Token: "tunnel-tok"}, []string{
			"PATH=" + path, "HOME=/tmp/s", "TMPDIR=/tmp/s", "NODE_ENV=production", "TZ=UTC", "LANG=C.UTF-8",
			"SHOAL_TUNNEL_TOKEN=tunnel-tok"}},
		{"function_env", Spec{ID: "i1", Token: "tunnel-tok", Env: []string{"GREETING=hi", "DEBUG=1"}}, []string{
			"PATH=" + path, "HOME=/tmp/s", "TMPDIR=/tmp/s", "NODE_ENV=production", "TZ=UTC", "LANG=C.UTF-8",
			"GREETING=hi", "DEBUG=1", "SHOAL_TUNNEL_TOKEN=tunnel-tok"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Env("/tmp/s", tt.spec)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			env := envMap(t, got)
			for k, want := range map[string]string{TokenEnv: tt.spec.Token, "NODE_ENV": "production", "TZ": "UTC"} {
				if env[k] != want {
					t.Errorf("%s=%q, want %q", k, env[k], want)
				}
			}
			for _, kv := range got {
				if strings.Contains(kv, tt.spec.Token) && kv != TokenEnv+"="+tt.spec.Token {
					t.Errorf("%q holds the token outside %s", kv, TokenEnv)
				}
			}
			for _, k := range []string{"SHOAL_TOKEN", "SHOAL_TEST_PARENT_VAR", "NODE_OPTIONS"} {
				if v, ok := env[k]; ok {
					t.Errorf("parent's %s=%q passed through", k, v)
				}
			}
		})
	}
}

// envMap turns KEY=value lines into a map, failing on a repeated key.
func envMap(t *testing.T, env []string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Errorf("env entry %q has no =", kv)
			continue
		}
		if _, dup := m[k]; dup {
			t.Errorf("env has %s twice", k)
		}
		m[k] = v
	}
	return m
}

func TestNew_RequiresExe(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("New without Exe did not panic")
		}
	}()
	New(Config{})
}

// logged is one call of Config.Logs.
type logged struct {
	spec   Spec
	stream string
	line   string
}

// logSink collects what a Sandbox forwards.
type logSink struct {
	mu    sync.Mutex
	lines []logged
	added chan struct{} // a token after every line
}

func newSink() *logSink { return &logSink{added: make(chan struct{}, 1000)} }

func (s *logSink) add(sp *Spec, stream string, line []byte) {
	s.mu.Lock()
	// line is only valid during the call.
	s.lines = append(s.lines, logged{*sp, stream, string(line)})
	s.mu.Unlock()
	s.added <- struct{}{}
}

func (s *logSink) get() []logged {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lines)
}

// waitFor waits until n lines were forwarded.
func (s *logSink) waitFor(t *testing.T, n int) []logged {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if got := s.get(); len(got) >= n {
			return got
		}
		select {
		case <-s.added:
		case <-deadline:
			t.Fatalf("got lines %+v after 10 s, want %d", s.get(), n)
		}
	}
}

// fakeRuntime writes an executable shell script that stands for the shoal
// binary: it records its arguments, environment and working folder, starts
// child in the background (in its process group) and records its pid, then
// runs body. The records go to files in the returned folder.
func fakeRuntime(t *testing.T, child, body string) (exe, records string) {
	t.Helper()
	records = t.TempDir()
	if child != "" {
		child = fmt.Sprintf("%s\necho $! > %[2]s/child.pid.tmp && mv %[2]s/child.pid.tmp %[2]s/child.pid", child, records)
	}
	script := fmt.Sprintf(`#!/bin/sh
printf '%%s\n' "$@" > %[1]s/args
env > %[1]s/env
pwd -P > %[1]s/cwd
%[2]s
%[3]s
`, records, child, body)
	exe = filepath.Join(t.TempDir(), "shoal")
	if err := os.WriteFile(exe, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return exe, records
}

func readRecord(t *testing.T, records, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(records, name))
	if err != nil {
		t.Fatalf("record %s: %v", name, err)
	}
	return strings.TrimRight(string(b), "\n")
}

// gone reports whether process pid no longer runs (it may be a zombie its
// new parent has not reaped yet).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command's closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// waitGone polls until pid is gone.
func waitGone(t *testing.T, pid int, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !gone(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("%s (pid %d) still runs 10 s after the instance stopped", what, pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitDone(t *testing.T, p *Process) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed 10 s after the process stopped")
	}
}

// tempDir makes a temporary folder for a test's scratch folders and sets
// TMPDIR to it: one all may search, as a jailed runtime needs (else the
// sandbox takes /tmp).
func tempDir(t *testing.T) string {
	t.Helper()
	tmp := t.TempDir()
	for _, d := range []string{filepath.Dir(tmp), tmp} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("TMPDIR", tmp)
	return tmp
}

// scratchDirs lists the instance scratch folders in tmp: in the scratch
// folder of the sandbox, beside its lock file.
func scratchDirs(t *testing.T, tmp string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(tmp, scratchPattern, "*-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// killGroup makes sure nothing of the instance outlives a failed test.
func killGroup(t *testing.T, p *Process) {
	t.Cleanup(func() {
		select {
		case <-p.Done():
		default:
			syscall.Kill(-p.Pid(), syscall.SIGKILL)
		}
	})
}

var testSpec = Spec{ID: "inst1", Project: "app", Deployment: "dep1", Bundle: "/nowhere/bundle.js",
	MaxDuration: 5 * time.Second, MemoryMB: 128, TunnelAddr: "127.0.0.1:1", Token: "one-time-token",
	Env: []string{"GREETING=hi"}}

func TestSandbox_StartStop(t *testing.T) {
	tests := []struct {
		name    string
		trap    string        // the script's first command
		timeout time.Duration // Stop's ctx
		wantErr error         // from Stop
	}{
		{"sigterm", "", 30 * time.Second, nil},
		// The child and sleep inherit the ignored SIGTERM.
		{"ignores_sigterm", "trap '' TERM", 300 * time.Millisecond, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp := tempDir(t) // where Start makes scratch folders
			t.Setenv("SHOAL_TEST_PARENT_VAR", "leak")
			// The child shares the script's stdout and stderr: the
			// output ends only when the whole group is gone.
			exe, records := fakeRuntime(t, tt.trap+"\nsleep 60 &", `echo '{"type":"log","msg":"hello"}'
echo 'runtime says hi' >&2
sleep 60`)
			sink := newSink()
			sb := mustNew(t, Config{Exe: exe, Node: "/opt/node", Logs: sink.add})
			p, err := sb.Start(t.Context(), testSpec)
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			killGroup(t, p)

			// Both lines reach Logs, each with its stream and the spec.
			got := sink.waitFor(t, 2)
			slices.SortFunc(got, func(a, b logged) int { return strings.Compare(a.stream, b.stream) })
			want := []logged{
				{testSpec, "stderr", "runtime says hi"},
				{testSpec, "stdout", `{"type":"log","msg":"hello"}`},
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got lines %+v, want %+v", got, want)
			}

			// The script ran with the runtime's command line and
			// environment, in its scratch folder, in its own group.
			dirs := scratchDirs(t, tmp)
			if len(dirs) != 1 || !strings.HasPrefix(filepath.Base(dirs[0]), "inst1-") {
				t.Fatalf("scratch folders %q, want one inst1-*", dirs)
			}
			dir := dirs[0]
			if got, want := strings.Split(readRecord(t, records, "args"), "\n"), Argv(exe, "/opt/node", dir, testSpec)[1:]; !reflect.DeepEqual(got, want) {
				t.Errorf("got args %q, want %q", got, want)
			}
			if got := readRecord(t, records, "cwd"); got != dir {
				t.Errorf("got working folder %q, want %q", got, dir)
			}
			env := map[string]string{}
			for _, kv := range strings.Split(readRecord(t, records, "env"), "\n") {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
			for _, kv := range Env(dir, testSpec) {
				k, v, _ := strings.Cut(kv, "=")
				if env[k] != v {
					t.Errorf("instance has %s=%q, want %q", k, env[k], v)
				}
			}
			if v, ok := env["SHOAL_TEST_PARENT_VAR"]; ok {
				t.Errorf("parent's SHOAL_TEST_PARENT_VAR=%q reached the instance", v)
			}
			child, err := strconv.Atoi(readRecord(t, records, "child.pid"))
			if err != nil {
				t.Fatal(err)
			}
			for _, pid := range []int{p.Pid(), child} {
				if pgid, err := syscall.Getpgid(pid); err != nil || pgid != p.Pid() {
					t.Errorf("pid %d is in group %d (%v), want %d", pid, pgid, err, p.Pid())
				}
			}
			select {
			case <-p.Done():
				t.Fatal("Done closed before Stop")
			default:
			}

			ctx, cancel := context.WithTimeout(t.Context(), tt.timeout)
			defer cancel()
			stopped := make(chan error, 1)
			go func() { stopped <- p.Stop(ctx) }()
			select {
			case err := <-stopped:
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("Stop: got %v, want %v", err, tt.wantErr)
				}
			case <-time.After(tt.timeout + 10*time.Second):
				t.Fatalf("Stop still running %s after its ctx ended", 10*time.Second)
			}
			waitDone(t, p)
			if p.Err() == nil {
				t.Error("Err is nil: want the signal that ended the process")
			}
			if !gone(p.Pid()) {
				t.Errorf("runtime pid %d still runs after Stop", p.Pid())
			}
			waitGone(t, child, "the runtime's child")
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("scratch folder %s: got %v, want it removed", dir, err)
			}
			// Stopping again is a no-op.
			if err := p.Stop(t.Context()); err != nil {
				t.Errorf("second Stop: %v", err)
			}
		})
	}
}

// TestSandbox_Exits checks an instance that ends by itself while a child
// it started lingers, as node may: Done closes, Err has its status, the
// group is killed, the scratch folder removed, and Stop returns at once.
func TestSandbox_Exits(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		wantCode int
	}{
		{"ok", "exit 0", 0},
		{"fails", "echo 'cannot start node' >&2\nexit 3", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp := tempDir(t) // where Start makes scratch folders
			// Like node, the child has output of its own.
			exe, records := fakeRuntime(t, "sleep 60 >/dev/null 2>&1 &", tt.body)
			sb := mustNew(t, Config{Exe: exe})
			p, err := sb.Start(t.Context(), testSpec)
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			killGroup(t, p)
			waitDone(t, p)
			var ee *exec.ExitError
			switch {
			case tt.wantCode == 0 && p.Err() != nil:
				t.Errorf("Err = %v, want nil", p.Err())
			case tt.wantCode != 0 && (!errors.As(p.Err(), &ee) || ee.ExitCode() != tt.wantCode):
				t.Errorf("Err = %v, want exit status %d", p.Err(), tt.wantCode)
			}
			child, err := strconv.Atoi(readRecord(t, records, "child.pid"))
			if err != nil {
				t.Fatal(err)
			}
			waitGone(t, child, "the runtime's child")
			if dirs := scratchDirs(t, tmp); len(dirs) != 0 {
				t.Errorf("scratch folders %q left, want none", dirs)
			}
			if err := p.Stop(t.Context()); err != nil {
				t.Errorf("Stop after exit: %v", err)
			}
		})
	}
}

// TestSandbox_ExitsChildHoldsOutput is TestSandbox_Exits with a child that
// kept the runtime's stdout and stderr. The runtime has exited, so Done
// should close and the group be killed; but Start's reaper waits for the
// output to end before it reaps the runtime and kills the group, and the
// output ends only when the child exits by itself.
func TestSandbox_ExitsChildHoldsOutput(t *testing.T) {
	tempDir(t) // where Start makes scratch folders
	exe, records := fakeRuntime(t, "sleep 60 &", "exit 3")
	p, err := mustNew(t, Config{Exe: exe}).Start(t.Context(), testSpec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	killGroup(t, p)
	child, err := strconv.Atoi(func() string {
		// The record is there once the script has exited.
		deadline := time.Now().Add(10 * time.Second)
		for !gone(p.Pid()) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		return readRecord(t, records, "child.pid")
	}())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(child, syscall.SIGKILL) })
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("Done not closed 5 s after the runtime (pid %d) exited: its child %d holds its output open", p.Pid(), child)
	}
	waitGone(t, child, "the runtime's child")
}

func TestSandbox_StartFails(t *testing.T) {
	tmp := tempDir(t) // where Start makes scratch folders
	sb := mustNew(t, Config{Exe: filepath.Join(t.TempDir(), "no-such-shoal")})
	p, err := sb.Start(t.Context(), testSpec)
	if err == nil {
		syscall.Kill(-p.Pid(), syscall.SIGKILL)
		t.Fatal("Start of a missing binary succeeded")
	}
	if !strings.Contains(err.Error(), testSpec.ID) {
		t.Errorf("error %q does not name the instance %s", err, testSpec.ID)
	}
	if dirs := scratchDirs(t, tmp); len(dirs) != 0 {
		t.Errorf("scratch folders %q left, want none", dirs)
	}
}

// TestSandbox_Lines checks how output is cut into lines.
func TestSandbox_Lines(t *testing.T) {
	long := strings.Repeat("x", 150_000)
	tests := []struct {
		name string
		body string
		want []string // the stdout lines; a long line may come in pieces
	}{
		{"lines", `printf 'a\nb\n'`, []string{"a", "b"}},
		{"empty_lines_dropped", `printf 'a\n\n\nb\n'`, []string{"a", "b"}},
		{"last_line_without_newline", `printf 'a\nb'`, []string{"a", "b"}},
		{"crlf_kept", `printf 'a\r\n'`, []string{"a\r"}},
		{"long_line_in_pieces", `head -c 150000 /dev/zero | tr '\0' x; echo; echo after`, []string{long, "after"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("TMPDIR", t.TempDir())
			exe, _ := fakeRuntime(t, "", tt.body)
			sink := newSink()
			p, err := mustNew(t, Config{Exe: exe, Logs: sink.add}).Start(t.Context(), testSpec)
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			killGroup(t, p)
			waitDone(t, p)
			var got []string
			for _, l := range sink.get() {
				if l.stream != "stdout" {
					t.Errorf("got %s line %q, want stdout only", l.stream, l.line)
					continue
				}
				if len(l.line) > 64<<10 {
					t.Errorf("got a line of %d bytes, want pieces of at most %d", len(l.line), 64<<10)
				}
				got = append(got, l.line)
			}
			if len(got) > len(tt.want) {
				// Join the pieces of the long line.
				n := len(got) - len(tt.want) + 1
				got = append([]string{strings.Join(got[:n], "")}, got[n:]...)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %d lines %.40q, want %.40q", len(got), got, tt.want)
			}
		})
	}
}

// mustNew is New for a test, whose isolation is off unless cfg says.
func mustNew(t *testing.T, cfg Config) *Sandbox {
	t.Helper()
	sb, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sb.Close)
	return sb
}

// TestSandbox_TunnelSocketPair: with Spec.Tunnel the runtime inherits one
// end of a socket pair, named by --tunnel-fd, and Tunnel gets the other;
// the token stays out of the runtime's environment.
func TestSandbox_TunnelSocketPair(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	exe, records := fakeRuntime(t, "", `fd=$(printf '%s\n' "$@" | sed -n '/^--tunnel-fd$/{n;p}')
echo "hello over $fd" >&$fd
sleep 60`)
	got := make(chan net.Conn, 1)
	spec := testSpec
	spec.Tunnel = func(c net.Conn) { got <- c }
	p, err := mustNew(t, Config{Exe: exe}).Start(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	killGroup(t, p)
	var c net.Conn
	select {
	case c = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("Tunnel not called")
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "hello over ") {
		t.Fatalf("read from the runtime's end: %q %v", line, err)
	}
	if env := readRecord(t, records, "env"); strings.Contains(env, TokenEnv) || strings.Contains(env, spec.Token) {
		t.Errorf("the runtime's environment holds the token:\n%s", env)
	}
	if args := readRecord(t, records, "args"); !strings.Contains(args, "--tunnel-fd\n3") {
		t.Errorf("args %q, want --tunnel-fd 3 (the only inherited descriptor)", args)
	}
}
