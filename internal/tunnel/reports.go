package tunnel

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// ReportHeader marks the invoker's request for an instance's report stream
// (PROTOCOL.md). Clients cannot send it: the gateway drops x-shoal-*
// headers.
const ReportHeader = "x-shoal-reports"

// reportKey is ReportHeader as http.Header keys it. Looking it up directly
// spares every invocation the allocation Header.Get makes to canonicalize
// a lower-case name.
var reportKey = http.CanonicalHeaderKey(ReportHeader)

// ReportInterval is how often an instance reports.
const ReportInterval = 100 * time.Millisecond

// Report is one sample of an instance's state.
type Report struct {
	// TS is when it was sampled, in unix milliseconds.
	TS int64 `json:"ts"`
	// CPUMs is the CPU time (user + system) the instance's processes used
	// so far, in milliseconds.
	CPUMs int64 `json:"cpu_ms"`
	// NodeCPUMs is node's share of CPUMs.
	NodeCPUMs int64 `json:"node_cpu_ms"`
	// RSS is node's resident memory in bytes.
	RSS int64 `json:"rss"`
	// InFlight is how many invocations the instance is serving.
	InFlight int `json:"inflight"`
	// Loops is how many event loops node serves on; 0 from an instance
	// that does not say, which is one.
	Loops int `json:"loops,omitempty"`
	// HostIdleCPUs is how many of the host's CPUs were idle on average
	// since the last report.
	HostIdleCPUs float64 `json:"host_idle_cpus"`
	// LoopKnown says node has reported its event loops' load, which the
	// next three fields are, for the busiest loop: the share of the last
	// ~100 ms it was busy, and how long callbacks ready to run waited for
	// it, in milliseconds.
	LoopKnown   bool    `json:"loop_known"`
	ELU         float64 `json:"elu"`
	DelayMeanMs float64 `json:"eld_mean_ms"`
	DelayMaxMs  float64 `json:"eld_max_ms"`
	// Waited lists the invocations whose waitUntil work ended since the
	// last report, after their responses had.
	Waited []Waited `json:"waited,omitempty"`
}

// Waited says that an invocation's work went on past its response: from
// when the response finished to when its last waitUntil promise settled,
// both in unix milliseconds.
type Waited struct {
	ID   string `json:"id"`
	From int64  `json:"from"`
	To   int64  `json:"to"`
}

// IdleReportInterval is how often an idle instance reports: one with
// nothing in flight and nothing else to say.
const IdleReportInterval = time.Second

// WithReports serves h, except that a request carrying ReportHeader gets a
// stream of newline-delimited JSON Reports from sample, one every
// ReportInterval (IdleReportInterval while idle), until the request is
// cancelled or ctx is done; a final report is sent then, so a draining
// instance does not hold its stream.
//
// With a nil working, sample is called every ReportInterval, idle or not.
// Otherwise an idle instance is sampled once every IdleReportInterval, and
// at once when working receives: what an instance waiting for work costs
// is then one sample a second (the runtime's working channel says when
// node reports work).
func WithReports(ctx context.Context, h http.Handler, sample func() Report, working <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.Header[reportKey]) == 0 {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("content-type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		enc := json.NewEncoder(w)
		timer := time.NewTimer(ReportInterval)
		defer timer.Stop()
		var sent time.Time
		wasIdle := false
		for {
			rep := sample()
			idle := rep.InFlight == 0 && len(rep.Waited) == 0
			if !idle || !wasIdle || time.Since(sent) >= IdleReportInterval-ReportInterval/2 {
				if enc.Encode(rep) != nil || rc.Flush() != nil {
					return
				}
				sent = time.Now()
			}
			wasIdle = idle
			var wake <-chan struct{}
			if idle && working != nil {
				timer.Reset(IdleReportInterval)
				wake = working
			} else {
				timer.Reset(ReportInterval)
			}
			select {
			case <-timer.C:
			case <-wake:
			case <-r.Context().Done():
				return
			case <-ctx.Done():
				enc.Encode(sample())
				return
			}
		}
	})
}

// Reports asks the instance for its report stream and calls fn with each
// report until the stream ends or ctx is done. Cancel ctx before Shutdown:
// the stream is in flight until then.
func (c *Conn) Reports(ctx context.Context, fn func(Report)) error {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://instance/", nil)
	if err != nil {
		return err
	}
	req.Header.Set(ReportHeader, "1")
	res, err := c.RoundTrip(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("tunnel: reports: status %d", res.StatusCode)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var r Report
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return fmt.Errorf("tunnel: reports: %w", err)
		}
		fn(r)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return sc.Err()
}
