package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/evanw/esbuild/pkg/api"

	"github.com/shoal-dev/shoal/internal/model"
	"github.com/shoal-dev/shoal/internal/routes"
	"github.com/shoal-dev/shoal/internal/runtime/bootstrap"
)

// BundlePrefix starts the name of every bundle: a function built from
// api/hello.ts is bundled into api/.shoal-hello.ts.cjs (or .mjs, see
// bundle), next to its source, with its source map beside it (+ ".map").
// The dot keeps it from being a route.
const BundlePrefix = ".shoal-"

// entryCandidates are the files tried, in order, before package.json "main".
var entryCandidates = []string{"index.mjs", "index.js", "index.cjs", "index.ts"}

// maxErrors bounds how many esbuild errors Build reports.
const maxErrors = 10

// requireBanner gives the ES module bundle a real require, so that CommonJS
// code calling require("fs") works: esbuild's __require shim uses a require
// in scope when there is one, and throws "Dynamic require ... is not
// supported" when there is none.
const requireBanner = `import { createRequire as __shoalCreateRequire } from "node:module";
const require = __shoalCreateRequire(import.meta.url);`

// injectFile and injectSource give modules that use __dirname and
// __filename, which ES modules lack, their CommonJS values as Vercel has
// them: the source file's folder and path in the deployment. esbuild
// injects the exports where those names are free, renaming any of the
// module's own.
const (
	injectFile   = ".shoal-inject.mjs"
	injectSource = `import { fileURLToPath } from "node:url";
import { basename, dirname, join } from "node:path";
const bundle = fileURLToPath(import.meta.url);
export const __dirname = dirname(bundle);
export const __filename = join(__dirname, basename(bundle).slice(` + "`" + BundlePrefix + "`" + `.length, -".mjs".length));
`
)

// Result describes what Build wrote.
type Result struct {
	// Entry is the path of the entry module relative to the project
	// folder, slash-separated, such as "index.ts" or "src/main.js"; "api/"
	// for a project whose functions are the files under api/.
	Entry string
	// Routed is true when the functions are api/ files, each at its own
	// route (package routes), and false for a project of one function.
	Routed bool
	// Functions are the functions built, sorted by file.
	Functions []model.Function
	// Digest is the hex SHA-256 of the folder after the build, every file's
	// path and contents, and of the functions' configurations: the same
	// project gives the same digest.
	Digest string
}

// Options holds what Build needs from outside.
type Options struct {
	// Inspect loads a bundle (its absolute path) as an instance of memoryMB
	// would and returns its `config` export as JSON, nil when it has none;
	// an error refuses the build. memoryMB is the function's memory unless
	// that export sets it (vercel.json and shoal.json come after it). nil
	// skips the inspection.
	Inspect func(ctx context.Context, bundle string, memoryMB int) (json.RawMessage, error)
}

// Error is a mistake in the user's project, such as a syntax error, an
// import that does not resolve or a bad shoal.json.
type Error struct {
	// File is the path of the faulty file relative to the project folder,
	// slash-separated; empty when the mistake is not in one file.
	File string
	// Line and Column are 1-based; 0 when unknown.
	Line, Column int
	// Msg says what is wrong.
	Msg string
}

// Error formats e as "file:line:column: msg", leaving out what is unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
			if e.Column > 0 {
				fmt.Fprintf(&b, ":%d", e.Column)
			}
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Build builds the project folder dir in place. It reads shoal.json and
// vercel.json, finds the functions (the files under api/, or else the one
// entry), bundles each with esbuild next to its source (see BundlePrefix),
// inspects each bundle and settles its configuration. Afterwards dir is the
// deployment folder: the project's files, every one of which a function may
// read at run time, and the bundles.
//
// A function's configuration is the defaults, then its own `export const
// config`, then vercel.json's "functions" globs that match its file, in
// their order, then shoal.json: each overrides what the ones before it set.
//
// Mistakes in the project come back as a *Error, or as several joined with
// errors.Join when esbuild finds more than one; use errors.As to get at them.
// Other errors, such as failed I/O, are wrapped.
func Build(ctx context.Context, dir string, opts Options) (*Result, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	shoalPatch, err := readConfig(dir)
	if err != nil {
		return nil, err
	}
	vc, err := readVercelConfig(dir)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	files, err := functionFiles(dir)
	if err != nil {
		return nil, err
	}
	if len(files) > 0 {
		res.Entry, res.Routed = routes.Dir+"/", true
		if _, err := routes.New(files); err != nil {
			return nil, &Error{Msg: err.Error()}
		}
	} else {
		entry, err := findEntry(dir)
		if err != nil {
			return nil, err
		}
		res.Entry, files = entry, []string{entry}
	}
	if err := vc.check(dir, files); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, injectFile), []byte(injectSource), 0o644); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	defer os.Remove(filepath.Join(dir, injectFile))
	for _, file := range files {
		bundle, err := bundle(ctx, dir, file)
		if err != nil {
			return nil, err
		}
		// The files' patches apply after the source's, which only the
		// inspection reads.
		patches := append(vc.patches(file), shoalPatch)
		cfg := model.DefaultFunctionConfig()
		if opts.Inspect != nil {
			memory := cfg
			for _, p := range patches {
				memory = memory.With(p)
			}
			raw, err := opts.Inspect(ctx, filepath.Join(dir, filepath.FromSlash(bundle)), memory.MemoryMB)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			patch, err := parseSourceConfig(file, raw)
			if err != nil {
				return nil, err
			}
			cfg = cfg.With(patch)
		}
		for _, p := range patches {
			cfg = cfg.With(p)
		}
		if err := cfg.Validate(); err != nil {
			return nil, &Error{File: file, Msg: err.Error()}
		}
		res.Functions = append(res.Functions, model.Function{File: file, Bundle: bundle, Config: cfg})
	}
	if err := os.Remove(filepath.Join(dir, injectFile)); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	if res.Digest, err = digest(dir, res.Functions); err != nil {
		return nil, err
	}
	return res, nil
}

// functionFiles returns the function files under dir/api, sorted; none
// when there is no api/ folder.
func functionFiles(dir string) ([]string, error) {
	root := filepath.Join(dir, routes.Dir)
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return nil, nil
	}
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if name := d.Name(); p != root && (name[0] == '_' || name[0] == '.' || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if routes.IsFunction(rel) && d.Type().IsRegular() {
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("find functions: %w", err)
	}
	return files, nil
}

// digest hashes every file under dir, path and contents, in a fixed order,
// and fns.
func digest(dir string, fns []model.Function) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		fmt.Fprintf(h, "%s\x00", filepath.ToSlash(rel))
		n, err := io.Copy(h, f)
		fmt.Fprintf(h, "\x00%d\x00", n)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("build: digest: %w", err)
	}
	cfgJSON, err := json.Marshal(fns)
	if err != nil {
		return "", fmt.Errorf("build: encode config: %w", err)
	}
	h.Write(cfgJSON)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// readConfig reads srcDir/shoal.json, returning an empty patch when there is
// none.
func readConfig(srcDir string) (model.ConfigPatch, error) {
	data, err := os.ReadFile(filepath.Join(srcDir, configFile))
	if errors.Is(err, fs.ErrNotExist) {
		return model.ConfigPatch{}, nil
	}
	if err != nil {
		return model.ConfigPatch{}, fmt.Errorf("read %s: %w", configFile, err)
	}
	return parsePatch(data)
}

// findEntry returns the slash-separated path, relative to srcDir, of the
// first of entryCandidates that exists, else of package.json's "main".
func findEntry(srcDir string) (string, error) {
	for _, name := range entryCandidates {
		ok, err := isFile(filepath.Join(srcDir, name))
		if err != nil {
			return "", err
		}
		if ok {
			return name, nil
		}
	}
	const pkgFile = "package.json"
	noEntry := &Error{Msg: `no entry: add index.mjs, index.js, index.cjs, index.ts or package.json "main"`}
	data, err := os.ReadFile(filepath.Join(srcDir, pkgFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", noEntry
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", pkgFile, err)
	}
	var pkg struct {
		Main string `json:"main"`
	}
	if err := json.Unmarshal(data, &pkg); err != nil {
		pe := &Error{File: pkgFile, Msg: err.Error()}
		if serr, ok := errors.AsType[*json.SyntaxError](err); ok {
			pe.Line = lineAt(data, serr.Offset-1) // Offset counts the offending byte
		} else if terr, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
			pe.Line = lineAt(data, terr.Offset)
			pe.Msg = fmt.Sprintf(`"main" must be a string, got %s`, terr.Value)
		}
		return "", pe
	}
	if pkg.Main == "" {
		return "", noEntry
	}
	entry := path.Clean(filepath.ToSlash(pkg.Main))
	if !filepath.IsLocal(filepath.FromSlash(entry)) {
		return "", &Error{File: pkgFile, Msg: fmt.Sprintf(`"main" %q must be a file inside the project folder`, pkg.Main)}
	}
	ok, err := isFile(filepath.Join(srcDir, filepath.FromSlash(entry)))
	if err != nil {
		return "", err
	}
	if !ok {
		return "", &Error{File: pkgFile, Msg: fmt.Sprintf(`"main" %q does not exist`, pkg.Main)}
	}
	return entry, nil
}

// isFile reports whether name exists and is not a directory.
func isFile(name string) (bool, error) {
	fi, err := os.Stat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("find entry: %w", err)
	}
	return !fi.IsDir(), nil
}

// bundle runs esbuild on the function file entry, writes its bundle and
// source map next to it, and returns the bundle's path relative to dir,
// slash-separated. The bundle is CommonJS (BundlePrefix + the entry's name
// + ".cjs") where the code allows: node loads it as a vm.Script, whose
// compiled code V8 can cache (the deploy writes the cache; see
// bootstrap.CodeCache), which it cannot for an ES module in Node 20. Code
// with a top-level await, an import() of something other than a string,
// "import(" in its text (see importInText), or that uses import.meta beyond
// url, dirname and filename, gets an ES module (".mjs") instead, as it does
// where CommonJS fails to build at all; that build's errors are the ones
// reported.
func bundle(ctx context.Context, dir, entry string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("bundle %s: %w", entry, err)
	}
	// Either bundle, its source map, and the CommonJS bundle's code cache.
	var names []string
	for _, ext := range []string{".cjs", ".mjs"} {
		out := path.Join(path.Dir(entry), BundlePrefix+path.Base(entry)+ext)
		names = append(names, out, out+".map")
		if ext == ".cjs" {
			names = append(names, bootstrap.CodeCache(out))
		}
	}
	for _, name := range names {
		if ok, err := isFile(filepath.Join(dir, filepath.FromSlash(name))); err != nil || ok {
			if err == nil {
				err = &Error{File: name, Msg: "this name is shoal's, for the bundle of " + entry + ": rename the file"}
			}
			return "", err
		}
	}
	out, err := esbuild(ctx, dir, entry, api.FormatCommonJS)
	if _, ok := errors.AsType[*fallback](err); ok {
		out, err = esbuild(ctx, dir, entry, api.FormatESModule)
	}
	return out, err
}

// importInText reports whether a CommonJS bundle's text holds "import("
// outside its block comments (where JSDoc types such as
// {import('./x').T} are common). esbuild leaves no import() call in such a
// bundle (see esbuild), so what it finds is in a string or a regular
// expression: most likely code for eval or new Function, where import()
// throws in a vm.Script (node 20 has no callback for it without a flag)
// and works in an ES module. A false find costs the code cache, not
// correctness.
func importInText(bundle []byte) bool {
	return importCall.Match(blockComment.ReplaceAll(bundle, nil))
}

var (
	importCall   = regexp.MustCompile(`(?:^|[^.\w$])import\s*\(`)
	blockComment = regexp.MustCompile(`(?s)/\*.*?\*/`)
)

// fallback is why a CommonJS bundle was not made.
type fallback struct{ msgs []api.Message }

func (f *fallback) Error() string { return messagesError(f.msgs).Error() }

// esbuild bundles entry in format; for CommonJS, what would change the
// code's meaning there is a *fallback, and nothing is written.
func esbuild(ctx context.Context, dir, entry string, format api.Format) (string, error) {
	opts := api.BuildOptions{
		EntryPoints:   []string{filepath.Join(dir, filepath.FromSlash(entry))},
		AbsWorkingDir: dir,
		Bundle:        true,
		Platform:      api.PlatformNode,
		Engines:       []api.Engine{{Name: api.EngineNode, Version: "20"}},
		Format:        format,
		Sourcemap:     api.SourceMapLinked,
		// The sources are in the deployment beside it; without their
		// text the map is a third the size, and node (which reads it at
		// every cold start) parses it in half the time: 24 ms, not 45,
		// for an Express app.
		SourcesContent: api.SourcesContentExclude,
		LogLevel:       api.LogLevelSilent,
		Loader: map[string]api.Loader{
			".ts":  api.LoaderTS,
			".mts": api.LoaderTS,
			".cts": api.LoaderTS,
		},
		External: []string{"*.node"},
	}
	ext := ".mjs"
	if format == api.FormatCommonJS {
		ext = ".cjs"
		// The bootstrap's wrapper passes the bundle's path as __filename,
		// its folder as __dirname and import.meta's values as
		// __shoalImportMeta; __filename becomes the source's, as on Vercel.
		opts.Banner = map[string]string{"js": "__filename = require(\"node:path\").join(__dirname, " + strconv.Quote(path.Base(entry)) + ");"}
		opts.Define = map[string]string{
			"import.meta.url":      "__shoalImportMeta.url",
			"import.meta.dirname":  "__shoalImportMeta.dirname",
			"import.meta.filename": "__shoalImportMeta.filename",
		}
		// No import() is left in the bundle: node 20 loses a vm.Script's
		// import() callback when the script comes from a code cache. One
		// of a string (a built-in, a file) becomes a require, or the file
		// is bundled; one of anything else makes an ES module instead.
		opts.Supported = map[string]bool{"dynamic-import": false}
		opts.LogOverride = map[string]api.LogLevel{"unsupported-dynamic-import": api.LogLevelWarning}
	} else {
		opts.Banner = map[string]string{"js": requireBanner}
		opts.Inject = []string{filepath.Join(dir, injectFile)}
	}
	out := path.Join(path.Dir(entry), BundlePrefix+path.Base(entry)+ext)
	opts.Outfile = filepath.Join(dir, filepath.FromSlash(out))
	bc, cerr := api.Context(opts)
	if cerr != nil {
		return "", messagesError(cerr.Errors)
	}
	defer bc.Dispose()
	stop := context.AfterFunc(ctx, bc.Cancel)
	res := bc.Rebuild()
	stop()
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("bundle %s: %w", entry, err)
	}
	if format == api.FormatCommonJS {
		var why []api.Message
		for _, w := range res.Warnings {
			if w.ID == "empty-import-meta" || w.ID == "unsupported-dynamic-import" {
				why = append(why, w)
			}
		}
		for _, f := range res.OutputFiles {
			if f.Path == opts.Outfile && importInText(f.Contents) {
				why = append(why, api.Message{Text: "import( in the bundle's text: code that eval or new Function makes may call import(), which a CommonJS bundle cannot serve"})
			}
		}
		if why = append(why, res.Errors...); len(why) > 0 {
			return "", &fallback{why}
		}
	}
	if len(res.Errors) > 0 {
		return "", messagesError(res.Errors)
	}
	for _, f := range res.OutputFiles {
		if err := os.WriteFile(f.Path, f.Contents, 0o644); err != nil {
			return "", fmt.Errorf("bundle %s: %w", entry, err)
		}
	}
	if ok, err := isFile(opts.Outfile); err != nil || !ok {
		return "", fmt.Errorf("bundle %s: esbuild wrote no %s (%v)", entry, out, err)
	}
	return out, nil
}

// messagesError turns esbuild's error messages into at most maxErrors
// *Error, joined.
func messagesError(msgs []api.Message) error {
	errs := make([]error, 0, min(len(msgs), maxErrors))
	for _, m := range msgs[:min(len(msgs), maxErrors)] {
		e := &Error{Msg: m.Text}
		if loc := m.Location; loc != nil {
			e.File = filepath.ToSlash(loc.File)
			e.Line = loc.Line
			if loc.Line > 0 {
				e.Column = loc.Column + 1
			}
		}
		errs = append(errs, e)
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}
