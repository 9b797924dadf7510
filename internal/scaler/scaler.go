package scaler

import (
	"sort"
	"time"
)

// Pool is a snapshot of one deployment's instances.
type Pool struct {
	// Waiting is how many invocations wait for a slot.
	Waiting int
	// Starting is how many instances are starting.
	Starting int
	// Ready is how many instances are serving.
	Ready int
	// SlotsPerInstance is how many invocations a new instance will take at
	// once; at least 1.
	SlotsPerInstance int
	// MaxInstances caps Ready+Starting; 0 means no cap.
	MaxInstances int
	// MaxStarting caps Starting; 0 means no cap. Instances that start at
	// once share the machine's CPUs and each takes longer: past a few, a
	// burst is served sooner by the instances that free up meanwhile.
	MaxStarting int
	// MinInstances is how many instances to keep started; 0 lets the
	// deployment scale to zero.
	MinInstances int
}

// ToStart returns how many instances to start now: enough that the
// starting ones can take every waiting invocation (one instance per
// SlotsPerInstance waiters, so one start covers a burst when concurrency is
// on), at least MinInstances in all, and never past MaxInstances or
// MaxStarting.
func ToStart(p Pool) int {
	slots := max(p.SlotsPerInstance, 1)
	need := 0
	if uncovered := p.Waiting - p.Starting*slots; uncovered > 0 {
		need = (uncovered + slots - 1) / slots
	}
	if short := p.MinInstances - (p.Ready + p.Starting); short > need {
		need = short
	}
	if p.MaxInstances > 0 {
		need = min(need, p.MaxInstances-p.Ready-p.Starting)
	}
	if p.MaxStarting > 0 {
		need = min(need, p.MaxStarting-p.Starting)
	}
	return max(need, 0)
}

// Instance is a snapshot of one ready instance.
type Instance struct {
	// InFlight is how many invocations it serves now.
	InFlight int
	// IdleSince is when InFlight last dropped to zero (or it became ready).
	IdleSince time.Time
}

// ToStop returns the indexes of the instances to stop at now: idle ones
// whose keep-alive passed, longest idle first, keeping min instances. An
// idle instance is stopped at once (keepAlive 0) when the deployment is no
// longer current, which the caller says with min 0 and keepAlive 0.
func ToStop(instances []Instance, min int, keepAlive time.Duration, now time.Time) []int {
	var idle []int
	for i, in := range instances {
		if in.InFlight == 0 && !now.Before(in.IdleSince.Add(keepAlive)) {
			idle = append(idle, i)
		}
	}
	sort.SliceStable(idle, func(a, b int) bool {
		return instances[idle[a]].IdleSince.Before(instances[idle[b]].IdleSince)
	})
	canStop := len(instances) - min
	if canStop <= 0 {
		return nil
	}
	if len(idle) > canStop {
		idle = idle[:canStop]
	}
	return idle
}
