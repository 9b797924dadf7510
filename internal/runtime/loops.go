package runtime

import (
	"errors"
	"fmt"
	"time"
)

// MaxLoops bounds the event loops of one node process (the bootstrap's
// bound too).
const MaxLoops = 16

// SetLoops asks node for n event loops in all, between 1 and MaxLoops:
// more are started as worker threads, each serving on a socket of its own
// once it is up (see the bootstrap's Loops). Loops are never stopped, so an
// n below what was asked changes nothing. It returns once node has the
// request, not once the loops serve: Stats counts those. Once a loop
// could not start, it asks for no more and says so.
func (s *Supervisor) SetLoops(n int) error {
	n = min(max(n, 1), MaxLoops)
	s.mu.Lock()
	if n <= s.asked {
		s.mu.Unlock()
		return nil
	}
	if s.failed {
		s.mu.Unlock()
		return errLoopFailed
	}
	s.asked = n
	s.mu.Unlock()
	s.commandsMu.Lock()
	defer s.commandsMu.Unlock()
	if _, err := fmt.Fprintf(s.commands, "{\"type\":\"loops\",\"n\":%d}\n", n); err != nil {
		return fmt.Errorf("runtime: ask node for %d loops: %w", n, err)
	}
	return nil
}

var errLoopFailed = errors.New("runtime: an event loop could not start; node runs no more")

// loopFailed notes that a loop could not start.
func (s *Supervisor) loopFailed() {
	s.mu.Lock()
	s.failed = true
	s.mu.Unlock()
}

// addLoop takes loop n, which node says serves, into service.
func (s *Supervisor) addLoop(n int) {
	if n < 1 || n >= MaxLoops {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.loops) <= n {
		s.loops = append(s.loops, nil)
	}
	if s.loops[n] == nil {
		s.loops[n] = &loop{}
	}
}

// setLoad records loop n's load report, when node said its next one would
// come, and whether an invocation that ended the loop's idle time sent it.
func (s *Supervisor) setLoad(n int, load Loop, next time.Duration, woke bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n >= 0 && n < len(s.loops) && s.loops[n] != nil {
		l := s.loops[n]
		l.load, l.loadAt, l.next, l.woke = load, time.Now(), next, woke
	}
}
