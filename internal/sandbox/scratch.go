package sandbox

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// scratch is the folder of one serve's instance scratch folders, in a
// temporary folder all may search. serve holds a lock on a file in it while
// it runs: the kernel drops the lock when serve exits, even killed, so a
// serve that starts removes every such folder whose lock is free, which a
// serve that could not clean up left, and leaves those of running serves.
type scratch struct {
	dir  string
	lock *os.File
}

// scratchPattern names scratch folders; lockName is their lock file.
const (
	scratchPattern = "shoal-serve-*"
	lockName       = "lock"
)

// openScratch sweeps base of the scratch folders killed serves left, then
// makes and locks one of its own.
func openScratch(base string) (*scratch, error) {
	sweepScratch(base)
	dir, err := os.MkdirTemp(base, scratchPattern)
	if err != nil {
		return nil, fmt.Errorf("scratch folder: %w", err)
	}
	// Jailed runtimes run as unprivileged uids and reach their folders by
	// path: searchable, not listable.
	if err := os.Chmod(dir, 0o711); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("scratch folder: %w", err)
	}
	// The lock is taken under another name and renamed, so that a sweep
	// never finds the lock file unlocked while its serve runs.
	f, err := os.CreateTemp(dir, lockName+"-")
	if err == nil {
		if err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
			err = os.Rename(f.Name(), filepath.Join(dir, lockName))
		}
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("scratch folder lock: %w", err)
	}
	return &scratch{dir: dir, lock: f}, nil
}

// sweepScratch removes the scratch folders in base whose lock is free.
func sweepScratch(base string) {
	dirs, _ := filepath.Glob(filepath.Join(base, scratchPattern))
	for _, dir := range dirs {
		f, err := os.Open(filepath.Join(dir, lockName))
		if err != nil {
			continue // not locked yet, or not a scratch folder
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.RemoveAll(dir)
		}
		f.Close()
	}
}

// close removes the scratch folder, whose instances must be gone, and
// lets its lock go.
func (s *scratch) close() {
	os.RemoveAll(s.dir)
	s.lock.Close()
}
