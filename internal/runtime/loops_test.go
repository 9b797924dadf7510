package runtime

import (
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

const loopsHandler = `
import { threadId } from 'node:worker_threads';
export default async function (req, res) {
  if (req.url === '/hang') return new Promise(() => {});
  if (req.url === '/exit') { setTimeout(() => process.exit(7), 10); return new Promise(() => {}); }
  if (req.url === '/spin') { const end = Date.now() + 300; while (Date.now() < end); }
  console.log('on ' + threadId);
  res.end(String(threadId));
}
`

// waitLoops waits until s serves on n loops.
func waitLoops(t *testing.T, s *Supervisor, n int) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); s.Stats().Loops != n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d loops serving after 15 s, want %d", s.Stats().Loops, n)
		}
	}
}

func TestSupervisor_Loops(t *testing.T) {
	s, logs, err := start(t, loopsHandler, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.Stats().Loops; n != 1 {
		t.Fatalf("%d loops at start, want 1", n)
	}
	if err := s.SetLoops(3); err != nil {
		t.Fatal(err)
	}
	waitLoops(t, s, 3)
	c := link(t, s)

	// Three invocations that hold their loop, at once: one on each loop.
	threads := make([]string, 3)
	var wg sync.WaitGroup
	for i := range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, threads[i], _ = invoke(c, "/spin", "spin-"+string(rune('a'+i)))
		}()
		time.Sleep(20 * time.Millisecond) // in flight before the next
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, th := range threads {
		seen[th] = true
	}
	if len(seen) != 3 {
		t.Errorf("threads %q served the three, want three different ones", threads)
	}
	// Log lines of the loops in worker threads carry their invocation.
	// They travel on the control pipe, apart from the response, and may
	// come after it.
	for i, th := range threads {
		id := "spin-" + string(rune('a'+i))
		want := `"id":"` + id + `","stream":"stdout","msg":"on ` + th + `"`
		for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), want); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no log record %s in\n%s", want, logs.String())
			}
		}
	}
	for deadline := time.Now().Add(5 * time.Second); !s.Stats().LoopKnown; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no load reported")
		}
	}
	if err := s.SetLoops(2); err != nil || s.Stats().Loops != 3 {
		t.Errorf("SetLoops(2) = %v with %d loops serving, want nil and the 3 kept", err, s.Stats().Loops)
	}

	// A loop that exits ends the instance, as the main thread's would.
	go invoke(c, "/hang", "hangs") // holds loop 0: /exit goes to loop 1
	for s.Stats().InFlight != 1 {
		time.Sleep(5 * time.Millisecond)
	}
	if status, _, err := invoke(c, "/exit", "exits"); err == nil {
		t.Errorf("status %d for the invocation whose loop exited, want the connection broken", status)
	}
	select {
	case <-s.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("node still runs after a loop exited")
	}
	if err := s.ExitErr(); err == nil || !strings.Contains(err.Error(), "exit status 7") {
		t.Errorf("ExitErr() = %v, want exit status 7", err)
	}
}

func TestSupervisor_LoopThatCannotStart(t *testing.T) {
	s, logs, err := start(t, `
import { isMainThread } from 'node:worker_threads';
if (!isMainThread) throw new Error('main thread only');
export default (req, res) => res.end('ok');
`, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetLoops(2); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(logs.String(), "main thread only"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the loop's failure was not logged:\n%s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), `"stream":"system","msg":"loop 1: load `) {
		t.Errorf("the failure does not name loop 1:\n%s", logs.String())
	}
	// The record is written once the runtime knows: it asks for no more.
	if err := s.SetLoops(3); err == nil {
		t.Error("SetLoops(3) after a loop failed = nil, want an error")
	}
	if n := s.Stats().Loops; n != 1 {
		t.Errorf("%d loops serving, want the main thread's alone", n)
	}
	if status, body, err := invoke(link(t, s), "/", "still"); status != 200 || body != "ok" {
		t.Errorf("after a loop failed: %d %q %v, want 200 ok", status, body, err)
	}
	if strings.Count(logs.String(), "main thread only") != 1 {
		t.Errorf("want one failure logged, no second loop tried:\n%s", logs.String())
	}
}

func TestSupervisor_HostIdle(t *testing.T) {
	s, _, err := start(t, loopsHandler, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.HostIdle != 0 {
		t.Errorf("HostIdle %v at the first Stats, want 0: nothing to compare with", st.HostIdle)
	}
	// Spin this goroutine for 300 ms on a host of n CPUs: at most n - 1
	// of them can have been idle (with some slack for the tick). n is the
	// host's count, as /proc/stat has it, which the process's may be below.
	n := hostCPUs(t)
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
	}
	if st := s.Stats(); st.HostIdle < 0 || st.HostIdle > n-0.7 {
		t.Errorf("HostIdle %.2f of %v CPUs while one spun, want from 0 to about %v", st.HostIdle, n, n-1)
	}
	time.Sleep(300 * time.Millisecond)
	if st := s.Stats(); st.HostIdle < 0 || st.HostIdle > n+0.3 {
		t.Errorf("HostIdle %.2f of %v CPUs while this test slept, want at most all of them", st.HostIdle, n)
	}
}

// hostCPUs counts the cpuN lines of /proc/stat.
func hostCPUs(t *testing.T) float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if len(line) > 3 && strings.HasPrefix(line, "cpu") && line[3] >= '0' && line[3] <= '9' {
			n++
		}
	}
	if n == 0 {
		t.Fatal("no cpuN line in /proc/stat")
	}
	return float64(n)
}
