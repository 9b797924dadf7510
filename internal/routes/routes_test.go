package routes

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestIsFunction(t *testing.T) {
	tests := map[string]bool{
		"api/hello.js":          true,
		"api/hello.mjs":         true,
		"api/hello.cjs":         true,
		"api/hello.ts":          true,
		"api/hello.mts":         true,
		"api/hello.cts":         true,
		"api/users/[id].ts":     true,
		"api/[...slug].js":      true,
		"api/index.js":          true,
		"api/types.d.ts":        false,
		"api/types.d.mts":       false,
		"api/_util.js":          false,
		"api/_lib/db.js":        false,
		"api/.hidden.js":        false,
		"api/.cache/x.js":       false,
		"api/data.json":         false,
		"api/readme.md":         false,
		"index.js":              false,
		"src/api/hello.js":      false,
		"apis/hello.js":         false,
		"api/nested/deep/x.cts": true,
	}
	for file, want := range tests {
		if got := IsFunction(file); got != want {
			t.Errorf("IsFunction(%q) = %v, want %v", file, got, want)
		}
	}
}

func TestPattern(t *testing.T) {
	tests := []struct{ file, want, err string }{
		{file: "api/hello.js", want: "/api/hello"},
		{file: "api/index.ts", want: "/api"},
		{file: "api/users/index.mjs", want: "/api/users"},
		{file: "api/users/[id].ts", want: "/api/users/[id]"},
		{file: "api/[org]/[repo]/index.js", want: "/api/[org]/[repo]"},
		{file: "api/files/[...path].js", want: "/api/files/[...path]"},
		{file: "api/docs/[[...slug]].js", want: "/api/docs/[[...slug]]"},
		{file: "api/[...a]/b.js", err: "catch-all must be the last"},
		{file: "api/x[id].js", err: "whole [name]"},
		{file: "api/[].js", err: "needs a name"},
		{file: "api/[id]/[id].js", err: "appears twice"},
	}
	for _, tt := range tests {
		got, err := Pattern(tt.file)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), tt.file) {
				t.Errorf("Pattern(%q) error = %v, want one naming the file and saying %q", tt.file, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Pattern(%q) = %q, %v; want %q", tt.file, got, err, tt.want)
		}
	}
}

func TestTable_Match(t *testing.T) {
	files := []string{
		"api/index.js",              // 0
		"api/hello.ts",              // 1
		"api/users/[id].ts",         // 2
		"api/users/me.js",           // 3
		"api/users/index.js",        // 4
		"api/files/[...path].js",    // 5
		"api/docs/[[...slug]].mjs",  // 6
		"api/[org]/[repo]/pulls.js", // 7
		"api/[...rest].cjs",         // 8
	}
	tab, err := New(files)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path   string
		want   int // -1: no route
		params string
	}{
		{path: "/api", want: 0},
		{path: "/api/", want: 0},
		{path: "/api/index", want: 0},
		{path: "/api/index.js", want: 0},
		{path: "/api/hello", want: 1},
		{path: "/api/hello/", want: 1},
		{path: "/api/hello.ts", want: 1},
		{path: "/api/hello.js", want: 8, params: "rest=hello.js"}, // not its extension
		{path: "/api/users/42", want: 2, params: "id=42"},
		{path: "/api/users/me", want: 3}, // static wins over [id]
		{path: "/api/users/me.js", want: 3},
		{path: "/api/users", want: 4},
		{path: "/api/users/index.js", want: 4},
		{path: "/api/files/a", want: 5, params: "path=a"},
		{path: "/api/files/a/b/c.txt", want: 5, params: "path=a%2Fb%2Fc.txt"},
		{path: "/api/files", want: 8, params: "rest=files"}, // [...path] needs one segment
		{path: "/api/docs", want: 6},
		{path: "/api/docs/x/y", want: 6, params: "slug=x%2Fy"},
		{path: "/api/shoal/shoal/pulls", want: 7, params: "org=shoal&repo=shoal"},
		{path: "/api/a/b/c/d", want: 8, params: "rest=a%2Fb%2Fc%2Fd"},
		{path: "/", want: -1},
		{path: "/other", want: -1},
		{path: "/apis/x", want: -1},
	}
	for _, tt := range tests {
		i, params, ok := tab.Match(tt.path)
		if tt.want < 0 {
			if ok {
				t.Errorf("Match(%q) = %s, want no route", tt.path, files[i])
			}
			continue
		}
		if !ok || i != tt.want {
			got := "no route"
			if ok {
				got = files[i]
			}
			t.Errorf("Match(%q) = %s, want %s", tt.path, got, files[tt.want])
			continue
		}
		if got := url.Values(params).Encode(); got != tt.params {
			t.Errorf("Match(%q) params = %q, want %q", tt.path, got, tt.params)
		}
	}
}

func TestNew_RefusesRoutesThatCollide(t *testing.T) {
	tests := [][]string{
		{"api/a.js", "api/a.ts"},
		{"api/a.js", "api/a/index.js"},
		{"api/[id].js", "api/[slug].ts"},
		{"api/[...a].js", "api/[[...b]].js"},
	}
	for _, files := range tests {
		_, err := New(files)
		if err == nil || !strings.Contains(err.Error(), files[0]) || !strings.Contains(err.Error(), files[1]) {
			t.Errorf("New(%q) error = %v, want one naming both files", files, err)
		}
	}
}

func TestTable_ZeroMatchesNothing(t *testing.T) {
	if _, _, ok := new(Table).Match("/api"); ok {
		t.Error("the zero Table matched /api")
	}
}

// BenchmarkTable_Match matches paths against a table of 50 routes, as the
// invoker does once per invocation of a project with api/.
func BenchmarkTable_Match(b *testing.B) {
	var files []string
	for i := range 40 {
		files = append(files, fmt.Sprintf("api/section%d/item.ts", i))
	}
	files = append(files, "api/users/[id].ts", "api/users/[id]/posts/[post].ts", "api/files/[...path].js",
		"api/index.ts", "api/hello.js", "api/a/b/c/d.js", "api/[org]/settings.js", "api/docs/[[...slug]].mjs",
		"api/x.js", "api/y.js")
	tab, err := New(files)
	if err != nil {
		b.Fatal(err)
	}
	for _, path := range []string{"/api/hello", "/api/users/42/posts/7", "/api/files/a/b/c.txt"} {
		b.Run(path, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, ok := tab.Match(path); !ok {
					b.Fatal("no match")
				}
			}
		})
	}
}
