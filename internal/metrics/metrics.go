package metrics

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/pam"
)

const namespace = "safeperm"

// Label names and the catch-all values that keep cardinality bounded.
const (
	labelWorker = "worker"
	labelStatus = "status"
	labelRoute  = "route"
	labelCode   = "code"
	labelReason = "reason"

	// valueOther stands for any label value outside the allowed set.
	valueOther = "other"
	// codeError is the code label of a request that got no answer.
	codeError = "error"
)

// Throttling reasons the transport middleware reports to Throttled.
const (
	ReasonTooMany    = "429"
	ReasonServer     = "5xx"
	ReasonLatency    = "latency"
	ReasonRetryAfter = "retry-after"
	ReasonTimeout    = "timeout"
)

// throttleReasons is the closed set of reason label values besides "other".
var throttleReasons = []string{ReasonTooMany, ReasonServer, ReasonLatency, ReasonRetryAfter, ReasonTimeout}

// Histogram buckets, in seconds.
var (
	// jobBuckets spans a quick read that finds nothing to do (10ms) to a job
	// that waited out throttling and re-logons (5m).
	jobBuckets = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	// pvwaBuckets spans a cached GET on a near PVWA (5ms) to the client's
	// default request timeout (30s).
	pvwaBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30}
	// waitBuckets spans a free token (1ms) to a long Retry-After pause (60s).
	waitBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
)

// Metrics holds safeperm's collectors and the registry that exposes them.
// Create it with New. All methods are safe for concurrent use; a nil
// *Metrics is not valid.
type Metrics struct {
	reg *prometheus.Registry

	jobs        *prometheus.CounterVec
	inFlight    atomic.Int64
	jobDuration *prometheus.HistogramVec
	jobRetries  prometheus.Counter

	pvwaRequests *prometheus.CounterVec
	pvwaDuration *prometheus.HistogramVec
	relogons     prometheus.Counter
	throttled    *prometheus.CounterVec
	routes       *routeSet

	waitSeconds prometheus.Histogram
	waits       prometheus.Counter

	concurrency prometheus.Gauge
	rateBudget  prometheus.Gauge

	// now is the clock of the Limiter wrapper; tests replace it.
	now func() time.Time
	// checkTimeout bounds a /readyz request (DefaultCheckTimeout); tests
	// shorten it before calling Handler.
	checkTimeout time.Duration
}

// New returns a Metrics whose collectors are registered on a registry of its
// own, together with the Go runtime and process collectors. worker names
// this process (the worker id) and becomes the constant label worker on
// every safeperm_* series; an empty worker adds no label. Every job status
// and throttling reason is present at 0 from the start, so rates and alerts
// work before the first event.
func New(worker string) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	var r prometheus.Registerer = reg
	if worker != "" {
		r = prometheus.WrapRegistererWith(prometheus.Labels{labelWorker: worker}, reg)
	}

	m := &Metrics{
		reg:          reg,
		routes:       newRouteSet(maxRoutes),
		now:          time.Now,
		checkTimeout: DefaultCheckTimeout,
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "jobs_total",
			Help: "Jobs finished, by outcome.",
		}, []string{labelStatus}),
		jobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "job_duration_seconds",
			Help:    "Time from taking a job to its outcome, by outcome.",
			Buckets: jobBuckets,
		}, []string{labelStatus}),
		jobRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "job_retries_total",
			Help: "Jobs handed back for another delivery after a transient failure.",
		}),
		pvwaRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "pvwa_requests_total",
			Help: `PVWA HTTP requests by route template and status code ("error": no answer).`,
		}, []string{labelRoute, labelCode}),
		pvwaDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "pvwa_request_duration_seconds",
			Help:    "Time from sending a PVWA request to having read the answer, by route template.",
			Buckets: pvwaBuckets,
		}, []string{labelRoute}),
		relogons: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "pvwa_relogons_total",
			Help: "PVWA requests replayed after a fresh logon.",
		}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "pvwa_throttled_total",
			Help: "Times the PVWA transport backed off, by reason.",
		}, []string{labelReason}),
		waitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "rate_limit_wait_seconds",
			Help:    "Time each PVWA request spent waiting on the rate limiter.",
			Buckets: waitBuckets,
		}),
		waits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "rate_limit_waits_total",
			Help: "Calls to the rate limiter, one per PVWA request.",
		}),
		concurrency: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "concurrency_limit",
			Help: "Current adaptive limit of concurrent PVWA requests.",
		}),
		rateBudget: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "rate_budget",
			Help: "Current PVWA request budget in requests per second.",
		}),
	}
	inFlight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "jobs_in_flight",
		Help: "Jobs started and not yet finished or handed back.",
	}, func() float64 { return float64(m.inFlight.Load()) })

	r.MustRegister(m.jobs, inFlight, m.jobDuration, m.jobRetries,
		m.pvwaRequests, m.pvwaDuration, m.relogons, m.throttled,
		m.waitSeconds, m.waits, m.concurrency, m.rateBudget)

	for _, s := range jobs.AllStatuses() {
		m.jobs.WithLabelValues(string(s))
		m.jobDuration.WithLabelValues(string(s))
	}
	for _, r := range throttleReasons {
		m.throttled.WithLabelValues(r)
	}
	return m
}

// Registry returns the registry holding every collector, for Handler or for
// a caller that adds collectors of its own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// JobStarted records that a job was taken. Each call should be matched by
// one JobFinished or JobRetried, which end it.
func (m *Metrics) JobStarted() { m.inFlight.Add(1) }

// JobFinished records a job's outcome and how long it took from being taken.
// A status outside jobs.AllStatuses is counted as "other".
func (m *Metrics) JobFinished(status jobs.Status, d time.Duration) {
	m.jobDone()
	s := valueOther
	if status.Valid() {
		s = string(status)
	}
	m.jobs.WithLabelValues(s).Inc()
	m.jobDuration.WithLabelValues(s).Observe(d.Seconds())
}

// JobRetried records that a started job was handed back for another
// delivery; it ends the job's time in flight. delivery is the delivery that
// failed and is not a label: it would be unbounded.
func (m *Metrics) JobRetried(delivery uint64) {
	m.jobDone()
	m.jobRetries.Inc()
}

// jobDone takes one job out of flight, never below zero: an unmatched
// JobFinished must not leave the gauge negative forever.
func (m *Metrics) jobDone() {
	for {
		n := m.inFlight.Load()
		if n <= 0 || m.inFlight.CompareAndSwap(n, n-1) {
			return
		}
	}
}

// ObservePVWA records one PVWA request. Use it as pam.Config.Observe. A
// route that does not look like a template, or that comes after 50
// distinct ones, is counted as "other" (see the package documentation).
func (m *Metrics) ObservePVWA(ci pam.CallInfo) {
	route := m.routes.label(ci.Route)
	m.pvwaRequests.WithLabelValues(route, codeLabel(ci.Status)).Inc()
	m.pvwaDuration.WithLabelValues(route).Observe(ci.Duration.Seconds())
	if ci.Attempt == 2 {
		m.relogons.Inc()
	}
}

// codeLabel is the code label of an HTTP status: the number, "error" for no
// answer, "other" for a value no HTTP server sends.
func codeLabel(status int) string {
	switch {
	case status == 0:
		return codeError
	case status >= 100 && status <= 599:
		return strconv.Itoa(status)
	default:
		return valueOther
	}
}

// SetConcurrencyLimit records the current adaptive limit of concurrent PVWA
// requests.
func (m *Metrics) SetConcurrencyLimit(n int) { m.concurrency.Set(float64(n)) }

// Throttled records that the transport backed off. reason is one of
// ReasonTooMany ("429"), ReasonServer ("5xx"), ReasonLatency ("latency"),
// ReasonRetryAfter ("retry-after") or ReasonTimeout ("timeout"); anything
// else is counted as "other".
func (m *Metrics) Throttled(reason string) {
	r := valueOther
	for _, known := range throttleReasons {
		if reason == known {
			r = known
			break
		}
	}
	m.throttled.WithLabelValues(r).Inc()
}

// SetRateBudget records the current PVWA request budget in requests per
// second (+Inf for unlimited).
func (m *Metrics) SetRateBudget(perSecond float64) { m.rateBudget.Set(perSecond) }
