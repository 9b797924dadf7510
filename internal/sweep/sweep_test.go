package sweep

import (
	"sync"
	"testing"
	"time"
)

// owner is what a Sweeper watches: work in flight, under one lock.
type owner struct {
	mu       sync.Mutex
	inFlight int
	starting bool        // a Start runs: a sweep now is on its back
	inline   int         // sweeps from Start
	timed    []time.Time // sweeps from the timer
	// The last sweep: when, and whether starts came since the one before,
	// which puts the timer Backstop periods out after it.
	last    time.Time
	lastFar bool
	s       Sweeper
}

func newOwner(every time.Duration) *owner {
	o := &owner{}
	o.s = Sweeper{L: &o.mu, Every: every, Sweep: func(now time.Time) bool {
		if o.starting {
			o.inline++
		} else {
			o.timed = append(o.timed, now)
		}
		o.last, o.lastFar = now, o.s.started
		return o.inFlight > 0
	}}
	return o
}

func (o *owner) start() {
	o.mu.Lock()
	o.inFlight++
	o.starting = true
	o.s.Start()
	o.starting = false
	o.mu.Unlock()
}

func (o *owner) end() {
	o.mu.Lock()
	o.inFlight--
	o.mu.Unlock()
}

func (o *owner) counts() (inline, timed int, running bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.inline, len(o.timed), o.s.Running()
}

// While work keeps starting, the sweeps ride on it: the timer never fires.
// Once it stops, with work still in flight, the timer sweeps, Backstop
// periods after the last sweep.
func TestSweeper_SweepsOnStarts(t *testing.T) {
	const every = 50 * time.Millisecond
	o := newOwner(every)
	began := time.Now()
	for time.Since(began) < 20*every {
		o.start()
		time.Sleep(2 * time.Millisecond)
		o.end()
	}
	inline, timed, _ := o.counts()
	// About 20 sweeps; a start held up past Backstop periods on a busy
	// machine may leave one to the timer now and then.
	if inline < 5 || timed > inline/4 {
		t.Errorf("%d sweeps on starts and %d on the timer over %v; want the sweeps on the starts", inline, timed, 20*every)
	}
	if inline > 21 {
		t.Errorf("%d sweeps in %v, want at most one per %v", inline, 20*every, every)
	}

	o.start() // in flight from now on, with no start after it
	o.mu.Lock()
	last, far := o.last, o.lastFar
	o.mu.Unlock()
	wait(t, o, func(_, after int, _ bool) bool { return after > timed })
	want := every
	if far {
		want = Backstop * every
	} else {
		// A stall let the timer make the last sweep with no start
		// since the one before: it sweeps a period on.
		t.Logf("the last sweep came with no start before it")
	}
	o.mu.Lock()
	if gap := o.timed[timed].Sub(last); gap < want {
		t.Errorf("the timer swept %v after the last sweep, want at least %v", gap, want)
	}
	o.mu.Unlock()
	o.end()
	wait(t, o, func(_, _ int, running bool) bool { return !running })
}

// Without starts, the timer sweeps every period until nothing is in
// flight; then the sweeps stop, and a Start starts them again.
func TestSweeper_TimerSweepsUntilIdle(t *testing.T) {
	const every = 20 * time.Millisecond
	o := newOwner(every)
	began := time.Now()
	o.start()
	time.Sleep(10 * every)
	o.end()
	wait(t, o, func(_, timed int, running bool) bool { return !running })
	inline, timed, _ := o.counts()
	// About 10: one per period.
	if inline != 0 || timed < 4 {
		t.Fatalf("%d sweeps on starts, %d on the timer; want only the timer's, at least 4", inline, timed)
	}
	o.mu.Lock()
	last := began
	for i, at := range o.timed {
		if gap := at.Sub(last); gap < every {
			t.Errorf("sweep %d came %v after the one before, want at least %v", i, gap, every)
		}
		last = at
	}
	o.mu.Unlock()

	time.Sleep(3 * every)
	if _, after, _ := o.counts(); after != timed {
		t.Errorf("%d sweeps after the sweeps stopped", after-timed)
	}
	o.start()
	if _, _, running := o.counts(); !running {
		t.Error("a Start after the sweeps stopped did not start them")
	}
	o.end()
	wait(t, o, func(_, after int, running bool) bool { return !running && after > timed })
}

func wait(t *testing.T, o *owner, done func(inline, timed int, running bool) bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !done(o.counts()); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			inline, timed, running := o.counts()
			t.Fatalf("after 10 s: %d sweeps on starts, %d on the timer, running %v", inline, timed, running)
		}
	}
}
