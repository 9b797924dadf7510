package sandbox

import (
	"os"
	"path/filepath"
	"testing"
)

// A serve that starts removes the scratch folders of serves that are gone
// (their lock is free: the kernel let it go when they died) and leaves
// those of running serves, and anything else, alone.
func TestScratch_SweepsOnlyWhatGoneServesLeft(t *testing.T) {
	base := t.TempDir()
	running, err := openScratch(base)
	if err != nil {
		t.Fatal(err)
	}
	// A killed serve's folder: its lock file, which nothing holds, and an
	// instance's folder.
	gone := filepath.Join(base, "shoal-serve-1")
	if err := os.MkdirAll(filepath.Join(gone, "i1-1"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{lockName, "i1-1/node.sock"} {
		if err := os.WriteFile(filepath.Join(gone, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A folder being made, not locked yet, and one of something else.
	making, other := filepath.Join(base, "shoal-serve-2"), filepath.Join(base, "shoal-other")
	for _, d := range []string{making, other} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}

	next, err := openScratch(base)
	if err != nil {
		t.Fatal(err)
	}
	defer next.close()
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Errorf("the gone serve's folder: %v, want it removed", err)
	}
	for _, d := range []string{running.dir, making, other, next.dir} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s: %v, want it left", d, err)
		}
	}
	if fi, err := os.Stat(next.dir); err != nil || fi.Mode().Perm() != 0o711 {
		t.Errorf("scratch folder mode %v (%v), want searchable by all, listable by serve alone", fi.Mode().Perm(), err)
	}

	if err := os.Mkdir(filepath.Join(running.dir, "i2-1"), 0o755); err != nil {
		t.Fatal(err)
	}
	running.close()
	if _, err := os.Stat(running.dir); !os.IsNotExist(err) {
		t.Errorf("a closed scratch folder: %v, want it removed with what it held", err)
	}
}
