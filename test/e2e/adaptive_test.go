package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testutil"
)

// burnHandler spends ms of CPU time (not wall time) per invocation, or
// waits ms when ?io is set.
const burnHandler = `
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
  res.end(String(process.pid));
}
`

// A CPU-bound function's instances learn a limit of about one, so bursts
// spread over instances; an I/O-bound one keeps its max.
func TestAdaptive_CPUBoundBacksOffIOBoundDoesNot(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{Args: []string{"--verbose"}})
	cpu := s.Deploy(testutil.WriteProject(t, "burner", map[string]string{"index.mjs": burnHandler, "shoal.json": `{"concurrency": {"max": 8}}`}))
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
	testutil.Eventually(t, 10*time.Second, "the CPU-bound function learns a limit of 1 or 2", func() bool {
		u := usage(ctx, t, s, "burner")
		return u.LearnedLimit >= 1 && u.LearnedLimit <= 2
	})
	pids := map[string]bool{}
	for _, p := range getAll(t, 6, cpu+"?ms=100") {
		pids[p] = true
	}
	// At max 8 the six would share one instance; instances that learned
	// about one each spread them (siblings may still differ a little).
	if len(pids) < 2 {
		t.Errorf("a burst of 6 CPU-bound invocations ran on %d instance, want them spread at the learned limit", len(pids))
	}
	if u := usage(ctx, t, s, "waiter"); u.LearnedLimit != 8 || len(u.ConcurrencyLimits) != 1 || u.ConcurrencyLimits[0] != 8 {
		t.Errorf("I/O-bound function: learned %d, running %v; want max 8 kept on its one instance", u.LearnedLimit, u.ConcurrencyLimits)
	}
}
