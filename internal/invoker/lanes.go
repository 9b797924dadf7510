package invoker

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Lanes keep a function's invocations that hold the event loop apart from
// those that wait. In-function concurrency pays while invocations wait on
// I/O together; an invocation that computes for 50 ms before its first
// await stalls every other invocation on its loop for as long. When one
// function serves both kinds, on different paths, the waiting kind would
// take the computing kind's latency. So each function has two pools of
// instances, its lanes: the paths whose handlers compute run on the heavy
// lane, the others on the light one, and each lane's limiter learns its own
// level. A function whose paths are all of one kind uses only the light
// lane, as if there were no lanes, and so does one that serves one
// invocation per instance (concurrency false).
//
// What a path does is read from the runtime's EntryHeader: how long the
// handler's call took before it returned, which is its synchronous work
// before the first await.
const (
	// EntryHeader carries, on the response from the instance, how long the
	// handler's call took, in milliseconds. The invoker removes it.
	EntryHeader = "x-shoal-entry-ms"

	// heavyEntry and lightEntry are the thresholds, on a path's average
	// entry time, of becoming heavy and of becoming light again.
	heavyEntry = 10 * time.Millisecond
	lightEntry = 5 * time.Millisecond
	// entryWeight is the weight of the newest entry time in a path's
	// moving average.
	entryWeight = 0.3
	// maxPaths bounds the paths a function keeps averages of; a path
	// beyond them is light.
	maxPaths = 1024
)

// Lane indexes.
const (
	lightLane = iota
	heavyLane
	laneCount
)

// pathCosts is what the entries of a function's paths cost. It is safe for
// concurrent use.
type pathCosts struct {
	mu    sync.Mutex
	paths map[string]*pathCost // guarded by mu
	light int                  // guarded by mu; paths that are light now
	heavy int                  // guarded by mu; paths that are heavy now
}

type pathCost struct {
	avg   time.Duration // moving average of the entry time
	heavy bool
}

func newPathCosts() *pathCosts { return &pathCosts{paths: make(map[string]*pathCost)} }

// lane returns the lane for an invocation of the path with key: heavy when
// the path is, and the function has light paths too.
func (c *pathCosts) lane(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if pc := c.paths[key]; pc != nil && pc.heavy && c.light > 0 {
		return heavyLane
	}
	return lightLane
}

// observe records the entry time an invocation of the path with key
// reported.
func (c *pathCosts) observe(key string, entry time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pc := c.paths[key]
	if pc == nil {
		if len(c.paths) >= maxPaths {
			return
		}
		pc = &pathCost{avg: entry}
		c.paths[key] = pc
		c.light++
	} else {
		pc.avg += time.Duration(entryWeight * float64(entry-pc.avg))
	}
	switch {
	case !pc.heavy && pc.avg >= heavyEntry:
		pc.heavy = true
		c.light--
		c.heavy++
	case pc.heavy && pc.avg < lightEntry:
		pc.heavy = false
		c.heavy--
		c.light++
	}
}

// pathKey is the path with every segment that holds a digit made one, so
// that /users/42 and /users/43 share an average. It allocates only for a
// path with digits.
func pathKey(path string) string {
	if !strings.ContainsAny(path, "0123456789") {
		return path
	}
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if strings.ContainsAny(s, "0123456789") {
			segs[i] = "#"
		}
	}
	return strings.Join(segs, "/")
}

// entryOf reads and removes the entry time from an instance's response; ok
// is false when it has none.
func entryOf(h http.Header) (time.Duration, bool) {
	v := h.Get(canonicalEntryHeader)
	if v == "" {
		return 0, false
	}
	delete(h, canonicalEntryHeader)
	ms, err := strconv.ParseFloat(v, 64)
	if err != nil || ms < 0 {
		return 0, false
	}
	return time.Duration(ms * float64(time.Millisecond)), true
}
