package build

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/model"
)

// writeProject writes files (slash-separated path → contents) into a new
// temporary folder and returns it.
func writeProject(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runScript imports the bundle with Node.js, calls its default export the
// way the runtime would (as a function, or its fetch method with a Request
// for http://x/path) and prints what it returned.
const runScript = `
const m = await import(process.argv[1]);
const h = m.default;
let out;
if (typeof h === "function") {
  out = await h();
} else if (h && typeof h.fetch === "function") {
  out = await (await h.fetch(new Request("http://x/path"))).text();
} else {
  throw new Error("default export is not callable and has no fetch: " + typeof h);
}
process.stdout.write(String(out));
`

// runBundle runs the bundle in outDir with Node.js and returns its output.
func runBundle(t *testing.T, outDir string) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not found in PATH")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	url := "file://" + filepath.ToSlash(filepath.Join(outDir, BundleFile))
	cmd := exec.CommandContext(ctx, node, "--input-type=module", "-e", runScript, url)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	return string(out)
}

func TestBuild_Run(t *testing.T) {
	cjsDep := map[string]string{
		"node_modules/cjs-dep/package.json": `{"name": "cjs-dep", "main": "index.js"}`,
		"node_modules/cjs-dep/index.js": `const path = require("node:path");
const os = require(["node", "os"].join(":")); // left to esbuild's __require shim
module.exports = (p) => path.basename(p) + (typeof os.cpus === "function" ? "" : " no os");
`,
	}
	esmDep := map[string]string{
		"node_modules/esm-dep/package.json": `{"name": "esm-dep", "type": "module", "exports": "./index.js"}`,
		"node_modules/esm-dep/index.js":     `export const shout = (s) => s.toUpperCase() + "!";`,
	}
	tests := []struct {
		name      string
		files     map[string]string
		wantEntry string
		want      string // what calling the default export returns
	}{
		{
			name:      "mjs",
			files:     map[string]string{"index.mjs": `export default () => "mjs";`},
			wantEntry: "index.mjs",
			want:      "mjs",
		},
		{
			name: "js_cjs",
			files: map[string]string{"index.js": `const path = require("path");
module.exports = function () { return "js " + path.extname("a.txt"); };
`},
			wantEntry: "index.js",
			want:      "js .txt",
		},
		{
			name:      "cjs",
			files:     map[string]string{"index.cjs": `module.exports = () => "cjs " + require("node:fs").existsSync("/");`},
			wantEntry: "index.cjs",
			want:      "cjs true",
		},
		{
			name: "ts",
			files: map[string]string{"index.ts": `interface Reply { text: string }
export default function handler(): string {
  const r: Reply = { text: "ts" };
  return r.text;
}
`},
			wantEntry: "index.ts",
			want:      "ts",
		},
		{
			name: "package_json_main",
			files: map[string]string{
				"package.json": `{"name": "app", "main": "./src/app.js"}`,
				"src/app.js":   `export default () => "main";`,
			},
			wantEntry: "src/app.js",
			want:      "main",
		},
		{
			name:      "web_fetch",
			files:     map[string]string{"index.mjs": `export default { fetch(req) { return new Response("hello " + new URL(req.url).pathname); } };`},
			wantEntry: "index.mjs",
			want:      "hello /path",
		},
		{
			name: "mjs_first",
			files: map[string]string{
				"index.mjs":    `export default () => "mjs";`,
				"index.js":     `module.exports = () => "js";`,
				"package.json": `{"main": "index.js"}`,
			},
			wantEntry: "index.mjs",
			want:      "mjs",
		},
		{
			name: "node_modules",
			files: merge(cjsDep, esmDep, map[string]string{"index.mjs": `import base from "cjs-dep";
import { shout } from "esm-dep";
export default () => shout(base("/a/b/dep.txt"));
`}),
			wantEntry: "index.mjs",
			want:      "DEP.TXT!",
		},
		{
			name: "node_modules_from_cjs",
			files: merge(cjsDep, esmDep, map[string]string{"index.js": `const base = require("cjs-dep");
const { shout } = require("esm-dep");
module.exports = () => shout(base("/x/y.js"));
`}),
			wantEntry: "index.js",
			want:      "Y.JS!",
		},
		{
			// A common idiom that declares its own top-level require, next to
			// CommonJS code that needs the banner's.
			name: "own_require",
			files: merge(cjsDep, map[string]string{"index.mjs": `import { createRequire } from "node:module";
import base from "cjs-dep";
const require = createRequire(import.meta.url);
export default () => "own " + base("/q/r") + " " + typeof require("node:path").join;
`}),
			wantEntry: "index.mjs",
			want:      "own r function",
		},
		{
			name: "own_require_alone",
			files: map[string]string{"index.mjs": `import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
export default () => typeof require("node:path").join;
`},
			wantEntry: "index.mjs",
			want:      "function",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := writeProject(t, tt.files)
			out := t.TempDir()
			res, err := Build(t.Context(), src, out)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if got, want := res.Entry, tt.wantEntry; got != want {
				t.Errorf("Entry = %q, want %q", got, want)
			}
			if got, want := res.Config, model.DefaultFunctionConfig(); got != want {
				t.Errorf("Config = %+v, want %+v", got, want)
			}
			if _, err := os.Stat(filepath.Join(out, BundleFile+".map")); err != nil {
				t.Errorf("source map: %v", err)
			}
			if got, want := runBundle(t, out), tt.want; got != want {
				t.Errorf("default export returned %q, want %q", got, want)
			}
		})
	}
}

func merge(ms ...map[string]string) map[string]string {
	all := make(map[string]string)
	for _, m := range ms {
		for k, v := range m {
			all[k] = v
		}
	}
	return all
}

func TestBuild_Errors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []Error // in order; Msg is matched as a substring
	}{
		{
			name:  "syntax_error",
			files: map[string]string{"index.js": "module.exports = function () {\n  return (1 +\n}\n"},
			want:  []Error{{File: "index.js", Line: 3, Column: 1, Msg: "Unexpected \"}\""}},
		},
		{
			name: "syntax_error_in_dependency",
			files: map[string]string{
				"index.mjs":                     `import x from "bad"; export default x;`,
				"node_modules/bad/package.json": `{"main": "lib.js"}`,
				"node_modules/bad/lib.js":       "\n\nmodule.exports = {;\n",
			},
			want: []Error{{File: "node_modules/bad/lib.js", Line: 3, Column: 19, Msg: "Expected"}},
		},
		{
			name:  "unresolved_import",
			files: map[string]string{"index.mjs": "import a from \"nope\";\nimport b from \"./missing.js\";\nexport default () => a + b;\n"},
			want: []Error{
				{File: "index.mjs", Line: 1, Column: 15, Msg: `Could not resolve "nope"`},
				{File: "index.mjs", Line: 2, Column: 15, Msg: `Could not resolve "./missing.js"`},
			},
		},
		{
			name:  "no_entry",
			files: map[string]string{"README.md": "hi"},
			want:  []Error{{Msg: `no entry: add index.mjs, index.js, index.cjs, index.ts or package.json "main"`}},
		},
		{
			name:  "package_json_without_main",
			files: map[string]string{"package.json": `{"name": "x"}`},
			want:  []Error{{Msg: "no entry: "}},
		},
		{
			name:  "package_json_syntax_error",
			files: map[string]string{"package.json": "{\n  \"name\": \"x\",\n  \"main\": \"a.js\"\n  \"type\": \"module\"\n}\n"},
			want:  []Error{{File: "package.json", Line: 4, Msg: "invalid character"}},
		},
		{
			name:  "package_json_main_not_string",
			files: map[string]string{"package.json": "{\n  \"main\": 3\n}\n"},
			want:  []Error{{File: "package.json", Line: 2, Msg: `"main" must be a string`}},
		},
		{
			name:  "package_json_main_missing",
			files: map[string]string{"package.json": `{"main": "lib/app.js"}`},
			want:  []Error{{File: "package.json", Msg: `"main" "lib/app.js" does not exist`}},
		},
		{
			name:  "package_json_main_outside",
			files: map[string]string{"package.json": `{"main": "../app.js"}`},
			want:  []Error{{File: "package.json", Msg: "inside the project folder"}},
		},
		{
			name: "bad_shoal_json",
			files: map[string]string{
				"index.mjs":  `export default () => 1;`,
				"shoal.json": "{\n  \"memory\": 512,\n  \"concurency\": true\n}\n",
			},
			want: []Error{{File: "shoal.json", Line: 3, Msg: `unknown key "concurency"`}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := writeProject(t, tt.files)
			res, err := Build(t.Context(), src, t.TempDir())
			if err == nil {
				t.Fatalf("Build = %+v, want an error", res)
			}
			got := buildErrors(err)
			if len(got) != len(tt.want) {
				t.Fatalf("Build error = %v, want %d *Error", err, len(tt.want))
			}
			for i, want := range tt.want {
				g := got[i]
				if g.File != want.File || g.Line != want.Line || g.Column != want.Column || !strings.Contains(g.Msg, want.Msg) {
					t.Errorf("error %d = %#v, want %#v", i, *g, want)
				}
			}
		})
	}
}

// buildErrors returns the *Error in err, which may be joined.
func buildErrors(err error) []*Error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var all []*Error
		for _, e := range j.Unwrap() {
			all = append(all, buildErrors(e)...)
		}
		return all
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return []*Error{e}
	}
	return nil
}

func TestBuild_Config(t *testing.T) {
	src := writeProject(t, map[string]string{
		"index.mjs":  `export default () => 1;`,
		"shoal.json": `{"concurrency": {"max": 8}, "maxDuration": 2.5, "memory": 256, "minInstances": 1}`,
	})
	res, err := Build(t.Context(), src, t.TempDir())
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	want := model.FunctionConfig{MaxConcurrency: 8, MaxDuration: 2500 * time.Millisecond, MemoryMB: 256, MinInstances: 1}
	if got := res.Config; got != want {
		t.Errorf("Config = %+v, want %+v", got, want)
	}
}

func TestBuild_Digest(t *testing.T) {
	files := map[string]string{
		"index.mjs":                     `import x from "dep"; export default () => x;`,
		"node_modules/dep/package.json": `{"main": "index.js"}`,
		"node_modules/dep/index.js":     `module.exports = "dep";`,
		"shoal.json":                    `{"memory": 512}`,
	}
	build := func(files map[string]string) string {
		t.Helper()
		res, err := Build(t.Context(), writeProject(t, files), t.TempDir())
		if err != nil {
			t.Fatalf("Build: %v", err)
		}
		if len(res.Digest) != 64 {
			t.Errorf("Digest = %q, want 64 hex digits", res.Digest)
		}
		return res.Digest
	}
	first := build(files)
	if got, want := build(files), first; got != want {
		t.Errorf("same project: Digest = %s, want %s", got, want)
	}
	if got := build(merge(files, map[string]string{"shoal.json": `{"memory": 1024}`})); got == first {
		t.Errorf("other shoal.json: Digest = %s, want a different one", got)
	}
	if got := build(merge(files, map[string]string{"node_modules/dep/index.js": `module.exports = "dep2";`})); got == first {
		t.Errorf("other dependency: Digest = %s, want a different one", got)
	}
}

func TestBuild_Canceled(t *testing.T) {
	src := writeProject(t, map[string]string{"index.mjs": `export default () => 1;`})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := Build(ctx, src, t.TempDir())
	if got, want := err, context.Canceled; !errors.Is(got, want) {
		t.Errorf("Build error = %v, want %v", got, want)
	}
}

func TestError_Error(t *testing.T) {
	tests := []struct {
		name string
		err  Error
		want string
	}{
		{"full", Error{File: "index.js", Line: 3, Column: 7, Msg: `Expected ")" but found "}"`}, `index.js:3:7: Expected ")" but found "}"`},
		{"line_only", Error{File: "shoal.json", Line: 4, Msg: `unknown key "concurency"`}, `shoal.json:4: unknown key "concurency"`},
		{"file_only", Error{File: "package.json", Msg: "bad"}, "package.json: bad"},
		{"no_file", Error{Msg: "no entry"}, "no entry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}
