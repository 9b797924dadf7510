package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testutil"
)

// instanceJS defines instance, which tells node processes apart whether
// instances are isolated or not: in a pid namespace every node is pid 2,
// and its host name is its instance id.
const instanceJS = "import { hostname } from 'node:os';\nconst instance = hostname() + ':' + process.pid;\n"

// pidHandler answers with its process id after waiting ?ms= milliseconds.
const pidHandler = instanceJS + `
export default async function (req, res) {
  const ms = Number(new URL(req.url, 'http://x').searchParams.get('ms') ?? 0);
  await new Promise((r) => setTimeout(r, ms));
  res.end(instance);
}
`

// getAll sends n concurrent GETs to url and returns the bodies.
func getAll(t *testing.T, n int, url string) []string {
	t.Helper()
	return getPaced(t, n, 0, url)
}

// getPaced sends n GETs to url, one every every (all at once for 0), and
// returns the bodies once all have answered.
func getPaced(t *testing.T, n int, every time.Duration, url string) []string {
	t.Helper()
	bodies := make([]string, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		time.Sleep(time.Until(start.Add(time.Duration(i) * every)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(url)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 {
				errs <- fmt.Errorf("status %d: %s", resp.StatusCode, b)
				return
			}
			bodies[i] = string(b)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	return bodies
}

func distinct(ss []string) map[string]int {
	m := map[string]int{}
	for _, s := range ss {
		m[s]++
	}
	return m
}

func TestConcurrency_OneProcessServesMany(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "wait", map[string]string{"index.mjs": pidHandler}))
	// Warm one instance.
	if code, body, _ := testutil.Get(t, url); code != 200 {
		t.Fatalf("warm-up: %d %s", code, body)
	}
	start := time.Now()
	bodies := getAll(t, 50, url+"?ms=300")
	elapsed := time.Since(start)
	if pids := distinct(bodies); len(pids) != 1 {
		t.Errorf("50 concurrent invocations ran in %d processes (%v), want 1", len(pids), pids)
	}
	if elapsed > 1500*time.Millisecond {
		t.Errorf("50 concurrent 300 ms invocations took %s, want well under a second of work", elapsed)
	}
	t.Logf("50 x 300 ms on one instance: %s", elapsed)
}

func TestConcurrency_OffRunsOneInvocationPerProcess(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "classic", map[string]string{
		"index.mjs":  pidHandler,
		"shoal.json": `{ "concurrency": false }`,
	}))
	// Long enough that no instance is free again before the last one
	// started, on a loaded machine too.
	bodies := getAll(t, 10, url+"?ms=3000")
	if pids := distinct(bodies); len(pids) != 10 {
		t.Errorf("10 concurrent invocations with concurrency off ran in %d processes, want 10: %v", len(pids), pids)
	}
}

func TestScaling_BurstStartsOneInstance(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "burst", map[string]string{"index.mjs": pidHandler}))
	// No instance yet: the whole burst queues while exactly one starts.
	bodies := getAll(t, 40, url+"?ms=200")
	if pids := distinct(bodies); len(pids) != 1 {
		t.Errorf("a cold burst of 40 started %d instances (%v), want 1", len(pids), pids)
	}
	if n := len(testutil.RuntimePids(s.DataDir)); n != 1 {
		t.Errorf("%d runtime processes, want 1", n)
	}
}

func TestScaling_MaxConcurrencyStartsMore(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "max4", map[string]string{
		"index.mjs":  pidHandler,
		"shoal.json": `{ "concurrency": { "max": 4 } }`,
	}))
	bodies := getAll(t, 12, url+"?ms=1000")
	counts := distinct(bodies)
	if len(counts) != 3 {
		t.Errorf("12 invocations at max 4 ran in %d processes, want 3: %v", len(counts), counts)
	}
	for pid, n := range counts {
		if n > 4 {
			t.Errorf("process %s served %d at once, want at most 4", pid, n)
		}
	}
}

func TestScaling_QueueFullIsThrottled(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{Args: []string{"--queue-size", "1", "--max-instances", "1"}})
	url := s.Deploy(testutil.WriteProject(t, "tiny", map[string]string{
		"index.mjs":  pidHandler,
		"shoal.json": `{ "concurrency": false }`,
	}))
	testutil.Get(t, url) // warm
	// One in flight, one queued, the third finds the queue full.
	held := make(chan int, 2)
	for range 2 {
		go func() {
			code, _, _ := testutil.Get(t, url+"?ms=3000")
			held <- code
		}()
	}
	time.Sleep(time.Second) // both placed: one in flight, one queued
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), `"FUNCTION_THROTTLED"`) {
		t.Errorf("third request: %d %s, want 503 FUNCTION_THROTTLED", resp.StatusCode, body)
	}
	if resp.Header.Get("retry-after") == "" || resp.Header.Get("x-shoal-id") == "" {
		t.Errorf("throttled response headers %v, want retry-after and x-shoal-id", resp.Header)
	}
	if !strings.Contains(string(body), resp.Header.Get("x-shoal-id")) {
		t.Errorf("body %s does not carry the request id", body)
	}
	for range 2 {
		if code := <-held; code != 200 {
			t.Errorf("held request: %d, want 200", code)
		}
	}
}
