package shoal_test

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/shoal-dev/shoal/internal/"

// forbidden lists, per package, what it must not import directly:
// data flows gateway -> invoker -> tunnel -> runtime -> node, and nothing on
// the right imports anything on the left.
var forbidden = map[string][]string{
	"fastlane": {"gateway", "invoker", "tunnel", "runtime", "store", "sandbox", "server", "build"},
	"gateway":  {"tunnel", "runtime", "store", "sandbox", "server", "build"},
	"invoker":  {"gateway", "store", "sandbox", "runtime", "server"},
	"scaler":   {"gateway", "invoker", "tunnel", "runtime", "sandbox", "store"},
	"limiter":  {"gateway", "invoker", "tunnel", "runtime", "sandbox", "store", "server", "metering"},
	"tunnel":   {"gateway", "invoker", "runtime", "store", "sandbox"},
	"runtime":  {"gateway", "invoker", "tunnel", "store", "sandbox", "build", "server"},
	"sandbox":  {"gateway", "invoker", "tunnel", "store", "server"},
	"store":    {"gateway", "invoker", "tunnel", "runtime", "sandbox", "server"},
	"build":    {"gateway", "invoker", "tunnel", "runtime", "sandbox", "store", "server"},
	"adminapi": {"gateway", "invoker", "tunnel", "runtime", "sandbox", "store", "server", "build"},
	"model":    {"gateway", "invoker", "tunnel", "runtime", "sandbox", "store", "server", "build"},
	"httphead": {"fastlane", "gateway", "invoker", "nodelink", "tunnel", "runtime", "sandbox", "store", "server", "build"},
	"sweep":    {"fastlane", "gateway", "invoker", "nodelink", "tunnel", "runtime", "sandbox", "store", "server", "build"},
}

// heavy are third-party modules that must stay out of the instance's
// supervisor (the runtime package): what runs beside every node process
// links no SQLite and no bundler.
var heavy = []string{"modernc.org/sqlite", "github.com/evanw/esbuild"}

// TestRuntimeBinaryIsSmall: shoal-runtime, which runs beside every node
// process, links none of serve's parts or their heavy dependencies; each
// package it links is mapped, and resident, in every instance.
func TestRuntimeBinaryIsSmall(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "./cmd/shoal-runtime").Output()
	if err != nil {
		t.Fatalf("go list shoal-runtime: %v", err)
	}
	bad := append([]string{"github.com/prometheus/", module + "server", module + "gateway", module + "invoker",
		module + "store", module + "build", module + "metering", module + "cli"}, heavy...)
	deps := strings.Fields(string(out))
	for _, dep := range deps {
		for _, b := range bad {
			if strings.HasPrefix(dep, b) {
				t.Errorf("shoal-runtime links %s", dep)
			}
		}
	}
	if len(deps) < 10 {
		t.Fatalf("go list shoal-runtime: %d packages (%q), want its whole graph", len(deps), out)
	}
}

func TestImportGraph(t *testing.T) {
	for pkg, bad := range forbidden {
		t.Run(pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-json=Imports,Deps", "./internal/"+pkg).Output()
			if err != nil {
				t.Fatalf("go list %s: %v", pkg, err)
			}
			var p struct{ Imports, Deps []string }
			if err := json.Unmarshal(out, &p); err != nil {
				t.Fatal(err)
			}
			for _, b := range bad {
				for _, imp := range p.Imports {
					if imp == module+b {
						t.Errorf("%s imports %s", pkg, b)
					}
				}
			}
			if pkg == "runtime" {
				for _, dep := range p.Deps {
					for _, h := range heavy {
						if strings.HasPrefix(dep, h) {
							t.Errorf("runtime links %s", dep)
						}
					}
				}
			}
		})
	}
}

// TestPackageDocs checks that every package has exactly one package doc
// comment, starting "Package NAME" (or "Command NAME" for main).
func TestPackageDocs(t *testing.T) {
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		if name := d.Name(); path != "." && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "testdata") {
			return filepath.SkipDir
		}
		fset := token.NewFileSet()
		pkgs, err := parser.ParseDir(fset, path, func(fi os.FileInfo) bool {
			return !strings.HasSuffix(fi.Name(), "_test.go")
		}, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			return err
		}
		for name, p := range pkgs {
			var docs []string
			for fname, f := range p.Files {
				if f.Doc != nil {
					docs = append(docs, fname)
					want := "Package " + name + " "
					if name == "main" {
						want = "Command "
					}
					if !strings.HasPrefix(f.Doc.Text(), want) {
						t.Errorf("%s: package doc starts %q, want %q", fname, firstLine(f.Doc.Text()), want)
					}
				}
			}
			if len(docs) != 1 {
				t.Errorf("package %s (%s) has %d package docs (%v), want 1", name, path, len(docs), docs)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
