package build

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/shoal-dev/shoal/internal/model"
)

// vercelFile is Vercel's project configuration, of which shoal reads the
// per-function settings.
const vercelFile = "vercel.json"

// vercelConfig is what shoal takes from vercel.json: its "functions" globs,
// in the file's order.
type vercelConfig struct {
	globs []vercelGlob
}

// vercelGlob is one entry of vercel.json's "functions".
type vercelGlob struct {
	glob         string
	patch        model.ConfigPatch
	includeFiles []string
}

// vercelKeys are vercel.json's top-level keys shoal accepts; any other is
// refused, since ignoring, say, "rewrites" would serve the project wrong.
var vercelKeys = []string{"$schema", "version", "functions"}

// readVercelConfig reads dir/vercel.json; no file is an empty config.
func readVercelConfig(dir string) (vercelConfig, error) {
	data, err := os.ReadFile(filepath.Join(dir, vercelFile))
	if errors.Is(err, fs.ErrNotExist) {
		return vercelConfig{}, nil
	}
	if err != nil {
		return vercelConfig{}, fmt.Errorf("read %s: %w", vercelFile, err)
	}
	return parseVercelConfig(data)
}

func parseVercelConfig(data []byte) (vercelConfig, error) {
	fail := func(format string, args ...any) (vercelConfig, error) {
		return vercelConfig{}, &Error{File: vercelFile, Msg: fmt.Sprintf(format, args...)}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return fail("%v", err)
	}
	for key := range top {
		if !slices.Contains(vercelKeys, key) {
			return fail("%q is not supported by shoal (it reads %q): remove it, or deploy without it", key, "functions")
		}
	}
	raw, ok := top["functions"]
	if !ok {
		return vercelConfig{}, nil
	}
	// Read the globs in order: where several match a file, the later
	// override the earlier.
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return fail(`"functions" must be an object of globs`)
	}
	var vc vercelConfig
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fail("%v", err)
		}
		glob := tok.(string)
		if !doublestar.ValidatePattern(glob) {
			return fail("functions: %q is not a valid glob", glob)
		}
		var fn struct {
			Memory       *int         `json:"memory"`
			MaxDuration  *json.Number `json:"maxDuration"`
			IncludeFiles any          `json:"includeFiles"`
		}
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return fail("%v", err)
		}
		inner := json.NewDecoder(bytes.NewReader(val))
		inner.DisallowUnknownFields()
		inner.UseNumber()
		if err := inner.Decode(&fn); err != nil {
			return fail("functions[%q]: %s (shoal reads memory, maxDuration and includeFiles)", glob, strings.TrimPrefix(err.Error(), "json: "))
		}
		g := vercelGlob{glob: glob}
		if fn.Memory != nil {
			if *fn.Memory < model.MinMemoryMB || *fn.Memory > model.MaxMemoryMB {
				return fail("functions[%q]: memory: must be an integer from %d to %d, got %d", glob, model.MinMemoryMB, model.MaxMemoryMB, *fn.Memory)
			}
			g.patch.MemoryMB = fn.Memory
		}
		if fn.MaxDuration != nil {
			d, err := seconds(*fn.MaxDuration)
			if err != nil {
				return fail("functions[%q]: %v", glob, err)
			}
			g.patch.MaxDuration = &d
		}
		switch inc := fn.IncludeFiles.(type) {
		case nil:
		case string:
			g.includeFiles = []string{inc}
		default:
			return fail("functions[%q]: includeFiles: must be a glob string", glob)
		}
		vc.globs = append(vc.globs, g)
	}
	return vc, nil
}

// check refuses globs that match none of the function files and
// includeFiles globs that match no file in dir. Every file of the project
// is kept in the deployment, so an includeFiles glob that matches is
// already satisfied.
func (vc vercelConfig) check(dir string, files []string) error {
	for _, g := range vc.globs {
		if !slices.ContainsFunc(files, func(f string) bool { return matches(g.glob, f) }) {
			return &Error{File: vercelFile, Msg: fmt.Sprintf("functions[%q] matches no function (the functions are %s)", g.glob, strings.Join(files, ", "))}
		}
		for _, inc := range g.includeFiles {
			found, err := doublestar.Glob(os.DirFS(dir), strings.TrimPrefix(inc, "./"), doublestar.WithFilesOnly(), doublestar.WithFailOnIOErrors())
			if err != nil {
				return &Error{File: vercelFile, Msg: fmt.Sprintf("functions[%q]: includeFiles %q: %v", g.glob, inc, err)}
			}
			if len(found) == 0 {
				return &Error{File: vercelFile, Msg: fmt.Sprintf("functions[%q]: includeFiles %q matches no file", g.glob, inc)}
			}
		}
	}
	return nil
}

// patches returns the settings of the globs that match file, in order.
func (vc vercelConfig) patches(file string) []model.ConfigPatch {
	var ps []model.ConfigPatch
	for _, g := range vc.globs {
		if matches(g.glob, file) {
			ps = append(ps, g.patch)
		}
	}
	return ps
}

// matches reports whether a vercel.json glob matches a project file; a
// leading "./" is allowed.
func matches(glob, file string) bool {
	ok, _ := doublestar.Match(strings.TrimPrefix(glob, "./"), file)
	return ok
}

// parseSourceConfig reads a function's `export const config` (raw, as JSON;
// nil for none) as Vercel does: maxDuration and memory set the function's
// configuration, runtime may only be "nodejs" or "edge" (which runs in Node
// here as well), regions and preferredRegion mean nothing on one machine and
// are ignored, and any other key is refused.
func parseSourceConfig(file string, raw json.RawMessage) (model.ConfigPatch, error) {
	var patch model.ConfigPatch
	if raw == nil {
		return patch, nil
	}
	fail := func(format string, args ...any) (model.ConfigPatch, error) {
		return model.ConfigPatch{}, &Error{File: file, Msg: "export const config: " + fmt.Sprintf(format, args...)}
	}
	var c map[string]json.RawMessage
	if err := json.Unmarshal(raw, &c); err != nil {
		return fail("must be an object")
	}
	for key, val := range c {
		switch key {
		case "maxDuration":
			var f float64
			if err := json.Unmarshal(val, &f); err != nil {
				return fail("maxDuration: must be a number of seconds, got %s", val)
			}
			d, err := seconds(json.Number(bytes.TrimSpace(val)))
			if err != nil {
				return fail("%v", err)
			}
			patch.MaxDuration = &d
		case "memory":
			var n int
			if err := json.Unmarshal(val, &n); err != nil || n < model.MinMemoryMB || n > model.MaxMemoryMB {
				return fail("memory: must be an integer from %d to %d, got %s", model.MinMemoryMB, model.MaxMemoryMB, val)
			}
			patch.MemoryMB = &n
		case "runtime":
			var rt string
			if err := json.Unmarshal(val, &rt); err != nil || (rt != "nodejs" && rt != "edge") {
				return fail(`runtime: must be "nodejs" or "edge", got %s`, val)
			}
		case "regions", "preferredRegion":
		default:
			return fail("unknown key %q (shoal reads maxDuration, memory and runtime)", key)
		}
	}
	return patch, nil
}
