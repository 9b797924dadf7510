package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/evanw/esbuild/pkg/api"

	"github.com/shoal-dev/shoal/internal/model"
)

// BundleFile is the name of the bundle in the output folder; its source map
// is BundleFile + ".map".
const BundleFile = "index.mjs"

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

// Result describes a bundle that Build wrote.
type Result struct {
	// Entry is the path of the entry module relative to the project
	// folder, slash-separated, such as "index.ts" or "src/main.js".
	Entry string
	// Config is the project's shoal.json, or the defaults without one.
	Config model.FunctionConfig
	// Digest is the hex SHA-256 of the bundle and the JSON of Config: the
	// same project gives the same digest.
	Digest string
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

// Build reads the project folder srcDir, validates shoal.json, finds the
// entry, and bundles it with esbuild into outDir/index.mjs (+ index.mjs.map).
//
// Mistakes in the project come back as a *Error, or as several joined with
// errors.Join when esbuild finds more than one; use errors.As to get at them.
// Other errors, such as failed I/O, are wrapped.
func Build(ctx context.Context, srcDir, outDir string) (*Result, error) {
	srcDir, err := filepath.Abs(srcDir)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	outDir, err = filepath.Abs(outDir)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	cfg, err := readConfig(srcDir)
	if err != nil {
		return nil, err
	}
	entry, err := findEntry(srcDir)
	if err != nil {
		return nil, err
	}
	bundle, err := bundle(ctx, srcDir, entry, filepath.Join(outDir, BundleFile))
	if err != nil {
		return nil, err
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("build: encode config: %w", err)
	}
	h := sha256.New()
	h.Write(bundle)
	h.Write([]byte{0})
	h.Write(cfgJSON)
	return &Result{Entry: entry, Config: cfg, Digest: hex.EncodeToString(h.Sum(nil))}, nil
}

// readConfig reads srcDir/shoal.json, returning the defaults when there is
// none.
func readConfig(srcDir string) (model.FunctionConfig, error) {
	data, err := os.ReadFile(filepath.Join(srcDir, configFile))
	if errors.Is(err, fs.ErrNotExist) {
		return model.DefaultFunctionConfig(), nil
	}
	if err != nil {
		return model.FunctionConfig{}, fmt.Errorf("read %s: %w", configFile, err)
	}
	return parseConfig(data)
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

// bundle runs esbuild on entry, writes outfile and its source map, and
// returns the bundle's bytes.
func bundle(ctx context.Context, srcDir, entry, outfile string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", entry, err)
	}
	bc, cerr := api.Context(api.BuildOptions{
		EntryPoints:   []string{filepath.Join(srcDir, filepath.FromSlash(entry))},
		AbsWorkingDir: srcDir,
		Bundle:        true,
		Platform:      api.PlatformNode,
		Engines:       []api.Engine{{Name: api.EngineNode, Version: "20"}},
		Format:        api.FormatESModule,
		Outfile:       outfile,
		Write:         true,
		Sourcemap:     api.SourceMapLinked,
		LogLevel:      api.LogLevelSilent,
		Loader: map[string]api.Loader{
			".ts":  api.LoaderTS,
			".mts": api.LoaderTS,
			".cts": api.LoaderTS,
		},
		External: []string{"*.node"},
		Banner:   map[string]string{"js": requireBanner},
	})
	if cerr != nil {
		return nil, messagesError(cerr.Errors)
	}
	defer bc.Dispose()
	stop := context.AfterFunc(ctx, bc.Cancel)
	res := bc.Rebuild()
	stop()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", entry, err)
	}
	if len(res.Errors) > 0 {
		return nil, messagesError(res.Errors)
	}
	for _, f := range res.OutputFiles {
		if f.Path == outfile {
			return f.Contents, nil
		}
	}
	return nil, fmt.Errorf("bundle %s: esbuild wrote no %s", entry, BundleFile)
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
