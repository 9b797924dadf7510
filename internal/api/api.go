// Package api holds the wire types of the control API, shared by the
// server (adminapi) and its client (apiclient).
package api

import "time"

// Prefix is the path under which the control API lives.
const Prefix = "/_shoal/api/v1"

// Project is one project and its current deployment.
type Project struct {
	Name       string    `json:"name"`
	Deployment string    `json:"deployment"`
	URL        string    `json:"url"`
	UpdatedAt  time.Time `json:"updatedAt"`
}

// Deployment is the answer to a deploy.
type Deployment struct {
	ID      string `json:"id"`
	Project string `json:"project"`
	URL     string `json:"url"`
	// Entry is the file the deployment was built from; "api/" when its
	// functions are the files under api/.
	Entry string `json:"entry"`
	// Routes are the functions under api/ and where they answer; none for
	// a project of one function, which answers every path.
	Routes []Route `json:"routes,omitempty"`
}

// Route is where one function of a deployment answers.
type Route struct {
	// Path is the route, such as /api/users/[id].
	Path string `json:"path"`
	// File is the source file, such as api/users/[id].ts.
	File string `json:"file"`
}

// LogLine is one line a function wrote, or the platform wrote about it.
type LogLine struct {
	ID         int64     `json:"id"`
	Time       time.Time `json:"time"`
	Deployment string    `json:"deployment"`
	Instance   string    `json:"instance"`
	Invocation string    `json:"invocation,omitempty"`
	Stream     string    `json:"stream"`
	Message    string    `json:"message"`
}

// EnvVar is one environment variable of a project. Values are write-only:
// the API takes them but never sends them back.
type EnvVar struct {
	Name string `json:"name"`
	// UpdatedAt is when the variable was last set.
	UpdatedAt time.Time `json:"updatedAt"`
}

// SetEnv is the body of a request that sets an environment variable. The
// value applies from the project's next deployment; "" is a valid value.
type SetEnv struct {
	Value string `json:"value"`
}

// Usage is what a project's functions cost over a window (see package
// metering for the meaning of each figure). Counters start anew with serve.
type Usage struct {
	Project              string    `json:"project"`
	Since                time.Time `json:"since"`
	Until                time.Time `json:"until"`
	Invocations          int       `json:"invocations"`
	Errors               int       `json:"errors"`
	InstanceGBSeconds    float64   `json:"instance_gb_seconds"`
	ProvisionedGBSeconds float64   `json:"provisioned_gb_seconds"`
	ClassicGBSeconds     float64   `json:"classic_gb_seconds"`
	ActiveCPUSeconds     float64   `json:"active_cpu_seconds"`
	Savings              float64   `json:"savings"`
	PeakInstances        int       `json:"peak_instances"`
	// PeakRSSMB is the largest resident memory an instance reached.
	PeakRSSMB    float64 `json:"peak_rss_mb"`
	LatencyP50Ms float64 `json:"latency_p50_ms"`
	LatencyP99Ms float64 `json:"latency_p99_ms"`
	TTFBP50Ms    float64 `json:"ttfb_p50_ms"`
	TTFBP99Ms    float64 `json:"ttfb_p99_ms"`
	// ConcurrencyLimits are the running instances' current limits, as
	// each learned it; LearnedLimit is the limit per event loop a new
	// instance starts at (the highest of the functions' when the project
	// has several). EventLoops are the running instances' event loops, in
	// the order of ConcurrencyLimits; LearnedLoops is the most of them (a
	// new instance starts with one and learns its own). All are now, not
	// over the window.
	ConcurrencyLimits []int `json:"concurrency_limits"`
	LearnedLimit      int   `json:"learned_limit"`
	EventLoops        []int `json:"event_loops"`
	LearnedLoops      int   `json:"learned_loops"`
	// Instances are the instances alive in the window, oldest first.
	Instances []InstanceUsage `json:"instances"`
}

// InstanceUsage is one instance's part of a Usage, within its window.
type InstanceUsage struct {
	ID       string     `json:"id"`
	MemoryMB int        `json:"memory_mb"`
	Started  time.Time  `json:"started"`
	Stopped  *time.Time `json:"stopped,omitempty"` // absent while it runs
	// BusySeconds is the time it had at least one invocation in flight.
	BusySeconds float64 `json:"busy_seconds"`
	CPUSeconds  float64 `json:"cpu_seconds"`
	PeakRSSMB   float64 `json:"peak_rss_mb"`
}

// Error is the body of every error response of the control API.
type Error struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody says what went wrong.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error codes of the control API.
const (
	CodeUnauthorized = "UNAUTHORIZED"
	CodeNotFound     = "NOT_FOUND"
	CodeBadRequest   = "BAD_REQUEST"
	CodeBuildFailed  = "BUILD_FAILED"
	CodeTooLarge     = "PAYLOAD_TOO_LARGE"
	CodeInternal     = "INTERNAL"
)

// Isolation is what isolates a server's instances from the host and from
// each other (see package sandbox).
type Isolation struct {
	// Mode is auto, strict or off.
	Mode   string           `json:"mode"`
	Pieces []IsolationPiece `json:"pieces"`
}

// IsolationPiece is one part of the isolation and whether it applies.
type IsolationPiece struct {
	Name   string `json:"name"`
	On     bool   `json:"on"`
	Detail string `json:"detail"`
}
