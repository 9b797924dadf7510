package bench

import (
	"math/rand/v2"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Arrival processes: how requests are spaced at a given mean rate.
const (
	// Poisson spaces requests by exponential gaps, as independent clients
	// do: real traffic is bursty, and bursts are where invocations overlap.
	Poisson = "poisson"
	// Constant spaces requests evenly; invocations shorter than the gap
	// then never overlap at all.
	Constant = "constant"
)

// newPacer returns the pacer of one slice: arrivals at a mean of rate per
// second for d. Poisson arrivals are drawn from seed and stream, so the
// slices of both modes in one round get the same sequence.
func newPacer(arrivals string, rate float64, d time.Duration, seed, stream uint64) vegeta.Pacer {
	if arrivals == Constant {
		return vegeta.ConstantPacer{Freq: 1, Per: time.Duration(float64(time.Second) / rate)}
	}
	return newPoissonPacer(rate, d, rand.New(rand.NewPCG(seed, stream)))
}

// poissonPacer sends requests at precomputed times with exponentially
// distributed gaps, then stops.
type poissonPacer struct {
	// immutable
	rate float64
	at   []time.Duration // when each request is due, from the start
}

// newPoissonPacer draws the arrivals in [0, d) at a mean of rate per second.
func newPoissonPacer(rate float64, d time.Duration, rnd *rand.Rand) *poissonPacer {
	p := &poissonPacer{rate: rate}
	for t := time.Duration(0); ; {
		t += time.Duration(rnd.ExpFloat64() / rate * float64(time.Second))
		if t >= d {
			return p
		}
		p.at = append(p.at, t)
	}
}

// Pace returns how long to wait before request number hits, or stop when
// every request was sent. A request that is late goes at once: the load is
// open-loop, it does not slow down when the system does.
func (p *poissonPacer) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	if hits >= uint64(len(p.at)) {
		return 0, true
	}
	return max(p.at[hits]-elapsed, 0), false
}

// Rate returns the mean rate, per second.
func (p *poissonPacer) Rate(time.Duration) float64 { return p.rate }

var _ vegeta.Pacer = (*poissonPacer)(nil)
