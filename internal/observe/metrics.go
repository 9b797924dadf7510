package observe

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shoal-dev/shoal/internal/metering"
)

// Metrics exposes what the invoker sees in Prometheus form. It receives the
// same records as the metering Recorder. Counters start anew with serve.
type Metrics struct {
	// immutable
	reg         *prometheus.Registry
	invocations *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	ttfb        *prometheus.HistogramVec
	instances   *prometheus.GaugeVec
	classicGBs  *prometheus.CounterVec
	provGBs     *prometheus.CounterVec
	instGBs     *prometheus.CounterVec
	cpu         *prometheus.CounterVec

	series sync.Map // project -> *projectSeries

	mu   sync.Mutex
	live map[string]*liveInstance // guarded by mu; running instances by id
}

// projectSeries are one project's series of the per-invocation metrics,
// looked up once: WithLabelValues hashes and checks its labels at every
// call, five times per invocation. Series are never deleted, so the ones
// kept here stay the registry's.
type projectSeries struct {
	duration, ttfb      prometheus.Observer
	classicGBs, instGBs prometheus.Counter
	codes               sync.Map // HTTP status code -> prometheus.Counter
}

// seriesOf returns project's series.
func (m *Metrics) seriesOf(project string) *projectSeries {
	if s, ok := m.series.Load(project); ok {
		return s.(*projectSeries)
	}
	s, _ := m.series.LoadOrStore(project, &projectSeries{
		duration:   m.duration.WithLabelValues(project),
		ttfb:       m.ttfb.WithLabelValues(project),
		classicGBs: m.classicGBs.WithLabelValues(project),
		instGBs:    m.instGBs.WithLabelValues(project),
	})
	return s.(*projectSeries)
}

// invocationsOf returns the counter of project's invocations that ended
// with status code.
func (m *Metrics) invocationsOf(s *projectSeries, project string, code int) prometheus.Counter {
	if c, ok := s.codes.Load(code); ok {
		return c.(prometheus.Counter)
	}
	c, _ := s.codes.LoadOrStore(code, m.invocations.WithLabelValues(project, strconv.Itoa(code)))
	return c.(prometheus.Counter)
}

// liveInstance is what the metrics remember of a running instance.
type liveInstance struct {
	metering.Instance
	busy metering.Busy
	cpu  time.Duration // CPU time reported so far
}

// NewMetrics returns metrics on a registry of their own.
func NewMetrics() *Metrics {
	latency := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_invocations_total", Help: "Invocations that ended, by project and HTTP status code.",
		}, []string{"project", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "shoal_invocation_duration_seconds", Help: "Invocation duration, from dispatch to the end of the response.", Buckets: latency,
		}, []string{"project"}),
		ttfb: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "shoal_invocation_ttfb_seconds", Help: "Time from dispatch to the response headers.", Buckets: latency,
		}, []string{"project"}),
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shoal_instances", Help: "Running instances.",
		}, []string{"project"}),
		classicGBs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_classic_gb_seconds_total", Help: "Sum of invocation durations times memory: what one invocation per instance would bill.",
		}, []string{"project"}),
		provGBs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_provisioned_gb_seconds_total", Help: "Lifetime of stopped instances times memory.",
		}, []string{"project"}),
		instGBs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_instance_gb_seconds_total", Help: "Instance busy time (at least one invocation in flight) times memory: what in-function concurrency bills.",
		}, []string{"project"}),
		cpu: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_instance_cpu_seconds_total", Help: "CPU time (user and system) of the instances' processes.",
		}, []string{"project"}),
		live: map[string]*liveInstance{},
	}
	m.reg.MustRegister(m.invocations, m.duration, m.ttfb, m.instances, m.classicGBs, m.provGBs, m.instGBs, m.cpu,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// InstanceStarted counts a running instance.
func (m *Metrics) InstanceStarted(in metering.Instance) {
	m.mu.Lock()
	m.live[in.Instance] = &liveInstance{Instance: in}
	m.mu.Unlock()
	m.instances.WithLabelValues(in.Project).Inc()
}

// InstanceStopped counts an instance's lifetime.
func (m *Metrics) InstanceStopped(instance string, now time.Time) {
	m.mu.Lock()
	in := m.live[instance]
	delete(m.live, instance)
	m.mu.Unlock()
	if in == nil {
		return
	}
	m.instances.WithLabelValues(in.Project).Dec()
	m.provGBs.WithLabelValues(in.Project).Add(now.Sub(in.Start).Seconds() * float64(in.MemoryMB) / 1024)
}

// InstanceSampled counts the CPU time an instance used since its last
// sample.
func (m *Metrics) InstanceSampled(instance string, _ time.Time, cpu time.Duration, _ int64) {
	m.mu.Lock()
	in := m.live[instance]
	var used time.Duration
	if in != nil && cpu > in.cpu {
		used, in.cpu = cpu-in.cpu, cpu
	}
	m.mu.Unlock()
	if used > 0 {
		m.cpu.WithLabelValues(in.Project).Add(used.Seconds())
	}
}

// busy adds [start, end) to the instance's busy time and returns its
// memory and the busy time it added.
func (m *Metrics) busy(instance string, start, end time.Time) (memoryMB int, added time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := m.live[instance]
	if in == nil {
		return 0, 0
	}
	return in.MemoryMB, in.busy.Add(start, end)
}

// Waited counts the work an invocation did after its response.
func (m *Metrics) Waited(inv metering.Invocation) {
	mem, added := m.busy(inv.Instance, inv.Start, inv.End)
	s := m.seriesOf(inv.Project)
	s.classicGBs.Add(inv.End.Sub(inv.Start).Seconds() * float64(mem) / 1024)
	s.instGBs.Add(added.Seconds() * float64(mem) / 1024)
}

// Invoked counts an invocation.
func (m *Metrics) Invoked(inv metering.Invocation) {
	mem, added := m.busy(inv.Instance, inv.Start, inv.End)
	s := m.seriesOf(inv.Project)
	s.instGBs.Add(added.Seconds() * float64(mem) / 1024)
	d := inv.End.Sub(inv.Start)
	m.invocationsOf(s, inv.Project, inv.Status).Inc()
	s.duration.Observe(d.Seconds())
	if !inv.FirstByte.IsZero() {
		s.ttfb.Observe(inv.FirstByte.Sub(inv.Start).Seconds())
	}
	s.classicGBs.Add(d.Seconds() * float64(mem) / 1024)
}

// Learned is what a project's instances learned: what a new instance
// starts at.
type Learned struct {
	// Limit is the concurrency limit per event loop; Loops the event loops.
	Limit, Loops int
}

// WatchLimits reports, at every scrape, what each project's new instances
// start at, as fn returns it (project -> learned).
func (m *Metrics) WatchLimits(fn func() map[string]Learned) {
	m.reg.MustRegister(limitCollector{fn: fn,
		limit: prometheus.NewDesc("shoal_concurrency_limit",
			"The concurrency limit per event loop the project's instances learned: what a new instance starts at.", []string{"project"}, nil),
		loops: prometheus.NewDesc("shoal_event_loops",
			"The most event loops one of the project's instances learned to run.", []string{"project"}, nil)})
}

type limitCollector struct {
	fn           func() map[string]Learned
	limit, loops *prometheus.Desc
}

func (c limitCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.limit
	ch <- c.loops
}

func (c limitCollector) Collect(ch chan<- prometheus.Metric) {
	for project, l := range c.fn() {
		ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(l.Limit), project)
		ch <- prometheus.MustNewConstMetric(c.loops, prometheus.GaugeValue, float64(l.Loops), project)
	}
}
