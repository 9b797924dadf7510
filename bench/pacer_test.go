package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// paced runs p the way vegeta's attack loop does, without sleeping, and
// returns when each hit went out, until p stops or d has passed.
func paced(p vegeta.Pacer, d time.Duration) []time.Duration {
	var at []time.Duration
	var elapsed time.Duration
	for hits := uint64(0); ; hits++ {
		wait, stop := p.Pace(elapsed, hits)
		if stop || elapsed+wait > d {
			return at
		}
		elapsed += wait
		at = append(at, elapsed)
	}
}

func TestPoissonPacer_Gaps(t *testing.T) {
	const rate = 100.0
	p := newPoissonPacer(rate, 200*time.Second, rand.New(rand.NewPCG(1, 0)))
	n := len(p.at)
	if n < 19_000 || n > 21_000 {
		t.Fatalf("got %d arrivals in 200 s at 100/s, want about 20000", n)
	}
	var sum, sumSq float64
	prev := time.Duration(0)
	for _, a := range p.at {
		gap := (a - prev).Seconds()
		sum += gap
		sumSq += gap * gap
		prev = a
	}
	mean := sum / float64(n)
	if want := 1 / rate; math.Abs(mean-want)/want > 0.03 {
		t.Errorf("mean gap %.5f s, want %.5f s within 3%%", mean, want)
	}
	// Exponential gaps have a standard deviation equal to their mean;
	// even ones have none.
	sd := math.Sqrt(sumSq/float64(n) - mean*mean)
	if cv := sd / mean; cv < 0.95 || cv > 1.05 {
		t.Errorf("gaps' coefficient of variation %.3f, want about 1", cv)
	}
	if got := p.Rate(time.Second); got != rate {
		t.Errorf("Rate: got %g, want %g", got, rate)
	}
}

func TestNewPacer_Seeds(t *testing.T) {
	sched := func(seed, stream uint64) []time.Duration {
		return paced(newPacer(Poisson, 50, 10*time.Second, seed, stream), 10*time.Second)
	}
	if a, b := sched(1, 0), sched(1, 0); !slices.Equal(a, b) {
		t.Errorf("seed 1 stream 0 twice: schedules differ")
	}
	if a, b := sched(1, 0), sched(2, 0); slices.Equal(a, b) {
		t.Errorf("seeds 1 and 2: same schedule")
	}
	if a, b := sched(1, 0), sched(1, 1); slices.Equal(a, b) {
		t.Errorf("streams 0 and 1: same schedule")
	}
}

func TestPoissonPacer_Pace(t *testing.T) {
	p := &poissonPacer{rate: 10, at: []time.Duration{100 * time.Millisecond, 150 * time.Millisecond}}
	tests := []struct {
		name    string
		elapsed time.Duration
		hits    uint64
		wait    time.Duration
		stop    bool
	}{
		{"early", 40 * time.Millisecond, 0, 60 * time.Millisecond, false},
		{"second", 110 * time.Millisecond, 1, 40 * time.Millisecond, false},
		{"late_goes_at_once", 300 * time.Millisecond, 1, 0, false},
		{"all_sent", 160 * time.Millisecond, 2, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wait, stop := p.Pace(tt.elapsed, tt.hits)
			if wait != tt.wait || stop != tt.stop {
				t.Errorf("Pace(%s, %d): got %s, %v; want %s, %v", tt.elapsed, tt.hits, wait, stop, tt.wait, tt.stop)
			}
		})
	}
}

func TestNewPacer_Arrivals(t *testing.T) {
	const d = 4 * time.Second
	tests := []struct {
		arrivals   string
		rate       float64
		minN, maxN int
		even       bool
	}{
		{Constant, 20, 80, 80, true},
		{Constant, 2.5, 10, 10, true},
		{Poisson, 20, 50, 110, false},
	}
	for _, tt := range tests {
		t.Run(tt.arrivals, func(t *testing.T) {
			at := paced(newPacer(tt.arrivals, tt.rate, d, 1, 0), d)
			if len(at) < tt.minN || len(at) > tt.maxN {
				t.Errorf("%d arrivals in %s at %g/s, want %d to %d", len(at), d, tt.rate, tt.minN, tt.maxN)
			}
			if last := at[len(at)-1]; last > d {
				t.Errorf("last arrival at %s, after %s", last, d)
			}
			gaps := map[time.Duration]bool{}
			for i := 1; i < len(at); i++ {
				gaps[at[i]-at[i-1]] = true
			}
			if even := len(gaps) == 1; even != tt.even {
				t.Errorf("%d distinct gaps; want even spacing: %v", len(gaps), tt.even)
			}
		})
	}
}
