package e2e

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testutil"
)

// chattyHandler writes five lines through console, stdout and stderr, with
// awaits between them so that invocations interleave on one process.
const chattyHandler = `
export default async function (req, res) {
  const id = req.headers['x-shoal-id'];
  const pause = () => new Promise((r) => setTimeout(r, Math.random() * 20));
  console.log('line 1 of ' + id);
  await pause();
  console.error('line 2 of ' + id);
  await pause();
  process.stdout.write('line 3 of ' + id + '\n');
  await pause();
  process.stderr.write('line 4 of ' + id + '\nline 5 of ' + id + '\n');
  res.end(id);
}
`

func TestLogs_TaggedWhileInterleaving(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "chatty", map[string]string{"index.mjs": chattyHandler}))
	testutil.Get(t, url) // warm: all 50 land on one instance
	ids := getAll(t, 50, url)
	if pids := len(testutil.RuntimePids(s.DataDir)); pids != 1 {
		t.Errorf("%d instances, want the 50 invocations to interleave on 1", pids)
	}
	want := map[string]bool{}
	for _, id := range ids {
		for i := 1; i <= 5; i++ {
			want[fmt.Sprintf("%s line %d of %s", id, i, id)] = true
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out string
	testutil.Eventually(t, 10*time.Second, "all 250 lines in shoal logs", func() bool {
		var err error
		out, _, err = s.CLI(ctx, "logs", "chatty")
		return err == nil && strings.Count(out, "line ") >= 255 // 250 + the warm-up's 5
	})
	// Each printed line is: time instance invocation stream message.
	got := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.SplitN(line, " ", 5)
		if len(f) != 5 {
			t.Fatalf("log line %q: want 5 fields", line)
		}
		if !strings.HasPrefix(f[1], "i-") {
			t.Errorf("log line %q names no instance", line)
		}
		got[f[2]+" "+f[4]] = true
	}
	for w := range want {
		if !got[w] {
			t.Errorf("missing or mis-tagged: %q", w)
		}
	}
}

func TestLogs_Follow(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "follow", map[string]string{"index.mjs": chattyHandler}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := s.CLICommand(ctx, "logs", "-f", "follow")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := make(chan string, 100)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// A request made after -f started shows up in its output.
	time.Sleep(200 * time.Millisecond)
	_, id, _ := testutil.Get(t, url)
	deadline := time.After(15 * time.Second)
	for seen := 0; seen < 5; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("shoal logs -f ended after %d lines", seen)
			}
			if strings.Contains(l, "of "+id) {
				seen++
			}
		case <-deadline:
			t.Fatalf("shoal logs -f showed %d of the 5 lines of %s", seen, id)
		}
	}
	cmd.Process.Kill()
	wg.Wait()
}
