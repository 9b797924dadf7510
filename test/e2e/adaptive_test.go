package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testutil"
)

// burnHandler spends ms of CPU time (not wall time) per invocation, or
// waits ms when ?io is set, then waits wait ms more, and answers with its
// process id and thread id.
const burnHandler = instanceJS + `
import { threadId } from 'node:worker_threads';
export default async function (req, res) {
  const q = new URL(req.url, 'http://x').searchParams;
  const ms = Number(q.get('ms') ?? 0);
  if (q.has('io')) {
    await new Promise((r) => setTimeout(r, ms));
  } else {
    const start = process.cpuUsage();
    for (;;) {
      const u = process.cpuUsage(start);
      if ((u.user + u.system) / 1000 >= ms) break;
    }
  }
  const wait = Number(q.get('wait') ?? 0);
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  res.end(instance + ' ' + threadId);
}
`

// A CPU-bound function's instances learn a limit of about one, so bursts
// spread over instances (with one event loop each); an I/O-bound one keeps
// its max.
func TestAdaptive_CPUBoundBacksOffIOBoundDoesNot(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{Args: []string{"--verbose"}})
	cpu := s.Deploy(testutil.WriteProject(t, "burner", map[string]string{"index.mjs": burnHandler, "shoal.json": `{"concurrency": {"max": 8}, "loops": 1}`}))
	wait := s.Deploy(testutil.WriteProject(t, "waiter", map[string]string{"index.mjs": burnHandler, "shoal.json": `{"concurrency": {"max": 8}}`}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	testutil.Get(t, cpu)
	testutil.Get(t, wait)
	// Bursts of 6 × 100 ms of CPU: on one instance they would queue for
	// up to half a second.
	for range 5 {
		getAll(t, 6, cpu+"?ms=100")
		getAll(t, 6, wait+"?io&ms=100")
	}
	// Judged under load: between bursts a limit grows back (additive
	// increase), and on a loaded machine the gaps are long enough for it
	// to reach 3 or 4 before a check that only reads.
	testutil.Eventually(t, 20*time.Second, "the CPU-bound function learns a limit of 1 or 2", func() bool {
		getAll(t, 6, cpu+"?ms=100")
		u := usage(ctx, t, s, "burner")
		return u.LearnedLimit >= 1 && u.LearnedLimit <= 2
	})
	pids := map[string]bool{}
	for _, p := range getAll(t, 6, cpu+"?ms=100") {
		pid, _, _ := strings.Cut(p, " ")
		pids[pid] = true
	}
	// At max 8 the six would share one instance; instances that learned
	// about one each spread them (siblings may still differ a little).
	if len(pids) < 2 {
		t.Errorf("a burst of 6 CPU-bound invocations ran on %d instance, want them spread at the learned limit", len(pids))
	}
	if u := usage(ctx, t, s, "waiter"); u.LearnedLimit != 8 || len(u.ConcurrencyLimits) != 1 || u.ConcurrencyLimits[0] != 8 ||
		len(u.EventLoops) != 1 || u.EventLoops[0] != 1 {
		t.Errorf("I/O-bound function: learned %d, running %v on %v loops; want max 8 kept on its one instance and loop",
			u.LearnedLimit, u.ConcurrencyLimits, u.EventLoops)
	}
	if u := usage(ctx, t, s, "burner"); slices.Max(u.EventLoops) != 1 {
		t.Errorf(`a function with "loops": 1 runs %v event loops, want 1`, u.EventLoops)
	}
}

// A function that holds its event loop gets more loops in its instances
// (up to one per 256 MB, here 4) while the host has idle CPUs: invocations
// that would queue on one loop compute on several, in one process. Like
// seed: 40 ms of CPU then 60 ms of waiting, one every 50 ms.
func TestAdaptive_LoopsForWhatHoldsTheLoop(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{Args: []string{"--verbose"}})
	fn := s.Deploy(testutil.WriteProject(t, "looper", map[string]string{"index.mjs": burnHandler, "shoal.json": `{"concurrency": {"max": 8}}`}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	testutil.Get(t, fn)
	url := fn + "?ms=40&wait=60"
	var bodies []string
	testutil.Eventually(t, 30*time.Second, "an instance runs several event loops", func() bool {
		bodies = getPaced(t, 20, 50*time.Millisecond, url)
		u := usage(ctx, t, s, "looper")
		return len(u.EventLoops) > 0 && slices.Max(u.EventLoops) >= 2 && u.LearnedLoops >= 2
	})
	threads := map[string]map[string]bool{} // pid -> threads
	for _, p := range append(bodies, getPaced(t, 20, 50*time.Millisecond, url)...) {
		pid, thread, _ := strings.Cut(p, " ")
		if threads[pid] == nil {
			threads[pid] = map[string]bool{}
		}
		threads[pid][thread] = true
	}
	most := 0
	for _, th := range threads {
		most = max(most, len(th))
	}
	if most < 2 {
		t.Errorf("invocations ran on threads %v, want several threads in one process", threads)
	}
}
