// Package routes maps the source files under a project's api/ folder to
// URL paths, the way Vercel Functions do, and matches request paths against
// them. It is pure: it reads no files and knows nothing of HTTP.
//
// Every .js .mjs .cjs .ts .mts .cts file under api/ is a function at
// /api/<path without extension>, and also answers with its extension; an
// index file answers its folder. Files and folders whose name starts with _
// or ., node_modules, and .d.ts files are not routes. A segment [name] matches one path
// segment and becomes the parameter name; a last segment [...name] matches
// one or more, and [[...name]] zero or more, with the parameter holding them
// joined by "/" as Vercel does. Static segments win over [name], which wins
// over catch-alls.
package routes

import (
	"cmp"
	"fmt"
	"net/url"
	"path"
	"slices"
	"strings"
)

// Dir is the folder whose files are functions.
const Dir = "api"

// Extensions are the source files that are functions.
var Extensions = []string{".js", ".mjs", ".cjs", ".ts", ".mts", ".cts"}

// IsFunction reports whether file, slash-separated and relative to the
// project folder, is a function: a source file under api/ whose name and
// folders start with neither _ nor ., and not a .d.ts.
func IsFunction(file string) bool {
	dir, rest, ok := strings.Cut(file, "/")
	if !ok || dir != Dir {
		return false
	}
	for seg := range strings.SplitSeq(rest, "/") {
		if seg == "" || seg[0] == '_' || seg[0] == '.' || seg == "node_modules" {
			return false
		}
	}
	if strings.HasSuffix(file, ".d.ts") || strings.HasSuffix(file, ".d.mts") || strings.HasSuffix(file, ".d.cts") {
		return false
	}
	return slices.Contains(Extensions, path.Ext(file))
}

// Pattern returns the route of a function file: "api/users/[id].ts" gives
// "/api/users/[id]", "api/index.js" gives "/api". It checks the dynamic
// segments.
func Pattern(file string) (string, error) {
	p := "/" + strings.TrimSuffix(file, path.Ext(file))
	if path.Base(p) == "index" {
		p = path.Dir(p)
	}
	if _, err := parse(p); err != nil {
		return "", fmt.Errorf("%s: %w", file, err)
	}
	return p, nil
}

// kind orders segments: a path is matched by the route whose first
// differing segment has the lowest kind.
type kind int

const (
	static kind = iota
	param
	catchAll         // [...name]: one or more segments
	optionalCatchAll // [[...name]]: zero or more
)

type segment struct {
	kind kind
	text string // the literal for static, the parameter name otherwise
}

// parse splits a route pattern into segments.
func parse(pattern string) ([]segment, error) {
	parts := strings.Split(strings.Trim(pattern, "/"), "/")
	segs := make([]segment, 0, len(parts))
	names := map[string]bool{}
	for i, s := range parts {
		seg := segment{kind: static, text: s}
		switch {
		case strings.HasPrefix(s, "[[...") && strings.HasSuffix(s, "]]"):
			seg = segment{kind: optionalCatchAll, text: s[5 : len(s)-2]}
		case strings.HasPrefix(s, "[...") && strings.HasSuffix(s, "]"):
			seg = segment{kind: catchAll, text: s[4 : len(s)-1]}
		case strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]"):
			seg = segment{kind: param, text: s[1 : len(s)-1]}
		case strings.ContainsAny(s, "[]"):
			return nil, fmt.Errorf("segment %q: a dynamic segment is a whole [name], [...name] or [[...name]]", s)
		}
		if seg.kind != static {
			if seg.text == "" || strings.ContainsAny(seg.text, "[]./") {
				return nil, fmt.Errorf("segment %q: the parameter needs a name of letters, digits, - and _", s)
			}
			if names[seg.text] {
				return nil, fmt.Errorf("parameter %q appears twice", seg.text)
			}
			names[seg.text] = true
		}
		if seg.kind >= catchAll && i != len(parts)-1 {
			return nil, fmt.Errorf("segment %q: a catch-all must be the last segment", s)
		}
		segs = append(segs, seg)
	}
	return segs, nil
}

// Table matches request paths to function files. The zero value matches
// nothing.
type Table struct {
	// immutable
	entries []entry // most specific first
}

// entry is one form of a file's route. Each file has its pattern's form
// and the forms of its own name: /api/a.ts for api/a.ts; /api/index and
// /api/index.ts for api/index.ts. All are matched most specific first, so
// that /api/index.ts goes to the index file, not to a catch-all.
type entry struct {
	index int       // in the files New was given
	segs  []segment // of the form
}

// New returns the table of function files (each as IsFunction accepts).
// Two files that would answer the same paths, such as api/a.js and
// api/a.ts, or api/[id].js and api/[slug].ts, are an error.
func New(files []string) (*Table, error) {
	t := &Table{entries: make([]entry, 0, len(files))}
	seen := map[string]string{} // shape -> file
	for i, f := range files {
		p, err := Pattern(f)
		if err != nil {
			return nil, err
		}
		segs, _ := parse(p) // Pattern checked it
		shape := shapeOf(segs)
		if other, ok := seen[shape]; ok {
			return nil, fmt.Errorf("%s and %s answer the same paths (%s)", other, f, p)
		}
		seen[shape] = f
		t.entries = append(t.entries, entry{index: i, segs: segs})
		ext, last := path.Ext(f), len(segs)-1
		if strings.TrimSuffix(path.Base(f), ext) == "index" {
			for _, name := range []string{"index", "index" + ext} {
				t.entries = append(t.entries, entry{index: i, segs: append(slices.Clone(segs), segment{kind: static, text: name})})
			}
		} else if segs[last].kind == static {
			named := slices.Clone(segs)
			named[last].text += ext
			t.entries = append(t.entries, entry{index: i, segs: named})
		}
	}
	slices.SortStableFunc(t.entries, func(a, b entry) int { return compare(a.segs, b.segs) })
	return t, nil
}

// shapeOf names a route by what it matches, parameter names left out.
func shapeOf(segs []segment) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte('/')
		switch s.kind {
		case static:
			b.WriteString(s.text)
		case param:
			b.WriteString("[]")
		default:
			b.WriteString("[...]")
		}
	}
	return b.String()
}

// compare orders routes most specific first: at the first segment where
// they differ in kind, the lower kind first; a longer route before a shorter
// one it extends.
func compare(a, b []segment) int {
	for i := range min(len(a), len(b)) {
		if c := cmp.Compare(a[i].kind, b[i].kind); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(b), len(a))
}

// Match returns the index, in the routes New was given, of the route that
// answers urlPath (decoded, as url.URL.Path holds it), with the route's
// parameters; ok is false when none does.
func (t *Table) Match(urlPath string) (index int, params url.Values, ok bool) {
	parts := strings.Split(strings.Trim(urlPath, "/"), "/")
	if len(parts) == 1 && parts[0] == "" {
		parts = nil
	}
	for _, e := range t.entries {
		if params, ok := e.match(parts); ok {
			return e.index, params, true
		}
	}
	return 0, nil, false
}

// match returns the parameters of the path segments parts when e matches
// them.
func (e *entry) match(parts []string) (url.Values, bool) {
	var params url.Values
	set := func(name, value string) {
		if params == nil {
			params = url.Values{}
		}
		params.Set(name, value)
	}
	for i, s := range e.segs {
		switch s.kind {
		case static:
			if i >= len(parts) || parts[i] != s.text {
				return nil, false
			}
		case param:
			if i >= len(parts) || parts[i] == "" {
				return nil, false
			}
			set(s.text, parts[i])
		case catchAll, optionalCatchAll:
			rest := parts[min(i, len(parts)):]
			if len(rest) == 0 && s.kind == catchAll {
				return nil, false
			}
			if len(rest) > 0 {
				set(s.text, strings.Join(rest, "/"))
			}
			return params, true
		}
	}
	return params, len(parts) == len(e.segs)
}
