package scaler

import (
	"slices"
	"testing"
	"time"
)

func TestToStart(t *testing.T) {
	tests := []struct {
		name string
		pool Pool
		want int
	}{
		{"nothing_waiting", Pool{SlotsPerInstance: 100}, 0},
		{"burst_needs_one_instance", Pool{Waiting: 50, SlotsPerInstance: 100}, 1},
		{"burst_already_covered", Pool{Waiting: 50, Starting: 1, SlotsPerInstance: 100}, 0},
		{"burst_over_one_instance", Pool{Waiting: 150, Starting: 1, SlotsPerInstance: 100}, 1},
		{"classic_one_per_waiter", Pool{Waiting: 10, Starting: 3, SlotsPerInstance: 1}, 7},
		{"capped_by_max", Pool{Waiting: 10, Ready: 4, SlotsPerInstance: 1, MaxInstances: 5}, 1},
		{"at_max", Pool{Waiting: 10, Ready: 5, SlotsPerInstance: 1, MaxInstances: 5}, 0},
		{"min_instances", Pool{SlotsPerInstance: 100, MinInstances: 2}, 2},
		{"min_instances_counting_starting", Pool{Starting: 1, Ready: 1, SlotsPerInstance: 100, MinInstances: 3}, 1},
		{"zero_slots_is_one", Pool{Waiting: 2}, 2},
		{"capped_by_max_starting", Pool{Waiting: 10, Starting: 1, SlotsPerInstance: 1, MaxStarting: 4}, 3},
		{"at_max_starting", Pool{Waiting: 10, Starting: 4, SlotsPerInstance: 1, MaxStarting: 4}, 0},
		{"min_instances_capped_too", Pool{MinInstances: 10, SlotsPerInstance: 1, MaxStarting: 4}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ToStart(tt.pool); got != tt.want {
				t.Errorf("ToStart(%+v) = %d, want %d", tt.pool, got, tt.want)
			}
		})
	}
}

func TestToStop(t *testing.T) {
	now := time.Unix(1000, 0)
	ago := func(s int) time.Time { return now.Add(-time.Duration(s) * time.Second) }
	tests := []struct {
		name      string
		instances []Instance
		min       int
		keepAlive time.Duration
		want      []int
	}{
		{"none", nil, 0, time.Minute, nil},
		{"busy_never_stops", []Instance{{InFlight: 1, IdleSince: ago(600)}}, 0, time.Minute, nil},
		{"idle_within_keepalive", []Instance{{IdleSince: ago(30)}}, 0, time.Minute, nil},
		{"idle_past_keepalive", []Instance{{IdleSince: ago(61)}}, 0, time.Minute, []int{0}},
		{"exactly_at_keepalive", []Instance{{IdleSince: ago(60)}}, 0, time.Minute, []int{0}},
		{"min_kept", []Instance{{IdleSince: ago(90)}, {IdleSince: ago(120)}}, 1, time.Minute, []int{1}},
		{"min_kept_all", []Instance{{IdleSince: ago(90)}}, 1, time.Minute, nil},
		{"longest_idle_first", []Instance{{IdleSince: ago(70)}, {InFlight: 2}, {IdleSince: ago(200)}}, 0, time.Minute, []int{2, 0}},
		{"not_current_stops_at_once", []Instance{{IdleSince: now}, {InFlight: 1}}, 0, 0, []int{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ToStop(tt.instances, tt.min, tt.keepAlive, now)
			if !slices.Equal(got, tt.want) {
				t.Errorf("ToStop = %v, want %v", got, tt.want)
			}
		})
	}
}
