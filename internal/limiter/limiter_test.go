package limiter

import (
	"testing"
	"time"
)

var t0 = time.Unix(1_000_000, 0)

// A workload says what an instance at a given limit reports at a time into
// the run: a recorded trace as a function, so the limit's effect on the
// signals is part of it.
type workload func(limit int, at time.Duration) Signal

// ioBound wants demand invocations at once; each uses the loop briefly.
func ioBound(demand int) workload {
	return func(limit int, _ time.Duration) Signal {
		return Signal{PeakInFlight: min(limit, demand), Full: demand >= limit, CPU: 0.2, Utilization: 0.2, DelayMean: time.Millisecond}
	}
}

// cpuBound wants demand invocations at once, each holding the loop 50 ms:
// with two or more in flight they wait for each other.
func cpuBound(demand int) workload {
	return func(limit int, _ time.Duration) Signal {
		n := min(limit, demand)
		// One alone holds the loop half the time: a timer sample in six
		// is 40 ms late.
		s := Signal{PeakInFlight: n, Full: demand >= limit, CPU: 0.6, Utilization: 0.6, DelayMean: 7 * time.Millisecond}
		if n >= 2 {
			s.CPU, s.Utilization, s.DelayMean = 1, 1, 40*time.Millisecond
		}
		return s
	}
}

// switchAt runs a until the switch, then b.
func switchAt(at time.Duration, a, b workload) workload {
	return func(limit int, now time.Duration) Signal {
		if now < at {
			return a(limit, now)
		}
		return b(limit, now)
	}
}

// withRSS reports rss(limit) bytes on top of w.
func withRSS(w workload, rss func(limit int) int64) workload {
	return func(limit int, now time.Duration) Signal {
		s := w(limit, now)
		s.RSS = rss(limit)
		return s
	}
}

// warm gives l a quiet first second, as an instance that has served one
// since it started, and returns l.
func warm(l *Limiter) *Limiter {
	l.Observe(Signal{At: t0.Add(-WarmUp)})
	return l
}

// run feeds l a signal every 100 ms for d and returns the limit after each.
func run(l *Limiter, w workload, d time.Duration) []int {
	var limits []int
	for at := 100 * time.Millisecond; at <= d; at += 100 * time.Millisecond {
		s := w(l.Limit(), at)
		s.At = t0.Add(at)
		limits = append(limits, l.Observe(s))
	}
	return limits
}

// at is the limit after the signal at d into the run.
func at(limits []int, d time.Duration) int { return limits[d/(100*time.Millisecond)-1] }

func TestLimiter_Traces(t *testing.T) {
	const mb = 1 << 20
	tests := []struct {
		name         string
		max, initial int
		memory       int64
		cold         bool // the run starts with the instance

		w     workload
		d     time.Duration
		check func(t *testing.T, limits []int)
	}{
		{
			name: "io_grows_past_its_demand", max: 100, initial: 1, w: ioBound(20), d: 3 * time.Second,
			check: func(t *testing.T, limits []int) {
				if got := at(limits, 2*time.Second); got != 21 {
					t.Errorf("limit after 2 s = %d, want one more per 100 ms to 21, past the demand of 20", got)
				}
				if got := limits[len(limits)-1]; got != 21 {
					t.Errorf("settled at %d, want 21: enough for the demand, no more", got)
				}
			},
		},
		{
			name: "io_keeps_the_max_it_starts_at", max: 100, initial: 100, w: ioBound(60), d: 3 * time.Second,
			check: func(t *testing.T, limits []int) {
				for i, l := range limits {
					if l != 100 {
						t.Fatalf("limit %d at step %d, want 100 throughout", l, i)
					}
				}
			},
		},
		{
			name: "io_stops_at_max", max: 8, initial: 1, w: ioBound(50), d: 2 * time.Second,
			check: func(t *testing.T, limits []int) {
				for i, l := range limits {
					if l > 8 {
						t.Fatalf("limit %d at step %d, past max 8", l, i)
					}
				}
				if got := limits[len(limits)-1]; got != 8 {
					t.Errorf("settled at %d, want max 8", got)
				}
			},
		},
		{
			name: "no_demand_no_growth", max: 100, initial: 4, w: ioBound(2), d: 5 * time.Second,
			check: func(t *testing.T, limits []int) {
				if got := limits[len(limits)-1]; got != 4 {
					t.Errorf("limit %d with 2 in flight at most, want it left at 4", got)
				}
			},
		},
		{
			name: "cpu_drops_to_one_fast_and_stays", max: 100, initial: 32, w: cpuBound(10), d: 10 * time.Second,
			check: func(t *testing.T, limits []int) {
				if got := at(limits, 500*time.Millisecond); got != 1 {
					t.Errorf("limit after 0.5 s = %d, want 1", got)
				}
				for i, l := range limits[5:] {
					if l != 1 {
						t.Fatalf("limit went back to %d at step %d; a CPU-bound function stays at 1", l, i+5)
					}
				}
			},
		},
		{
			name: "turns_cpu_bound_mid_run", max: 100, initial: 100, w: switchAt(5*time.Second, ioBound(30), cpuBound(30)), d: 7 * time.Second,
			check: func(t *testing.T, limits []int) {
				if got := at(limits, 4900*time.Millisecond); got < 30 {
					t.Errorf("limit while I/O-bound = %d, want at least 30", got)
				}
				// Reacts at the first signal and is down within a second.
				if got := at(limits, 5*time.Second); got != 15 {
					t.Errorf("limit 100 ms after turning CPU-bound = %d, want halved at once", got)
				}
				if got := at(limits, 6*time.Second); got != 1 {
					t.Errorf("limit 1 s after turning CPU-bound = %d, want 1", got)
				}
			},
		},
		{
			name: "io_again_grows_back", max: 100, initial: 8, w: switchAt(2*time.Second, cpuBound(30), ioBound(30)), d: 6 * time.Second,
			check: func(t *testing.T, limits []int) {
				if got := at(limits, 1900*time.Millisecond); got != 1 {
					t.Errorf("limit while CPU-bound = %d, want 1", got)
				}
				// Past the last congestion's threshold: one per 100 ms.
				if got := at(limits, 3*time.Second); got < 10 || got > 12 {
					t.Errorf("limit 1 s into I/O = %d, want about 11", got)
				}
				if got := at(limits, 6*time.Second); got < 30 {
					t.Errorf("limit 4 s into I/O = %d, want the demand of 30", got)
				}
			},
		},
		{
			name: "memory_near_the_size_cuts", max: 100, initial: 40, memory: 1000 * mb,
			// 30 MB of node plus 25 MB per invocation in flight.
			w: withRSS(ioBound(60), func(limit int) int64 { return int64(30+25*min(limit, 60)) * mb }), d: 5 * time.Second,
			check: func(t *testing.T, limits []int) {
				last := limits[len(limits)-1]
				if rss := 30 + 25*last; rss >= 900 || rss < 700 {
					t.Errorf("settled at %d: %d MB resident of 1000, want under 90%% and not far below 80%%", last, rss)
				}
			},
		},
		{
			// A new instance's first invocations load what they use (the
			// first fetch() compiles undici, ~100 ms): the loop queues once.
			name: "a_cold_start_is_no_level", max: 100, initial: 100, cold: true, d: 3 * time.Second,
			w: func(limit int, at time.Duration) Signal {
				if at == 100*time.Millisecond {
					return cpuBound(5)(limit, at)
				}
				return ioBound(5)(limit, at)
			},
			check: func(t *testing.T, limits []int) {
				if got := limits[len(limits)-1]; got != 100 {
					t.Errorf("limit %d (%v), want 100 kept: one queue at start is no level", got, limits)
				}
			},
		},
		{
			name: "cpu_bound_from_cold_drops_by_the_second_signal", max: 100, initial: 100, cold: true, w: cpuBound(10), d: time.Second,
			check: func(t *testing.T, limits []int) {
				if limits[0] != 100 || limits[1] != 5 {
					t.Errorf("limits %v, want 100 at the first signal, then the 10 in flight halved", limits)
				}
				if got := limits[len(limits)-1]; got != 1 {
					t.Errorf("limit after 1 s = %d, want 1", got)
				}
			},
		},
		{
			name: "hold_after_a_cut", max: 100, initial: 64, w: cpuBound(64), d: 200 * time.Millisecond,
			check: func(t *testing.T, limits []int) {
				if limits[0] != 32 || limits[1] != 32 {
					t.Errorf("limits %v, want 32 then held at 32", limits)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(tt.max, tt.memory, tt.initial)
			if !tt.cold {
				warm(l)
			}
			tt.check(t, run(l, tt.w, tt.d))
		})
	}
}

func TestLimiter_RelearnForgetsTheThreshold(t *testing.T) {
	l := warm(New(100, 0, 16))
	l.Observe(Signal{At: t0, PeakInFlight: 16, CPU: 1, Utilization: 1, DelayMean: 50 * time.Millisecond}) // to 8
	full := Signal{Full: true, PeakInFlight: 8, CPU: 0.1, Utilization: 0.1, DelayMean: time.Millisecond}
	full.At = t0.Add(time.Second)
	if got := l.Observe(full); got != 9 {
		t.Fatalf("limit %d after growing above the threshold, want 9", got)
	}
	full.At = t0.Add(Relearn)
	if got := l.Observe(full); got != 18 {
		t.Errorf("limit %d %v after the congestion, want it doubling again (18)", got, Relearn)
	}
}

func TestLimiter_CutsToWhatWasInFlight(t *testing.T) {
	l := warm(New(100, 0, 100))
	// A limit of 100 that only ever saw 6 at once: halve the 6.
	got := l.Observe(Signal{At: t0, PeakInFlight: 6, CPU: 1, Utilization: 1, DelayMean: 80 * time.Millisecond})
	if got != 3 {
		t.Errorf("limit %d, want 3", got)
	}
}

func TestLimiter_MachineContentionIsNoCongestion(t *testing.T) {
	l := New(100, 0, 5)
	// Timers ran late while node hardly computed: it was not scheduled,
	// its invocations did not queue on each other.
	if got := l.Observe(Signal{At: t0, PeakInFlight: 5, CPU: 0.2, Utilization: 0.8, DelayMean: 30 * time.Millisecond}); got != 5 {
		t.Errorf("limit %d, want 5 kept", got)
	}
}

func TestLimiter_NoGrowthWhileNodeComputes(t *testing.T) {
	l := New(100, 0, 5)
	// The loop looked idle when sampled, but node spent the interval on
	// the CPU: no headroom.
	if got := l.Observe(Signal{At: t0, Full: true, PeakInFlight: 5, CPU: 1, Utilization: 0.01}); got != 5 {
		t.Errorf("limit %d, want 5 kept", got)
	}
}

func TestLimiter_OneInFlightIsNoCongestion(t *testing.T) {
	l := New(100, 0, 5)
	// One invocation holding the loop: nobody waits for it.
	if got := l.Observe(Signal{At: t0, PeakInFlight: 1, CPU: 1, Utilization: 1, DelayMean: time.Second}); got != 5 {
		t.Errorf("limit %d, want 5 kept", got)
	}
}

func TestNew_Bounds(t *testing.T) {
	for _, tt := range []struct{ max, initial, want int }{{100, 0, 1}, {100, 500, 100}, {0, 5, 1}, {10, 7, 7}} {
		if got := New(tt.max, 0, tt.initial).Limit(); got != tt.want {
			t.Errorf("New(%d, 0, %d).Limit() = %d, want %d", tt.max, tt.initial, got, tt.want)
		}
	}
}

// cpuBoundLoops is cpuBound over the loops the limiter asks for, each
// serving as soon as it is asked: the instance's invocations spread evenly
// over them and only those sharing a loop wait for each other.
func cpuBoundLoops(l *Limiter, demand int) Signal {
	loops := l.Loops()
	n := min(l.Limit(), demand)
	perLoop := (n + loops - 1) / loops
	s := Signal{PeakInFlight: n, Full: demand >= l.Limit(), Loops: loops, CPU: 0.6 * float64(loops), Utilization: 0.6, DelayMean: 7 * time.Millisecond,
		HostIdle: 1}
	if perLoop >= 2 {
		s.Utilization, s.DelayMean = 1, 40*time.Millisecond
		s.CPU = float64(loops)
	}
	return s
}

func TestLimiter_LoopsForWhatHoldsTheLoop(t *testing.T) {
	l := New(100, 0, 100).WithLoops(4, 1)
	var limits, loops []int
	for at := 100 * time.Millisecond; at <= 3*time.Second; at += 100 * time.Millisecond {
		s := cpuBoundLoops(l, 10)
		s.At = t0.Add(at)
		limits = append(limits, l.Observe(s))
		loops = append(loops, l.Loops())
	}
	if got := at(loops, 1500*time.Millisecond); got != 4 {
		t.Errorf("loops after 1.5 s = %d (%v), want the most, 4", got, loops)
	}
	if got := limits[len(limits)-1]; got != 4 {
		t.Errorf("instance limit %d (%v), want one per loop", got, limits)
	}
	if got := l.PerLoop(); got != 1 {
		t.Errorf("limit per loop %d, want 1", got)
	}
}

func TestLimiter_NoLoopsForIO(t *testing.T) {
	l := New(100, 0, 100).WithLoops(4, 1)
	for at := 100 * time.Millisecond; at <= 3*time.Second; at += 100 * time.Millisecond {
		s := ioBound(300)(l.Limit(), at)
		s.At = t0.Add(at)
		l.Observe(s)
	}
	if l.Loops() != 1 || l.Limit() != 100 {
		t.Errorf("loops %d, limit %d; an I/O-bound function wants one loop at the max, 100", l.Loops(), l.Limit())
	}
}

// An instance cut to one invocation per loop, full five times in a row
// while its second loop starts, grows its loops only while the host has a
// core for them and memory to spare, and never the limit per loop.
func TestLimiter_WhenLoopsGrow(t *testing.T) {
	tests := []struct {
		name      string
		rss       int64
		hostIdle  float64
		wantLoops int
		why       string
	}{
		{"one_at_a_time", 0, 1, 2, "one more only once the last asked for serves"},
		{"not_near_the_memory_size", 850, 1, 1, "85% of the memory is resident"},
		{"not_without_a_core", 0, 0.2, 1, "a fifth of a CPU idle: another loop would only take turns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := warm(New(100, 1000, 1).WithLoops(4, 1))
			// One alone holds the loop half the time: callbacks wait.
			full := Signal{Full: true, PeakInFlight: 1, Loops: 1, CPU: 0.6, Utilization: 0.6, DelayMean: 7 * time.Millisecond,
				RSS: tt.rss, HostIdle: tt.hostIdle}
			for i := range 5 {
				full.At = t0.Add(time.Duration(i) * Hold)
				l.Observe(full)
			}
			if l.Loops() != tt.wantLoops || l.Limit() != 1 {
				t.Errorf("loops %d, limit %d; want %d loops (%s) and limit 1: no more on the loop that queues",
					l.Loops(), l.Limit(), tt.wantLoops, tt.why)
			}
		})
	}
}

func TestLimiter_QueueingOnLoopsOfABusyHost(t *testing.T) {
	l := warm(New(100, 0, 4).WithLoops(4, 4))
	// Four loops on a host with less than two free CPUs: node computes 1.6
	// CPUs, 0.4 per loop, and the busiest loop's callbacks wait.
	got := l.Observe(Signal{At: t0, PeakInFlight: 8, Loops: 4, CPU: 1.6, Utilization: 0.9, DelayMean: 30 * time.Millisecond})
	if l.PerLoop() != 1 || got != 4 {
		t.Errorf("limit per loop %d, instance %d; want the 2 per loop halved to 1, 4 in all", l.PerLoop(), got)
	}
}

// An I/O-bound instance cut by a queue that passed (or started low) grows
// its limit back on the loop it has, whether or not the host has a core
// for another loop: a loop with room takes more at no cost.
func TestLimiter_CutIOGrowsTheLimitNotLoops(t *testing.T) {
	for _, hostIdle := range []float64{0, 1} {
		l := warm(New(100, 0, 1).WithLoops(4, 1))
		for at := 100 * time.Millisecond; at <= time.Second; at += 100 * time.Millisecond {
			s := ioBound(20)(l.Limit(), at)
			s.At, s.HostIdle = t0.Add(at), hostIdle
			l.Observe(s)
		}
		if l.Loops() != 1 || l.Limit() != 11 {
			t.Errorf("host idle %.0f: loops %d, limit %d; want 1 loop, limit 1 grown by one per 100 ms to 11", hostIdle, l.Loops(), l.Limit())
		}
	}
}

// A queue in the first second waits for a second look; memory near the
// size does not.
func TestLimiter_MemoryCutsInTheFirstSecond(t *testing.T) {
	l := New(100, 1000, 40)
	got := l.Observe(Signal{At: t0, PeakInFlight: 40, CPU: 1, Utilization: 1, DelayMean: 40 * time.Millisecond, RSS: 950})
	if got != 30 {
		t.Errorf("limit %d, want 40 cut by a quarter to 30 at 95%% of the memory", got)
	}
}
