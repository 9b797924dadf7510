package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testutil"
)

// whoami answers with what a function knows about where it runs.
const whoami = instanceJS + `export default (req, res) => res.json({ pid: instance, query: req.query, url: req.url });`

// A project with api/ serves each file at its own route, Vercel's way, each
// function on instances of its own.
func TestRoutes_APIFolder(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "routed", map[string]string{
		"api/index.js":            whoami,
		"api/hello.ts":            `import { greet } from "./_lib/greet"; export default (req: any, res: any) => res.send(greet("ts"));`,
		"api/_lib/greet.ts":       `export const greet = (s: string): string => "hello " + s;`,
		"api/types.d.ts":          `export type X = string;`,
		"api/users/[id].js":       whoami,
		"api/users/me.mjs":        `export function GET() { return new Response("me"); }`,
		"api/files/[...path].cjs": `module.exports = (req, res) => res.send(req.query.path);`,
		"api/data.js": `import fs from "node:fs"; import path from "node:path";
export default (req, res) => res.send([
  fs.readFileSync(path.join(__dirname, "..", "data", "a.txt"), "utf8").trim(),
  fs.readFileSync(path.join(process.cwd(), "data", "a.txt"), "utf8").trim(),
  fs.readFileSync(new URL("../data/a.txt", import.meta.url), "utf8").trim(),
].join(","));`,
		"api/dated.js": `export default (req, res) => { res.setHeader("date", "Thu, 01 Jan 2026 00:00:00 GMT"); res.end("dated"); }`,
		"data/a.txt":   "from a file\n",
		"index.js":     `export default (req, res) => res.end("not served: the project has api/");`,
	}))
	api := strings.TrimSuffix(url, "/") + "/api"
	tests := []struct {
		path, want string
		status     int
	}{
		{"/hello", "hello ts", 200},
		{"/hello.ts", "hello ts", 200},
		{"/users/me", "me", 200},
		{"/files/a/b.txt", "a/b.txt", 200},
		{"/data", "from a file,from a file,from a file", 200},
		{"/dated", "dated", 200},
	}
	for _, tt := range tests {
		code, body, resp := testutil.Get(t, api+tt.path)
		if code != tt.status || body != tt.want {
			t.Errorf("GET /api%s: %d %q, want %d %q", tt.path, code, body, tt.status, tt.want)
		}
		if v := resp.Header.Get("x-shoal-entry-ms"); v != "" {
			t.Errorf("GET /api%s: the client sees the platform's x-shoal-entry-ms: %s", tt.path, v)
		}
		// node leaves the Date to serve, unless the function sets one.
		date := resp.Header.Values("Date")
		if _, err := http.ParseTime(strings.Join(date, "")); len(date) != 1 || err != nil ||
			(tt.path == "/dated") != (date[0] == "Thu, 01 Jan 2026 00:00:00 GMT") {
			t.Errorf("GET /api%s: Date %q, want one, the function's own if it set it", tt.path, date)
		}
	}
	var user, index struct {
		PID   string            `json:"pid"`
		Query map[string]string `json:"query"`
		URL   string            `json:"url"`
	}
	for _, c := range []struct {
		path string
		into any
	}{{"/users/42?id=client&x=1", &user}, {"", &index}} {
		code, body, _ := testutil.Get(t, api+c.path)
		if code != 200 || json.Unmarshal([]byte(body), c.into) != nil {
			t.Fatalf("GET /api%s: %d %q", c.path, code, body)
		}
	}
	if user.Query["id"] != "42" || user.Query["x"] != "1" || !strings.HasPrefix(user.URL, "/api/users/42?") {
		t.Errorf("/api/users/42: query %v, url %q; want id 42 (the route's), x 1, the path as sent", user.Query, user.URL)
	}
	if user.PID == index.PID {
		t.Errorf("api/users/[id].js and api/index.js ran in one process (%s), want an instance each", user.PID)
	}
	for _, path := range []string{"/", "/api/nope", "/api/_lib/greet", "/api/types"} {
		r := mustSend(t, 10*time.Second, "GET", strings.TrimSuffix(url, "/")+path, "application/json", nil)
		if err := checkPlatformError(r, 404, "NOT_FOUND"); err != nil {
			t.Errorf("GET %s: %v", path, err)
		}
	}
}

// Configuration comes, from weakest to strongest, from the function's own
// `export const config`, vercel.json's functions globs and shoal.json.
func TestRoutes_ConfigLayers(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	heap := `import v8 from "node:v8";
export default (req, res) => res.send(String(Math.round(v8.getHeapStatistics().heap_size_limit / 1048576)));
`
	url := s.Deploy(testutil.WriteProject(t, "layers", map[string]string{
		"api/source.js": heap + `export const config = { memory: 256 };`,
		"api/vercel.js": heap + `export const config = { memory: 256 };`,
		"api/slow.js": `export const config = { maxDuration: 10 };
export default async (req, res) => { await new Promise((r) => setTimeout(r, 2500)); res.send("late"); };`,
		"vercel.json": `{"$schema": "https://openapi.vercel.sh/vercel.json",
  "functions": {"api/*.js": {"maxDuration": 10}, "api/vercel.js": {"memory": 512}}}`,
		"shoal.json": `{"maxDuration": 1}`,
	}))
	api := strings.TrimSuffix(url, "/") + "/api"
	// node's heap limit is 3/4 of the memory size, and a little more.
	for path, mb := range map[string]int{"/source": 256, "/vercel": 512} {
		code, body, _ := testutil.Get(t, api+path)
		var got int
		if code != 200 || json.Unmarshal([]byte(body), &got) != nil || got < mb*3/4 || got > mb*3/4+64 {
			t.Errorf("GET /api%s: %d %q MB of heap, want about %d (memory %d)", path, code, body, mb*3/4, mb)
		}
	}
	r := mustSend(t, 20*time.Second, "GET", api+"/slow", "application/json", nil)
	if err := checkPlatformError(r, 504, "FUNCTION_INVOCATION_TIMEOUT"); err != nil {
		t.Errorf("GET /api/slow with shoal.json maxDuration 1 s: %v", err)
	}
}

// Mistakes in routes or configuration refuse the deploy with a message
// that names them, and the project keeps serving its previous deployment.
func TestRoutes_BadProjectsAreRefused(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	ok := `export default (req, res) => res.end("ok");`
	url := s.Deploy(testutil.WriteProject(t, "strict", map[string]string{"api/a.js": ok}))
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"routes_collide", map[string]string{"api/a.js": ok, "api/a.ts": ok}, []string{"api/a.js and api/a.ts answer the same paths"}},
		{"glob_matches_nothing", map[string]string{"api/a.js": ok, "vercel.json": `{"functions": {"api/b/*.js": {"memory": 512}}}`},
			[]string{"vercel.json", `functions["api/b/*.js"] matches no function`}},
		{"unknown_vercel_key", map[string]string{"api/a.js": ok, "vercel.json": `{"functions": {"api/a.js": {"memorySize": 512}}}`},
			[]string{"vercel.json", "memorySize"}},
		{"unsupported_vercel_setting", map[string]string{"api/a.js": ok, "vercel.json": `{"rewrites": [{"source": "/(.*)", "destination": "/api/a"}]}`},
			[]string{"vercel.json", `"rewrites" is not supported`}},
		{"unknown_source_config_key", map[string]string{"api/a.js": ok + `export const config = { api: { bodyParser: false } };`},
			[]string{"api/a.js: export const config", `unknown key "api"`}},
		{"one_route_has_no_handler", map[string]string{"api/a.js": ok, "api/b.js": `export const x = 1;`},
			[]string{"deploy failed", "api/b.js", "has no default export"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			_, errOut, err := s.CLI(ctx, "deploy", testutil.WriteProject(t, "strict", tt.files))
			if err == nil {
				t.Fatal("deploy succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("deploy error %q does not say %q", errOut, w)
				}
			}
			if code, body, _ := testutil.Get(t, url+"api/a"); code != 200 || body != "ok" {
				t.Errorf("previous deployment after a refused deploy: %d %q", code, body)
			}
		})
	}
}

// A thrown error's stack in the logs names the original TypeScript file and
// line, not the bundle's.
func TestRoutes_SourceMapsNameTheSource(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "mapped", map[string]string{
		"api/boom.ts": `interface Input { n: number }

function check(input: Input): number {
  if (input.n > 0) {
    throw new Error("boom from typescript");
  }
  return input.n;
}

export default (req: any, res: any) => res.send(String(check({ n: 1 })));
`,
	}))
	r := mustSend(t, 10*time.Second, "GET", url+"api/boom", "application/json", nil)
	if err := checkPlatformError(r, http.StatusInternalServerError, "FUNCTION_INVOCATION_FAILED"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out string
	// The stack's lines are log records of their own: wait for its first
	// frame, which names the source or the bundle.
	testutil.Eventually(t, 10*time.Second, "the stack in shoal logs", func() bool {
		out, _, _ = s.CLI(ctx, "logs", "mapped")
		return strings.Contains(out, "boom from typescript") && (strings.Contains(out, "boom.ts:") || strings.Contains(out, ".shoal-boom.ts."))
	})
	if !strings.Contains(out, "api/boom.ts:5") || strings.Contains(out, ".shoal-boom.ts.") {
		t.Errorf("the stack does not name api/boom.ts:5 (or names the bundle):\n%s", out)
	}
}

// The example in the README deploys and answers on its routes.
func TestRoutes_Example(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy("../../examples/vercel-api")
	tests := []struct {
		path   string
		status int
		want   string
	}{
		{"api/hello?name=you", 200, `{"hello":"you"}`},
		{"api/users/ada", 200, `{"id":"ada","name":"Ada Lovelace"}`},
		{"api/users/nobody", 404, `{"error":"no such user"}`},
	}
	for _, tt := range tests {
		if code, body, _ := testutil.Get(t, url+tt.path); code != tt.status || body != tt.want {
			t.Errorf("GET %s: %d %q, want %d %q", tt.path, code, body, tt.status, tt.want)
		}
	}
}
