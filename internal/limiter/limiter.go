package limiter

import "time"

// Tuning of the rule; see the package doc.
const (
	DelayBudget     = 10 * time.Millisecond
	QueueCPU        = 0.5
	GrowUtilization = 0.7
	MemoryHigh      = 0.9
	MemoryGrow      = 0.8
	Hold            = 200 * time.Millisecond
	Relearn         = 10 * time.Second
)

// Signal is what one report says about an instance, with the invoker's
// view of it.
type Signal struct {
	// At is when it was observed.
	At time.Time
	// PeakInFlight is the most invocations the instance had at once since
	// the last signal.
	PeakInFlight int
	// Full says the instance had no free slot at some point since the last
	// signal: an invocation waited for it or went elsewhere.
	Full bool
	// CPU is node's CPU time over the interval's length.
	CPU float64
	// Utilization is the share of the interval node's event loop was busy
	// (which counts time node waited for a CPU mid-callback).
	Utilization float64
	// DelayMean is how long ready callbacks waited for the loop during
	// the interval, on average.
	DelayMean time.Duration
	// RSS is node's resident memory in bytes.
	RSS int64
}

// Limiter learns one instance's limit. It is not safe for concurrent use.
type Limiter struct {
	max         int
	memory      int64 // bytes; 0: unknown
	limit       int
	threshold   int       // slow start below it, additive increase above
	holdUntil   time.Time // no change before
	congestedAt time.Time // the last congestion; zero: never
}

// New returns a limiter for a function whose limit may go up to most, with
// memory bytes of memory (0 if unknown), starting at initial: the limit
// the function's instances learned, or most. It grows from there one at a
// time, like a limit that was just cut there.
func New(most int, memory int64, initial int) *Limiter {
	most = max(most, 1)
	limit := min(max(initial, 1), most)
	return &Limiter{max: most, memory: memory, limit: limit, threshold: limit}
}

// Limit is the current limit.
func (l *Limiter) Limit() int { return l.limit }

// Observe takes one signal and returns the new limit.
func (l *Limiter) Observe(s Signal) int {
	if !l.congestedAt.IsZero() && s.At.Sub(l.congestedAt) >= Relearn {
		l.threshold, l.congestedAt = l.max, time.Time{}
	}
	memory := 0.0
	if l.memory > 0 {
		memory = float64(s.RSS) / float64(l.memory)
	}
	switch {
	case s.At.Before(l.holdUntil):
	case s.PeakInFlight >= 2 && s.CPU >= QueueCPU && s.DelayMean >= DelayBudget:
		l.limit = max(1, min(l.limit, s.PeakInFlight)/2)
		l.threshold = l.limit
		l.holdUntil, l.congestedAt = s.At.Add(Hold), s.At
	case memory >= MemoryHigh:
		l.limit = max(1, l.limit-max(1, l.limit/4))
		l.holdUntil = s.At.Add(Hold)
	case s.Full && memory < MemoryGrow && s.DelayMean < DelayBudget/2 && s.Utilization < GrowUtilization && s.CPU < GrowUtilization:
		if l.limit < l.threshold {
			l.limit = min(2*l.limit, l.threshold)
		} else {
			l.limit++
		}
		l.limit = min(l.limit, l.max)
	}
	return l.limit
}
