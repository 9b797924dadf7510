package server

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRuntimeExe: serve runs shoal-runtime when an executable file of
// that name sits beside it, and itself otherwise.
func TestRuntimeExe(t *testing.T) {
	for _, tc := range []struct {
		name  string
		make  func(path string) error
		small bool
	}{
		{"beside", func(p string) error { return os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755) }, true},
		{"absent", func(string) error { return nil }, false},
		{"not_executable", func(p string) error { return os.WriteFile(p, []byte("#!/bin/sh\n"), 0o644) }, false},
		{"a_folder", func(p string) error { return os.Mkdir(p, 0o755) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			self := filepath.Join(dir, "shoal")
			small := filepath.Join(dir, RuntimeBinary)
			if err := tc.make(small); err != nil {
				t.Fatal(err)
			}
			want := self
			if tc.small {
				want = small
			}
			if got := runtimeExe(self); got != want {
				t.Errorf("runtimeExe(%s) = %s, want %s", self, got, want)
			}
		})
	}
}
