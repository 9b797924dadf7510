package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testutil"
)

// refused is what an instance's logs say when node refused its bundle's
// code cache.
const refused = "refused the bundle's code cache"

// TestDeploy_CodeCacheFitsTheInstances: a deploy writes each CommonJS
// bundle's V8 code cache beside it, made by a node with the flags of the
// function's instances, also where its config export sets their memory,
// and instances take it. One made for other flags is refused, which the
// instance's logs say, and the function still answers.
func TestDeploy_CodeCacheFitsTheInstances(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{Args: []string{"--keep-alive", "1s"}})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	dirs := map[string]string{}
	deploy := func(name, src string) (url, cache string) {
		dirs[name] = testutil.WriteProject(t, name, map[string]string{"index.mjs": src})
		url = s.Deploy(dirs[name])
		caches, _ := filepath.Glob(filepath.Join(s.DataDir, "deployments", "*", ".shoal-index.mjs.cjs.v8cache"))
		for _, c := range caches {
			if b, err := os.ReadFile(filepath.Join(filepath.Dir(c), "index.mjs")); err == nil && string(b) == src {
				return url, c
			}
		}
		t.Fatalf("%s: no code cache beside its bundle in %v", name, caches)
		return
	}
	small, smallCache := deploy("small", "export const config = { memory: 256 };\nexport default (req, res) => res.end('small');\n")
	plain, plainCache := deploy("plain", "export default (req, res) => res.end('plain');\n")
	logs := func(project string) string {
		out, _, err := s.CLI(ctx, "logs", project)
		if err != nil {
			t.Fatalf("shoal logs %s: %v", project, err)
		}
		return out
	}
	for _, f := range []struct{ project, url string }{{"small", small}, {"plain", plain}} {
		if code, body, _ := testutil.Get(t, f.url); code != 200 || body != f.project {
			t.Fatalf("GET %s: %d %q", f.project, code, body)
		}
		if out := logs(f.project); strings.Contains(out, refused) {
			t.Errorf("%s: node refused the code cache its deploy made:\n%s", f.project, out)
		}
	}
	// The 1024 MB function's cache, in place of the 256 MB one's.
	other, err := os.ReadFile(plainCache)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(smallCache, other, 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "instances stopped after keep-alive", func() bool {
		return len(testutil.InstancePids(s.DataDir)) == 0
	})
	if code, body, _ := testutil.Get(t, small); code != 200 || body != "small" {
		t.Fatalf("GET small with another's cache: %d %q", code, body)
	}
	testutil.Eventually(t, 10*time.Second, "a record that node refused the cache", func() bool {
		return strings.Contains(logs("small"), refused)
	})
	// Deploying the same code again makes its cache anew, which the next
	// instance takes.
	s.Deploy(dirs["small"])
	if b, err := os.ReadFile(smallCache); err != nil || bytes.Equal(b, other) {
		t.Fatalf("the cache was not made anew: %v", err)
	}
	testutil.Eventually(t, 20*time.Second, "instances stopped after keep-alive", func() bool {
		return len(testutil.InstancePids(s.DataDir)) == 0
	})
	if code, body, _ := testutil.Get(t, small); code != 200 || body != "small" {
		t.Fatalf("GET small after the deploy again: %d %q", code, body)
	}
	time.Sleep(time.Second) // for a record it would write
	if n := strings.Count(logs("small"), refused); n != 1 {
		t.Errorf("%d records that node refused the cache, want only the one before the deploy again:\n%s", n, logs("small"))
	}
}
