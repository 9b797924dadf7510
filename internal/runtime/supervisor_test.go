package runtime

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/nodelink"
	"github.com/shoal-dev/shoal/internal/runtime/bootstrap"
)

// logBuffer collects what the supervisor writes to Config.Logs.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// start runs a supervisor on a bundle whose source is src.
func start(t testing.TB, src string, maxDuration time.Duration) (*Supervisor, *logBuffer, error) {
	t.Helper()
	dir, err := os.MkdirTemp("", "shoal-rt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bundle := filepath.Join(dir, "index.mjs")
	if err := os.WriteFile(bundle, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{Bundle: bundle, Dir: dir, MaxDuration: maxDuration, Logs: logs, Env: []string{"PATH=" + os.Getenv("PATH")}})
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, logs, err
}

// link is a client of s's node, as serve's invoker has one (over lanes),
// with s's loops.
func link(t *testing.T, s *Supervisor) *nodelink.Client {
	c := nodelink.NewLanes(s.sock)
	c.SetLoops(s.Stats().Loops)
	t.Cleanup(c.Close)
	return c
}

// invoke sends one invocation to node through c and returns its status
// and body, or the error of a connection that broke.
func invoke(c *nodelink.Client, path, id string) (int, string, error) {
	req := httptest.NewRequest("GET", "http://fn"+path, nil)
	req.Header.Set("x-shoal-id", id)
	resp, err := c.RoundTrip(req, time.Now().Add(30*time.Second))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

const handler = `
export default async function (req, res) {
  if (req.url === '/exit') { setTimeout(() => process.exit(3), 50); return new Promise(() => {}); }
  console.log('served ' + req.headers['x-shoal-id']);
  res.end('ok');
}
`

func TestSupervisor_Serves(t *testing.T) {
	s, logs, err := start(t, handler, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if status, body, err := invoke(link(t, s), "/", "inv1"); err != nil || status != 200 || body != "ok" {
		t.Fatalf("got %d %q %v, want 200 ok", status, body, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), `"id":"inv1","stream":"stdout","msg":"served inv1"`) {
		if time.Now().After(deadline) {
			t.Fatalf("log record for inv1 not written; logs:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSupervisor_Lanes: invocations go over lanes, which node holds open
// as two FIFOs each, one per connection; a request for a lane that is not
// one serve makes reaches the handler, and one for FIFOs that are not
// there fails, so that serve keeps the socket.
func TestSupervisor_Lanes(t *testing.T) {
	s, _, err := start(t, `export default (req, res) => setTimeout(() => res.end('handler ' + req.url), 50);`, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := link(t, s)
	for round := range 3 {
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				if status, body, err := invoke(c, "/x", fmt.Sprint("inv", round, i)); err != nil || status != 200 || body != "handler /x" {
					t.Errorf("invocation %d.%d: %d %q %v, want 200 %q", round, i, status, body, err, "handler /x")
				}
			})
		}
		wg.Wait()
	}
	// A lane per connection, at most four: two FIFOs each, removed from
	// the folder once open. The first is asked for in the background.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		ins, outs := laneFIFOs(s.cmd.Process.Pid)
		if ins == outs && ins >= 1 && ins <= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node holds %d requests and %d responses FIFOs open, want the same, 1 to 4", ins, outs)
		}
	}
	if left, _ := filepath.Glob(s.sock + ".lane-*"); len(left) != 0 {
		t.Errorf("lane FIFOs left in the folder: %q", left)
	}

	sock, err := net.Dial("unix", s.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	br := bufio.NewReader(sock)
	for _, tc := range []struct{ header, want string }{
		{"", "handler /.shoal-lane"},                       // no token: a request like any other
		{"X-Shoal-Lane: ../x\r\n", "handler /.shoal-lane"}, // not a token serve makes
		{"X-Shoal-Lane: nofifos\r\n", "500"},               // a token, with no FIFOs
	} {
		fmt.Fprintf(sock, "GET /.shoal-lane HTTP/1.1\r\nHost: fn\r\nX-Shoal-Id: lane\r\n%s\r\n", tc.header)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		got := strconv.Itoa(resp.StatusCode)
		if resp.StatusCode == 200 {
			got = string(body)
		}
		if got != tc.want {
			t.Errorf("%q: got %s (%q), want %s", tc.header, got, body, tc.want)
		}
	}
}

// laneFIFOs counts the lanes' requests and responses FIFOs that process
// pid holds open.
func laneFIFOs(pid int) (ins, outs int) {
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	for _, fd := range fds {
		if to, err := os.Readlink(fd); err == nil && strings.Contains(to, ".lane-") {
			switch {
			case strings.HasSuffix(to, ".in (deleted)"):
				ins++
			case strings.HasSuffix(to, ".out (deleted)"):
				outs++
			}
		}
	}
	return ins, outs
}

// TestSupervisor_FirstInvocationOverTheSocket: a new node's first
// invocation does not wait for a lane; the invocations after it get one
// without asking.
func TestSupervisor_FirstInvocationOverTheSocket(t *testing.T) {
	s, _, err := start(t, `import fs from 'node:fs';
export default (req, res) => res.end(fs.readlinkSync('/proc/self/fd/' + req.socket._handle.fd));`, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := link(t, s)
	if status, body, err := invoke(c, "/", "first"); err != nil || status != 200 || !strings.HasPrefix(body, "socket:") {
		t.Fatalf("first invocation: %d %q %v, want 200 over a socket", status, body, err)
	}
	for i := 0; ; i++ {
		status, body, err := invoke(c, "/", fmt.Sprint("inv", i))
		if err != nil || status != 200 {
			t.Fatalf("invocation %d: %d %q %v", i, status, body, err)
		}
		if strings.Contains(body, ".lane-") {
			break
		}
		if i == 500 {
			t.Fatalf("invocation %d still over %q, want a lane", i, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ins, outs := laneFIFOs(s.cmd.Process.Pid); ins != 1 || outs != 1 {
		t.Errorf("node holds %d requests and %d responses FIFOs open, want one lane", ins, outs)
	}
}

// BenchmarkFirstInvocation measures a new node's first invocation, from
// its start to the response, through a client with lanes, as serve's, and
// through one that keeps to the socket, side by side in each iteration:
//
//	go test -run '^$' -bench FirstInvocation -benchtime 30x ./internal/runtime
func BenchmarkFirstInvocation(b *testing.B) {
	var took [2][]time.Duration // socket, lanes
	for i := 0; b.Loop(); i++ {
		for k := range 2 {
			lanes := (i+k)%2 == 1
			s, _, err := start(b, `export default (req, res) => res.end('ok');`, 5*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			c := nodelink.New(s.sock)
			if lanes {
				c = nodelink.NewLanes(s.sock)
			}
			t0 := time.Now()
			if status, _, err := invoke(c, "/", "first"); err != nil || status != 200 {
				b.Fatalf("got %d %v, want 200", status, err)
			}
			took[btoi(lanes)] = append(took[btoi(lanes)], time.Since(t0))
			c.Close()
			s.Close()
		}
	}
	diffs := make([]time.Duration, len(took[0]))
	for i := range diffs {
		diffs[i] = took[1][i] - took[0][i]
	}
	for name, d := range map[string][]time.Duration{"socket": took[0], "lanes": took[1], "lanes-minus-socket": diffs} {
		slices.Sort(d)
		b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, "ms-p50-"+name)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestSupervisor_NodeExitFailsInFlight(t *testing.T) {
	s, _, err := start(t, handler, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if status, _, err := invoke(link(t, s), "/exit", "dies"); err == nil {
		t.Errorf("got %d, want the connection broken", status)
	}
	select {
	case <-s.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("Exited not closed after node exited")
	}
	if s.ExitErr() == nil {
		t.Error("ExitErr() = nil, want exit status 3")
	}
}

func TestSupervisor_StartErrors(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"throws_at_import", "throw new Error('boom at load')", "boom at load"},
		{"no_usable_export", "export default 42", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := start(t, tt.src, time.Second)
			var se *StartError
			if !errors.As(err, &se) {
				t.Fatalf("Start error = %v, want a *StartError", err)
			}
			if !strings.Contains(se.Msg, tt.want) {
				t.Errorf("StartError %q does not mention %q", se.Msg, tt.want)
			}
		})
	}
}

func TestSupervisor_CloseTwice(t *testing.T) {
	s, _, err := start(t, handler, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s.Close()
	select {
	case <-s.Exited():
	default:
		t.Error("Exited not closed after Close")
	}
}

func TestStart_PanicsWithoutRequiredConfig(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Start with an empty Config did not panic")
		}
	}()
	Start(context.Background(), Config{})
}

func TestSupervisor_Stats(t *testing.T) {
	s, _, err := start(t, `
export default {
  async fetch(req, ctx) {
    const url = new URL(req.url);
    if (url.pathname === '/burn') {
      const t = Date.now();
      while (Date.now() - t < 300) {}
    }
    if (url.pathname === '/hold') await new Promise((r) => setTimeout(r, 500));
    if (url.pathname === '/later') {
      ctx.waitUntil(new Promise((r) => setTimeout(r, 200)));
    }
    if (url.pathname === '/soon') {
      await new Promise((r) => ctx.waitUntil(new Promise((ok) => setTimeout(() => { ok(); r(); }, 10))));
    }
    return new Response('ok');
  },
};
`, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	before := s.Stats()
	if before.RSS < 10<<20 || before.InFlight != 0 {
		t.Errorf("idle stats %+v, want node's RSS (MBs) and nothing in flight", before)
	}
	c := link(t, s)
	invoke(c, "/burn", "b1")
	after := s.Stats()
	// The loop runs 300 ms of wall time; on a busy machine node gets the
	// CPU for less of it.
	if got := after.CPU - before.CPU; got < 100*time.Millisecond {
		t.Errorf("CPU grew by %v over a 300 ms busy loop, want at least 100 ms", got)
	}

	// waitUntil work that outlives the response is reported once, with the
	// time it went on; work that settled before the response is not.
	invoke(c, "/soon", "s1")
	began := time.Now()
	invoke(c, "/later", "l1")
	var got []Waited
	for deadline := time.Now().Add(5 * time.Second); len(got) == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		got = append(got, s.Stats().Waited...)
	}
	time.Sleep(100 * time.Millisecond)
	got = append(got, s.Stats().Waited...)
	if len(got) != 1 || got[0].ID != "l1" {
		t.Fatalf("waited %+v, want l1 alone", got)
	}
	if d := got[0].To.Sub(got[0].From); d < 150*time.Millisecond || got[0].From.Before(began.Add(-time.Second)) {
		t.Errorf("l1 waited %+v (%v), want about 200 ms after its response", got[0], d)
	}

	// In flight while node holds it, as node reports.
	held := make(chan struct{})
	go func() {
		defer close(held)
		invoke(c, "/hold", "h1")
	}()
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().InFlight != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := s.Stats().InFlight; n != 1 {
		t.Errorf("in flight %d during an invocation, want 1", n)
	}
	<-held

	s.Close()
	if st := s.Stats(); st.CPU < after.CPU || st.RSS != 0 {
		t.Errorf("stats after exit %+v, want CPU kept (at least %v) and no RSS", st, after.CPU)
	}
}

func TestProcStat(t *testing.T) {
	self := procFile{path: "/proc/" + strconv.Itoa(os.Getpid()) + "/stat"}
	defer self.close()
	cpu, rss, err := readProcStat(&self)
	if err != nil || cpu <= 0 || rss <= 0 {
		t.Errorf("readProcStat(self) = %v, %d, %v; want CPU and RSS above 0", cpu, rss, err)
	}
	none := procFile{path: "/proc/" + strconv.Itoa(1<<30) + "/stat"}
	if _, _, err := readProcStat(&none); err == nil {
		t.Error("readProcStat of no process: no error")
	}
}

// A /proc file kept open reads what holds now, not what held when it was
// opened.
func TestProcFile_ReadsAgain(t *testing.T) {
	pf := procFile{path: "/proc/" + strconv.Itoa(os.Getpid()) + "/stat"}
	defer pf.close()
	before, _, err := readProcStat(&pf)
	if err != nil {
		t.Fatal(err)
	}
	var after time.Duration
	for deadline := time.Now().Add(5 * time.Second); after <= before && time.Now().Before(deadline); {
		for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
		}
		if after, _, err = readProcStat(&pf); err != nil {
			t.Fatal(err)
		}
	}
	if after <= before {
		t.Errorf("CPU read through one open file stayed %v after busy loops", before)
	}
}

func TestSupervisor_LoopLoad(t *testing.T) {
	s, _, err := start(t, `
export default function (req, res) {
  const t = Date.now();
  while (Date.now() - t < 800) {}
  res.end('ok');
}
`, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Idle: node reports a loop with little to do.
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Loop == (Loop{}) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if l := s.Stats().Loop; l.Utilization > 0.5 || l.DelayMax > 100*time.Millisecond {
		t.Errorf("idle loop %+v, want it mostly idle and timers on time", l)
	}
	// A handler that holds the loop: node cannot report, and the loop
	// counts as blocked for as long as its last report is old.
	done := make(chan struct{})
	go func() {
		defer close(done)
		invoke(link(t, s), "/", "burn")
	}()
	// Until then, the report node sent as the invocation began (of the
	// idle time it ended) does not count as the loop's load.
	var busy Loop
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		st := s.Stats()
		if st.InFlight > 0 && st.LoopKnown && st.Loop.Utilization < 1 {
			t.Fatalf("loop at the start of an 800 ms busy handler %+v, judged by the idle time before it", st.Loop)
		}
		if busy = st.Loop; busy.Utilization == 1 && busy.DelayMax >= loadEvery+loopLate {
			break
		}
	}
	if busy.Utilization != 1 || busy.DelayMax < loadEvery+loopLate {
		t.Errorf("loop during an 800 ms busy handler %+v, want blocked", busy)
	}
	<-done
	// Once free, node's next report says how late its timer ran.
	var late time.Duration
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		late = max(late, s.Stats().Loop.DelayMax)
	}
	if late < 500*time.Millisecond {
		t.Errorf("node reported its timer at most %v late after an 800 ms block", late)
	}
}

// cjsBundle is a CommonJS bundle as the build makes one from an ES module
// (esbuild marks its exports __esModule): its banner makes __filename the
// source's, and import.meta's values come in __shoalImportMeta.
const cjsBundle = `__filename = require("node:path").join(__dirname, "index.mjs");
var path = require("node:path");
module.exports = { __esModule: true, config: { maxDuration: 7 }, default: (req, res) =>
  res.end([path.basename(__filename), path.basename(__shoalImportMeta.filename), __shoalImportMeta.url.startsWith("file:///"), this === undefined].join(" ")) };
`

// TestSupervisor_CodeCache: the check makes a CommonJS bundle's code
// cache; an instance with the memory it was made for takes it, one with
// another memory (other node flags) compiles the bundle instead and says
// so in a record; without a cache there is nothing to take. Each serves.
func TestSupervisor_CodeCache(t *testing.T) {
	dir, err := os.MkdirTemp("", "shoal-rt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bundle := filepath.Join(dir, ".shoal-index.mjs.cjs")
	if err := os.WriteFile(bundle, []byte(cjsBundle), 0o644); err != nil {
		t.Fatal(err)
	}
	checked, err := bootstrap.Check(t.Context(), "", bundle, dir, t.TempDir(), nil, 256)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if string(checked.Config) != `{"maxDuration":7}` || len(checked.CodeCache) == 0 {
		t.Fatalf("Check = config %s, %d bytes of code cache; want the config and a cache", checked.Config, len(checked.CodeCache))
	}
	for _, tc := range []struct {
		name     string
		cache    bool
		memoryMB int
		want     string
	}{
		{"same_flags", true, 256, "accepted"},
		{"other_flags", true, 512, "rejected"},
		{"no_cache", false, 256, "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(bootstrap.CodeCache(bundle))
			if tc.cache {
				if err := os.WriteFile(bootstrap.CodeCache(bundle), checked.CodeCache, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			logs := &logBuffer{}
			s, err := Start(t.Context(), Config{Bundle: bundle, Dir: dir, MaxDuration: 5 * time.Second, MemoryMB: tc.memoryMB, Logs: logs})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := s.CodeCache(); got != tc.want {
				t.Errorf("code cache %s, want %s", got, tc.want)
			}
			if said := strings.Contains(logs.String(), "refused the bundle's code cache"); said != (tc.want == "rejected") {
				t.Errorf("a record says the cache was refused: %v, want %v; logs:\n%s", said, !said, logs)
			}
			if status, body, err := invoke(link(t, s), "/", "inv1"); err != nil || status != 200 || body != "index.mjs .shoal-index.mjs.cjs true true" {
				t.Errorf("got %d %q %v, want 200 with the names", status, body, err)
			}
		})
	}
}

// TestCheck_NoCodeCacheForESModules: an ES module bundle gets no cache.
func TestCheck_NoCodeCacheForESModules(t *testing.T) {
	dir := t.TempDir()
	bundle := filepath.Join(dir, ".shoal-index.mjs.mjs")
	if err := os.WriteFile(bundle, []byte("await 0; export default (req, res) => res.end()\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	checked, err := bootstrap.Check(t.Context(), "", bundle, dir, t.TempDir(), nil, 256)
	if err != nil || checked.CodeCache != nil {
		t.Fatalf("Check = %d bytes of code cache, %v; want none", len(checked.CodeCache), err)
	}
}
