// Package sweep runs a watch's periodic look at the work in flight (a
// sweep) on the back of the work itself while work keeps starting, and on
// a timer once it stops, so that a busy process does not wake for it.
//
// A ticker would wake a server that sleeps between requests once a period
// for each watch, and each timer also wakes Go's monitor thread (sysmon),
// which sleeps until the next timer when every P is idle. At one
// connection serve has two watches (its clients' and node's), and those
// wakeups cost it 2-3 µs of CPU per invocation (bench/hello.sh's hello,
// paired runs). A Sweeper sweeps from Start instead, at the first Start
// after a sweep is due, and while Starts keep coming keeps its timer far
// out, Backstop periods past the last sweep; once they stop, the timer
// sweeps every period.
package sweep

import (
	"sync"
	"time"
)

// Backstop is how many periods the timer waits past a sweep before it
// sweeps, when work started since the sweep before: the most a sweep comes
// late, once, when work stops starting.
const Backstop = 10

// A Sweeper calls Sweep every Every while there is work in flight, up to
// Backstop periods late once work stops starting. Its owner guards it with
// L, the lock that guards the work in flight too: Start must be called
// with L held, and Sweep runs with L held.
type Sweeper struct {
	L     sync.Locker
	Every time.Duration
	// Sweep looks at the work in flight at now and reports whether any
	// still is; the sweeps stop when none is, until the next Start.
	Sweep func(now time.Time) (more bool)

	on      bool      // sweeps run: the timer is set
	started bool      // a Start came since the last sweep
	due     time.Time // when the next sweep is
	timer   *time.Timer
}

// Start, called with L held as work starts that the sweeps must look at,
// starts the sweeps, or sweeps if one is due.
func (s *Sweeper) Start() {
	now := time.Now()
	switch {
	case !s.on:
		s.on = true
		s.started = false
		s.due = now.Add(s.Every)
		if s.timer == nil {
			s.timer = time.AfterFunc(s.Every, s.fire)
		} else {
			s.timer.Reset(s.Every)
		}
	case !now.Before(s.due):
		s.started = true
		s.sweep(now)
	default:
		s.started = true
	}
}

// Running reports, with L held, whether the sweeps run: whether Start
// started them and no sweep found nothing in flight since.
func (s *Sweeper) Running() bool { return s.on }

// fire sweeps when no Start did.
func (s *Sweeper) fire() {
	s.L.Lock()
	defer s.L.Unlock()
	// Unless the sweeps stopped, or a Start swept, and set the timer, as
	// it fired.
	if now := time.Now(); s.on && !now.Before(s.due) {
		s.sweep(now)
	}
}

// sweep sweeps at now, with L held, and sets the timer for the next sweep.
func (s *Sweeper) sweep(now time.Time) {
	s.due = now.Add(s.Every)
	if !s.Sweep(now) {
		s.on = false
		s.timer.Stop()
		return
	}
	wait := s.Every
	if s.started {
		// Work keeps starting: a Start will sweep next. Moving the timer
		// out does not wake the network poller.
		wait = Backstop * s.Every
	}
	s.started = false
	s.timer.Reset(wait)
}
