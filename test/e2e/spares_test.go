package e2e

import (
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testutil"
)

// waitingSpares returns the pids of dataDir's runtimes that wait to become
// an instance.
func waitingSpares(dataDir string) []int {
	serving := testutil.InstancePids(dataDir)
	var out []int
	for _, pid := range testutil.ProcessPids(dataDir) {
		if !slices.Contains(serving, pid) {
			out = append(out, pid)
		}
	}
	return out
}

// oneSpare waits until exactly one spare waits and returns its pid.
func oneSpare(t *testing.T, dataDir, what string) int {
	t.Helper()
	var spares []int
	testutil.Eventually(t, 20*time.Second, what, func() bool {
		spares = waitingSpares(dataDir)
		return len(spares) == 1
	})
	return spares[0]
}

// TestSpares_ColdStartTakesTheWaitingRuntime: serve keeps one runtime
// started ahead; a cold start makes it the instance and starts the next;
// one that dies waiting is replaced and costs no invocation.
func TestSpares_ColdStartTakesTheWaitingRuntime(t *testing.T) {
	for _, isolation := range []string{"auto", "off"} {
		t.Run(isolation, func(t *testing.T) {
			s := testutil.StartServe(t, testutil.ServeOptions{Args: []string{"--isolation", isolation}})
			first := oneSpare(t, s.DataDir, "a spare waiting after serve started")

			url := s.Deploy(testutil.WriteProject(t, "a", map[string]string{"index.mjs": pidHandler}))
			if code, body, _ := testutil.Get(t, url); code != 200 {
				t.Fatalf("cold start through the spare: %d %s", code, body)
			}
			if got := testutil.RuntimePids(s.DataDir); !slices.Equal(got, []int{first}) {
				t.Errorf("instance runtimes %v, want the spare %d that waited", got, first)
			}
			second := oneSpare(t, s.DataDir, "a new spare after the first was taken")
			if second == first {
				t.Fatalf("the spare %d still counts as waiting after it became the instance", first)
			}

			// A spare that dies waiting: the next cold start still
			// answers, and a spare waits again.
			if err := syscall.Kill(second, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 10*time.Second, "the killed spare gone", func() bool {
				return !slices.Contains(testutil.ProcessPids(s.DataDir), second)
			})
			url = s.Deploy(testutil.WriteProject(t, "b", map[string]string{"index.mjs": pidHandler}))
			if code, body, _ := testutil.Get(t, url); code != 200 {
				t.Fatalf("cold start after the spare died: %d %s", code, body)
			}
			if n := len(testutil.RuntimePids(s.DataDir)); n != 2 {
				t.Errorf("%d instance runtimes, want 2 (a and b)", n)
			}
			oneSpare(t, s.DataDir, "a spare waiting again")
		})
	}
}

// TestSpares_None: with --spares 0 no runtime waits, and cold starts work.
func TestSpares_None(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{Args: []string{"--spares", "0"}})
	url := s.Deploy(testutil.WriteProject(t, "a", map[string]string{"index.mjs": pidHandler}))
	if code, body, _ := testutil.Get(t, url); code != 200 {
		t.Fatalf("cold start without spares: %d %s", code, body)
	}
	time.Sleep(500 * time.Millisecond) // time enough for a spare to show
	if spares := waitingSpares(s.DataDir); len(spares) != 0 {
		t.Errorf("runtimes %v wait with --spares 0", spares)
	}
	if n := len(testutil.RuntimePids(s.DataDir)); n != 1 {
		t.Errorf("%d instance runtimes, want 1", n)
	}
}
