package build

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
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

// runScript loads the bundle with Node.js as the bootstrap does (an ES
// module imported; a CommonJS one run in node's wrapper with the arguments
// the bootstrap's loadCommonJS passes), calls its default export the way
// the runtime would (as a function, or its fetch method with a Request for
// http://x/path) and prints what it returned.
const runScript = `
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { dirname } from "node:path";
import { runInThisContext } from "node:vm";
import { fileURLToPath } from "node:url";
let m;
if (process.argv[1].endsWith(".cjs")) {
  const file = fileURLToPath(process.argv[1]);
  const wrapped = '(function (exports, require, module, __filename, __dirname, __shoalImportMeta) {"use strict";\n' +
    readFileSync(file, "utf8") + '\n})';
  const module = { exports: {} };
  runInThisContext(wrapped, { filename: file, lineOffset: -1 })(module.exports, createRequire(file), module, file, dirname(file),
    { url: process.argv[1], dirname: dirname(file), filename: file });
  m = module.exports && module.exports.__esModule ? module.exports : { default: module.exports };
} else {
  m = await import(process.argv[1]);
}
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

// runBundle runs the bundle at path with Node.js and returns its output.
func runBundle(t *testing.T, path string) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not found in PATH")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	url := "file://" + filepath.ToSlash(path)
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
		esm       bool   // bundled as an ES module, not CommonJS
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
			name: "import_meta",
			files: map[string]string{"index.mjs": `import { fileURLToPath } from "node:url";
export default () => [fileURLToPath(import.meta.url) === import.meta.filename, import.meta.dirname === __dirname, typeof require].join(" ");
`},
			wantEntry: "index.mjs",
			want:      "true true function",
		},
		{
			// The ES module idiom declares the names CommonJS's wrapper
			// passes: esbuild renames the module's own.
			name: "own_filename_and_dirname",
			files: map[string]string{"index.mjs": `import { fileURLToPath } from "node:url";
import path from "node:path";
const __filename = fileURLToPath(import.meta.url);
const __dirname = path.dirname(__filename);
export default () => path.basename(__filename) + " " + (__dirname === path.dirname(fileURLToPath(import.meta.url)));
`},
			wantEntry: "index.mjs",
			want:      ".shoal-index.mjs.cjs true",
		},
		{
			name: "top_level_await",
			files: map[string]string{"index.mjs": `const v = await Promise.resolve("tla");
export default () => v + " " + typeof require + " " + __filename.slice(__dirname.length);
`},
			wantEntry: "index.mjs",
			want:      "tla function /index.mjs",
			esm:       true,
		},
		{
			name: "dynamic_import",
			files: map[string]string{
				"index.mjs": `export default async () => (await import("node:path")).basename("/a/b") + " " + (await import("./lazy.mjs")).v;`,
				"lazy.mjs":  `export const v = "lazy";`,
			},
			wantEntry: "index.mjs",
			want:      "b lazy",
		},
		{
			name: "dynamic_import_of_a_variable",
			files: map[string]string{
				"index.mjs":                     `import load from "dep"; export default async () => (await load("node:os")).EOL.length;`,
				"node_modules/dep/package.json": `{"name": "dep", "main": "index.mjs"}`,
				"node_modules/dep/index.mjs":    `export default (name) => import(name);`,
			},
			wantEntry: "index.mjs",
			want:      "1",
			esm:       true,
		},
		{
			name: "import_in_function_code",
			files: map[string]string{
				"index.js": `const load = new Function("s", "return import(s)");
module.exports = async () => (await load("node:os")).EOL.length + " " + (await eval("import ('node:path')")).sep;`,
			},
			wantEntry: "index.js",
			want:      "1 /",
			esm:       true,
		},
		{
			name: "import_in_a_jsdoc_type",
			files: map[string]string{"index.js": `const f = /** @type {import('./t').F} */ (function () { return "typed"; });
module.exports = () => f();`},
			wantEntry: "index.js",
			want:      "typed",
		},
		{
			name:      "a_call_of_a_method_named_import",
			files:     map[string]string{"index.js": `const o = {}; o["import"] = (x) => x + 1; module.exports = () => o.import(1);`},
			wantEntry: "index.js",
			want:      "2",
		},
		{
			name:      "import_meta_resolve",
			files:     map[string]string{"index.mjs": `export default () => typeof import.meta.resolve;`},
			wantEntry: "index.mjs",
			want:      "function",
			esm:       true,
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
			res, err := Build(t.Context(), src, Options{})
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if got, want := res.Entry, tt.wantEntry; got != want {
				t.Errorf("Entry = %q, want %q", got, want)
			}
			if len(res.Functions) != 1 || res.Routed {
				t.Fatalf("Functions = %+v, Routed = %v; want one, not routed", res.Functions, res.Routed)
			}
			fn := res.Functions[0]
			if got, want := fn.Config, model.DefaultFunctionConfig(); got != want {
				t.Errorf("Config = %+v, want %+v", got, want)
			}
			if ext := filepath.Ext(fn.Bundle); ext != map[bool]string{false: ".cjs", true: ".mjs"}[tt.esm] {
				t.Errorf("bundle %s; want CommonJS (.cjs) unless the code needs an ES module (.mjs): esm %v", fn.Bundle, tt.esm)
			}
			bundle := filepath.Join(src, filepath.FromSlash(fn.Bundle))
			if _, err := os.Stat(bundle + ".map"); err != nil {
				t.Errorf("source map: %v", err)
			}
			if got, want := runBundle(t, bundle), tt.want; got != want {
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
			res, err := Build(t.Context(), src, Options{})
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
	res, err := Build(t.Context(), src, Options{})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	want := model.FunctionConfig{MaxConcurrency: 8, MaxDuration: 2500 * time.Millisecond, MemoryMB: 256, MinInstances: 1}
	if got := res.Functions[0].Config; got != want {
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
		res, err := Build(t.Context(), writeProject(t, files), Options{})
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
	_, err := Build(ctx, src, Options{})
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

func TestBuild_APIFolder(t *testing.T) {
	src := writeProject(t, map[string]string{
		"api/hello.ts":        `export default (): string => "hello " + __filename.slice(__dirname.length);`,
		"api/users/[id].js":   `module.exports = () => require("fs").readFileSync(__dirname + "/../../data/users.txt", "utf8").trim();`,
		"api/_lib/util.js":    `export const x = 1;`,
		"api/types.d.ts":      `export type T = string;`,
		"api/.hidden.js":      `export default () => "hidden";`,
		"api/readme.md":       `not a function`,
		"data/users.txt":      "ada\n",
		"index.js":            `export default () => "not with api/";`,
		"vercel.json":         `{"functions": {"api/**/*.js": {"memory": 512, "includeFiles": "data/**"}, "api/hello.ts": {"maxDuration": 5}}}`,
		"shoal.json":          `{"maxDuration": 7}`,
		"node_modules/x/a.js": `module.exports = 1;`,
	})
	res, err := Build(t.Context(), src, Options{})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if !res.Routed || res.Entry != "api/" {
		t.Errorf("Routed, Entry = %v, %q; want true, api/", res.Routed, res.Entry)
	}
	def := model.DefaultFunctionConfig()
	want := []model.Function{
		{File: "api/hello.ts", Bundle: "api/.shoal-hello.ts.cjs", Config: model.FunctionConfig{MaxConcurrency: def.MaxConcurrency, MaxDuration: 7 * time.Second, MemoryMB: def.MemoryMB}},
		{File: "api/users/[id].js", Bundle: "api/users/.shoal-[id].js.cjs", Config: model.FunctionConfig{MaxConcurrency: def.MaxConcurrency, MaxDuration: 7 * time.Second, MemoryMB: 512}},
	}
	if len(res.Functions) != len(want) {
		t.Fatalf("Functions = %+v, want %+v", res.Functions, want)
	}
	for i, fn := range res.Functions {
		if fn != want[i] {
			t.Errorf("Functions[%d] = %+v, want %+v", i, fn, want[i])
		}
	}
	// __dirname and __filename are the source file's, in the folder that
	// keeps the project's files.
	if got, want := runBundle(t, filepath.Join(src, "api", ".shoal-hello.ts.cjs")), "hello /hello.ts"; got != want {
		t.Errorf("api/hello.ts returned %q, want %q", got, want)
	}
	if got, want := runBundle(t, filepath.Join(src, "api", "users", ".shoal-[id].js.cjs")), "ada"; got != want {
		t.Errorf("api/users/[id].js returned %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(src, injectFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the inject file is left in the deployment: %v", err)
	}
}

func TestBuild_APIFolderErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  Error
	}{
		{
			name:  "routes_collide",
			files: map[string]string{"api/a.js": `export default () => 1;`, "api/a.ts": `export default () => 1;`},
			want:  Error{Msg: "api/a.js and api/a.ts answer the same paths"},
		},
		{
			name:  "bad_dynamic_segment",
			files: map[string]string{"api/[...a]/b.js": `export default () => 1;`},
			want:  Error{Msg: "catch-all must be the last segment"},
		},
		{
			name:  "glob_matches_no_function",
			files: map[string]string{"api/a.js": `export default () => 1;`, "vercel.json": `{"functions": {"api/b.js": {"memory": 512}}}`},
			want:  Error{File: "vercel.json", Msg: `functions["api/b.js"] matches no function`},
		},
		{
			name:  "unknown_function_key",
			files: map[string]string{"api/a.js": `export default () => 1;`, "vercel.json": `{"functions": {"api/a.js": {"memroy": 512}}}`},
			want:  Error{File: "vercel.json", Msg: `unknown field "memroy"`},
		},
		{
			name:  "unsupported_top_key",
			files: map[string]string{"api/a.js": `export default () => 1;`, "vercel.json": `{"rewrites": []}`},
			want:  Error{File: "vercel.json", Msg: `"rewrites" is not supported by shoal`},
		},
		{
			name:  "memory_out_of_range",
			files: map[string]string{"api/a.js": `export default () => 1;`, "vercel.json": `{"functions": {"api/*.js": {"memory": 64}}}`},
			want:  Error{File: "vercel.json", Msg: "memory: must be an integer from 128"},
		},
		{
			name:  "include_files_match_nothing",
			files: map[string]string{"api/a.js": `export default () => 1;`, "vercel.json": `{"functions": {"api/a.js": {"includeFiles": "data/**"}}}`},
			want:  Error{File: "vercel.json", Msg: `includeFiles "data/**" matches no file`},
		},
		{
			name:  "bundle_name_taken",
			files: map[string]string{"api/a.js": `export default () => 1;`, "api/.shoal-a.js.mjs": `x`},
			want:  Error{File: "api/.shoal-a.js.mjs", Msg: "this name is shoal's"},
		},
		{
			name:  "source_map_name_taken",
			files: map[string]string{"api/a.js": `export default () => 1;`, "api/.shoal-a.js.cjs.map": `{}`},
			want:  Error{File: "api/.shoal-a.js.cjs.map", Msg: "this name is shoal's"},
		},
		{
			name:  "code_cache_name_taken",
			files: map[string]string{"index.js": `export default () => 1;`, ".shoal-index.js.cjs.v8cache": `x`},
			want:  Error{File: ".shoal-index.js.cjs.v8cache", Msg: "this name is shoal's"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Build(t.Context(), writeProject(t, tt.files), Options{})
			got := buildErrors(err)
			if len(got) != 1 || got[0].File != tt.want.File || !strings.Contains(got[0].Msg, tt.want.Msg) {
				t.Errorf("Build error = %v, want %s: …%s…", err, tt.want.File, tt.want.Msg)
			}
		})
	}
}

func TestParseSourceConfig(t *testing.T) {
	d := func(s float64) *time.Duration { v := time.Duration(s * float64(time.Second)); return &v }
	n := func(i int) *int { return &i }
	tests := []struct {
		raw  string
		want model.ConfigPatch
		err  string
	}{
		{raw: `{"maxDuration": 30}`, want: model.ConfigPatch{MaxDuration: d(30)}},
		{raw: `{"maxDuration": 1.5, "memory": 256, "runtime": "nodejs", "regions": ["iad1"]}`, want: model.ConfigPatch{MaxDuration: d(1.5), MemoryMB: n(256)}},
		{raw: `{"runtime": "edge"}`},
		{raw: `{"maxDuration": 0}`, err: "maxDuration: must be more than 0"},
		{raw: `{"maxDuration": "30"}`, err: "maxDuration: must be a number"},
		{raw: `{"memory": 99999}`, err: "memory: must be an integer"},
		{raw: `{"runtime": "python"}`, err: `runtime: must be "nodejs" or "edge"`},
		{raw: `{"api": {"bodyParser": false}}`, err: `unknown key "api"`},
		{raw: `[1]`, err: "must be an object"},
	}
	for _, tt := range tests {
		got, err := parseSourceConfig("api/a.ts", json.RawMessage(tt.raw))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "api/a.ts: export const config: ") {
				t.Errorf("%s: error = %v, want api/a.ts: export const config: …%s…", tt.raw, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.raw, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: patch = %+v, want %+v", tt.raw, got, tt.want)
		}
	}
}
