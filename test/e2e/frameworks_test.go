package e2e

import (
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testutil"
)

// frameworks is the npm project whose packages the framework tests deploy:
// express, hono, @hono/node-server and @vercel/functions, pinned in its
// package-lock.json and installed by `npm ci --prefix test/e2e/testdata/frameworks`
// (.ci/run does that first).
const frameworks = "testdata/frameworks"

// frameworkProject copies the installed packages into a new project folder
// named name and adds files to it.
func frameworkProject(t testing.TB, name string, files map[string]string) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(frameworks, "node_modules", "express")); err != nil {
		t.Fatalf("the framework packages are not installed: run npm ci --prefix test/e2e/%s (%v)", frameworks, err)
	}
	dir := testutil.WriteProject(t, name, files)
	src := filepath.Join(frameworks, "node_modules")
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(frameworks, path)
		dst := filepath.Join(dir, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case !d.Type().IsRegular():
			return nil // .bin links and the like
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(dst)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatalf("copy node_modules: %v", err)
	}
	return dir
}

// Real frameworks, deployed as a Vercel user wrote them.
func TestFrameworks_DeployUnchanged(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	type call struct {
		method, path, contentType, body string
		want                            string
	}
	tests := []struct {
		name  string
		entry string
		calls []call
	}{
		{"express", `
import express from 'express';
const app = express();
app.use(express.json());
app.get('/hello/:name', (req, res) => res.json({ hi: req.params.name, q: req.query.q }));
app.post('/echo', (req, res) => res.json({ got: req.body }));
export default app;
`, []call{
			{"GET", "/hello/ann?q=1", "", "", `{"hi":"ann","q":"1"}`},
			{"POST", "/echo", "application/json", `{"a":[1,2]}`, `{"got":{"a":[1,2]}}`},
		}},
		{"express-listen", `
import express from 'express';
const app = express();
app.get('/', (req, res) => res.send('express listened'));
app.listen(3000, () => console.log('listening on 3000'));
`, []call{{"GET", "/", "", "", "express listened"}}},
		{"hono-node-adapter", `
import { Hono } from 'hono';
import { handle } from '@hono/node-server/vercel';
const app = new Hono();
app.get('/', (c) => c.text('hono node'));
app.post('/echo', async (c) => c.json({ got: await c.req.json() }));
export default handle(app);
`, []call{
			{"GET", "/", "", "", "hono node"},
			{"POST", "/echo", "application/json", `{"b":true}`, `{"got":{"b":true}}`},
		}},
		{"hono-fetch", `
import { Hono } from 'hono';
const app = new Hono();
app.get('/', (c) => c.text('hono fetch'));
app.post('/echo', async (c) => c.json({ got: await c.req.json() }));
export default app;
`, []call{
			{"GET", "/", "", "", "hono fetch"},
			{"POST", "/echo", "application/json", `{"c":3}`, `{"got":{"c":3}}`},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := strings.TrimSuffix(s.Deploy(frameworkProject(t, tt.name, map[string]string{"index.mjs": tt.entry})), "/")
			for _, c := range tt.calls {
				var h map[string]string
				if c.contentType != "" {
					h = map[string]string{"content-type": c.contentType}
				}
				if code, body, _ := request(t, c.method, base+c.path, h, c.body); code != 200 || body != c.want {
					t.Errorf("%s %s: got %d %q, want 200 %q", c.method, c.path, code, body, c.want)
				}
			}
		})
	}
	// Each is a CommonJS bundle, with the V8 code cache its deploy's check
	// made beside it.
	caches, _ := filepath.Glob(filepath.Join(s.DataDir, "deployments", "*", ".shoal-index.mjs.cjs.v8cache"))
	if len(caches) != len(tests) {
		t.Errorf("%d code caches in the deployments (%v), want %d", len(caches), caches, len(tests))
	}
}

// waitUntil imported from the real @vercel/functions package.
func TestFrameworks_VercelFunctionsWaitUntil(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(frameworkProject(t, "vf", map[string]string{"index.mjs": `
import { waitUntil } from '@vercel/functions';
export default (req, res) => {
  const n = req.query.n;
  waitUntil(new Promise((r) => setTimeout(r, 2000)).then(() => console.log('background done ' + n)));
  res.send('queued ' + n);
};
`}))
	answersBeforeWaitUntil(t, url+"?n=0", url+"?n=7", nil, "queued 7")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	testutil.Eventually(t, 10*time.Second, "the background work's log line", func() bool {
		out, _, _ := s.CLI(ctx, "logs", "vf")
		return strings.Contains(out, "background done 7")
	})
}
