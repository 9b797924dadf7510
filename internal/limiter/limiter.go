package limiter

import "time"

// Tuning of the rule; see the package doc.
const (
	DelayBudget     = 10 * time.Millisecond
	QueueCPU        = 0.5
	GrowUtilization = 0.7
	MemoryHigh      = 0.9
	MemoryGrow      = 0.8
	LoopHostIdle    = 0.5
	Hold            = 200 * time.Millisecond
	Relearn         = 10 * time.Second
	WarmUp          = time.Second
)

// Signal is what one report says about an instance, with the invoker's
// view of it.
type Signal struct {
	// At is when it was observed.
	At time.Time
	// PeakInFlight is the most invocations the instance had at once since
	// the last signal, over all its event loops.
	PeakInFlight int
	// Full says the instance had no free slot at some point since the last
	// signal: an invocation waited for it or went elsewhere.
	Full bool
	// CPU is node's CPU time over the interval's length (above 1 when
	// several loops computed at once).
	CPU float64
	// Loops is how many event loops node serves on; 0 counts as 1.
	Loops int
	// HostIdle is how many of the host's CPUs were idle during the
	// interval, on average.
	HostIdle float64
	// Utilization is the share of the interval node's busiest event loop
	// was busy (which counts time node waited for a CPU mid-callback).
	Utilization float64
	// DelayMean is how long ready callbacks waited for the busiest loop
	// during the interval, on average.
	DelayMean time.Duration
	// RSS is node's resident memory in bytes.
	RSS int64
}

// Limiter learns one instance's limit. It is not safe for concurrent use.
type Limiter struct {
	max         int
	memory      int64 // bytes; 0: unknown
	limit       int   // per event loop
	threshold   int   // slow start below it, additive increase above
	cut         bool  // limit was cut by a congestion, or started below max (learned so)
	loops       int   // event loops wanted
	maxLoops    int
	serving     int       // event loops serving, as the last signal said
	holdUntil   time.Time // no change before
	congestedAt time.Time // the last congestion; zero: none yet
	since       time.Time // the first signal; zero: none yet
	suspect     bool      // the last signal showed a congestion
}

// New returns a limiter for a function whose limit may go up to most, with
// memory bytes of memory (0 if unknown), starting at initial: the limit
// per event loop the function's instances learned, or most. It grows from
// there one at a time, like a limit that was just cut there. It keeps to
// one event loop unless WithLoops says otherwise.
func New(most int, memory int64, initial int) *Limiter {
	most = max(most, 1)
	limit := min(max(initial, 1), most)
	return &Limiter{max: most, memory: memory, limit: limit, threshold: limit, cut: limit < most,
		loops: 1, maxLoops: 1, serving: 1}
}

// WithLoops lets l ask for up to most event loops, starting from initial
// (the loops the function's instances learned), and returns l.
func (l *Limiter) WithLoops(most, initial int) *Limiter {
	l.maxLoops = max(most, 1)
	l.loops = min(max(initial, 1), l.maxLoops)
	return l
}

// Limit is the current limit of the instance: the limit per event loop
// times the loops serving, at most the function's max.
func (l *Limiter) Limit() int { return min(l.limit*l.serving, l.max) }

// PerLoop is the current limit of one event loop.
func (l *Limiter) PerLoop() int { return l.limit }

// Loops is how many event loops the instance should run.
func (l *Limiter) Loops() int { return l.loops }

// Observe takes one signal and returns the new limit of the instance.
func (l *Limiter) Observe(s Signal) int {
	if !l.congestedAt.IsZero() && s.At.Sub(l.congestedAt) >= Relearn {
		l.threshold, l.congestedAt, l.cut = l.max, time.Time{}, false
	}
	l.serving = max(s.Loops, 1)
	// What one loop saw: invocations spread evenly over the loops. Queueing
	// is judged on node's CPU as a whole: with more loops than free CPUs
	// each computes less than QueueCPU while its callbacks wait.
	peak := (s.PeakInFlight + l.serving - 1) / l.serving
	cpu := s.CPU / float64(l.serving)
	memory := 0.0
	if l.memory > 0 {
		memory = float64(s.RSS) / float64(l.memory)
	}
	if l.since.IsZero() {
		l.since = s.At
	}
	congested := peak >= 2 && s.CPU >= QueueCPU && s.DelayMean >= DelayBudget
	// In the instance's first second a queue must show twice running: what
	// node does once (compiling what the first invocations load) is no
	// level to cut to, and the cut would spread to the instances to come.
	confirmed := l.suspect || s.At.Sub(l.since) >= WarmUp
	l.suspect = congested
	headroom := s.DelayMean < DelayBudget/2 && s.Utilization < GrowUtilization && cpu < GrowUtilization
	switch {
	case s.At.Before(l.holdUntil):
	case congested && confirmed:
		l.limit = max(1, min(l.limit, peak)/2)
		l.threshold, l.cut = l.limit, true
		l.holdUntil, l.congestedAt = s.At.Add(Hold), s.At
	case memory >= MemoryHigh:
		l.limit = max(1, l.limit-max(1, l.limit/4))
		l.holdUntil = s.At.Add(Hold)
	case congested:
	case !s.Full || memory >= MemoryGrow:
	case headroom:
		// The loop has room: more on it costs nothing, even if it was cut
		// before (what held it then has passed).
		if l.limit < l.threshold {
			l.limit = min(2*l.limit, l.threshold)
		} else {
			l.limit++
		}
		l.limit = min(l.limit, l.max)
	case l.cut && l.loops < l.maxLoops:
		// More on a loop would queue behind what holds it: another loop
		// takes more, computing on another core, once the last one asked
		// for serves, if the host has a core for it.
		if l.serving >= l.loops && s.HostIdle >= LoopHostIdle {
			l.loops++
			l.holdUntil = s.At.Add(Hold)
		}
	}
	return l.Limit()
}
