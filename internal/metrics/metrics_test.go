package metrics

import (
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/pam"
)

// observer is internal/worker's Observer, copied so that this package does
// not depend on the worker: Metrics must keep satisfying it exactly.
type observer interface {
	JobStarted()
	JobFinished(status jobs.Status, d time.Duration)
	JobRetried(delivery uint64)
}

var (
	_ observer                      = (*Metrics)(nil)
	_ func(pam.CallInfo)            = (*Metrics)(nil).ObservePVWA
	_ func(pam.Limiter) pam.Limiter = (*Metrics)(nil).Limiter
)

func TestNewPreinitialises(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		worker string
		labels string // the worker label as it appears in a series
	}{
		{name: "with worker label", worker: "w-1", labels: `worker="w-1"`},
		{name: "without worker label", worker: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := samples(t, exposition(t, New(tt.worker)))
			with := func(name, l string) string {
				switch {
				case l == "" && tt.labels == "":
					return name
				case l == "":
					return name + "{" + tt.labels + "}"
				case tt.labels == "":
					return name + "{" + l + "}"
				}
				return name + "{" + l + "," + tt.labels + "}"
			}
			want := map[string]float64{
				with("safeperm_jobs_in_flight", ""):                0,
				with("safeperm_job_retries_total", ""):             0,
				with("safeperm_pvwa_relogons_total", ""):           0,
				with("safeperm_rate_limit_waits_total", ""):        0,
				with("safeperm_rate_limit_wait_seconds_count", ""): 0,
				with("safeperm_concurrency_limit", ""):             0,
				with("safeperm_rate_budget", ""):                   0,
			}
			for _, s := range jobs.AllStatuses() {
				want[with("safeperm_jobs_total", `status="`+string(s)+`"`)] = 0
				want[with("safeperm_job_duration_seconds_count", `status="`+string(s)+`"`)] = 0
			}
			for _, r := range []string{"429", "5xx", "latency", "retry-after", "timeout"} {
				want[with("safeperm_pvwa_throttled_total", `reason="`+r+`"`)] = 0
			}
			wantSamples(t, got, want)
			if n := countSeries(got, "safeperm_jobs_total"); n != 6 {
				t.Errorf("safeperm_jobs_total has %d series, want 6 (one per status)", n)
			}
			if n := countSeries(got, "safeperm_pvwa_requests_total"); n != 0 {
				t.Errorf("safeperm_pvwa_requests_total has %d series before any request, want 0", n)
			}
			// The Go and process collectors are registered too.
			for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
				if _, ok := got[name]; !ok {
					t.Errorf("series %s missing: Go/process collectors not registered", name)
				}
			}
		})
	}
}

func TestJobMetrics(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		run      func(m *Metrics)
		inFlight float64
		retries  float64
		finished map[jobs.Status]float64 // safeperm_jobs_total; others 0
		other    float64                 // safeperm_jobs_total{status="other"}
		sum      map[jobs.Status]float64 // safeperm_job_duration_seconds_sum
	}{
		{
			name:     "started only",
			run:      func(m *Metrics) { m.JobStarted(); m.JobStarted() },
			inFlight: 2,
		},
		{
			name: "finished with several outcomes",
			run: func(m *Metrics) {
				for range 4 {
					m.JobStarted()
				}
				m.JobFinished(jobs.StatusApplied, 1500*time.Millisecond)
				m.JobFinished(jobs.StatusApplied, 500*time.Millisecond)
				m.JobFinished(jobs.StatusFailed, 2*time.Second)
			},
			inFlight: 1,
			finished: map[jobs.Status]float64{jobs.StatusApplied: 2, jobs.StatusFailed: 1},
			sum:      map[jobs.Status]float64{jobs.StatusApplied: 2, jobs.StatusFailed: 2},
		},
		{
			name: "retry ends the job in flight",
			run: func(m *Metrics) {
				m.JobStarted()
				m.JobRetried(1)
				m.JobStarted()
				m.JobRetried(2)
				m.JobStarted()
				m.JobFinished(jobs.StatusConflict, time.Second)
			},
			retries:  2,
			finished: map[jobs.Status]float64{jobs.StatusConflict: 1},
			sum:      map[jobs.Status]float64{jobs.StatusConflict: 1},
		},
		{
			name: "unknown status counted as other",
			run: func(m *Metrics) {
				m.JobStarted()
				m.JobFinished(jobs.Status("great"), time.Second)
			},
			other: 1,
		},
		{
			name: "in flight never below zero",
			run: func(m *Metrics) {
				m.JobFinished(jobs.StatusSkipped, 0)
				m.JobRetried(3)
				m.JobStarted()
			},
			inFlight: 1,
			retries:  1,
			finished: map[jobs.Status]float64{jobs.StatusSkipped: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := New("w")
			tt.run(m)
			want := map[string]float64{
				`safeperm_jobs_in_flight{worker="w"}`:    tt.inFlight,
				`safeperm_job_retries_total{worker="w"}`: tt.retries,
			}
			for _, s := range jobs.AllStatuses() {
				want[`safeperm_jobs_total{status="`+string(s)+`",worker="w"}`] = tt.finished[s]
				want[`safeperm_job_duration_seconds_count{status="`+string(s)+`",worker="w"}`] = tt.finished[s]
				want[`safeperm_job_duration_seconds_sum{status="`+string(s)+`",worker="w"}`] = tt.sum[s]
			}
			got := samples(t, exposition(t, m))
			if tt.other > 0 {
				want[`safeperm_jobs_total{status="other",worker="w"}`] = tt.other
			} else if _, ok := got[`safeperm_jobs_total{status="other",worker="w"}`]; ok {
				t.Errorf(`safeperm_jobs_total{status="other"} present without an unknown status`)
			}
			wantSamples(t, got, want)
		})
	}
}

func TestJobDurationBuckets(t *testing.T) {
	t.Parallel()
	m := New("")
	m.JobStarted()
	m.JobFinished(jobs.StatusUnchanged, 40*time.Millisecond)
	got := samples(t, exposition(t, m))
	want := map[string]float64{
		`safeperm_job_duration_seconds_bucket{status="unchanged",le="0.025"}`: 0,
		`safeperm_job_duration_seconds_bucket{status="unchanged",le="0.05"}`:  1,
		`safeperm_job_duration_seconds_bucket{status="unchanged",le="300"}`:   1,
		`safeperm_job_duration_seconds_bucket{status="unchanged",le="+Inf"}`:  1,
	}
	wantSamples(t, got, want)
}

func TestObservePVWA(t *testing.T) {
	t.Parallel()
	const member = "GET /API/Safes/{id}/Members/{name}"
	tests := []struct {
		name     string
		calls    []pam.CallInfo
		requests map[[2]string]float64 // route, code
		counts   map[string]float64    // route -> duration histogram count
		sums     map[string]float64    // route -> duration histogram sum
		relogons float64
	}{
		{
			name: "status codes and no answer",
			calls: []pam.CallInfo{
				{Route: member, Status: 200, Duration: 100 * time.Millisecond, Attempt: 1},
				{Route: member, Status: 200, Duration: 300 * time.Millisecond, Attempt: 1},
				{Route: member, Status: 404, Duration: 50 * time.Millisecond, Attempt: 1, Err: errors.New("not found")},
				{Route: member, Status: 0, Duration: 30 * time.Second, Attempt: 1, Err: errors.New("timeout")},
				{Route: "POST /API/Safes/{id}/Members", Status: 201, Duration: 250 * time.Millisecond, Attempt: 1},
			},
			requests: map[[2]string]float64{
				{member, "200"}:                         2,
				{member, "404"}:                         1,
				{member, "error"}:                       1,
				{"POST /API/Safes/{id}/Members", "201"}: 1,
			},
			counts: map[string]float64{member: 4, "POST /API/Safes/{id}/Members": 1},
			sums:   map[string]float64{member: 30.45, "POST /API/Safes/{id}/Members": 0.25},
		},
		{
			name: "replay after a fresh logon is a relogon",
			calls: []pam.CallInfo{
				{Route: "GET /API/Safes/{id}", Status: 401, Duration: time.Millisecond, Attempt: 1},
				{Route: "POST /API/Auth/CyberArk/Logon", Status: 200, Duration: time.Millisecond, Attempt: 1},
				{Route: "GET /API/Safes/{id}", Status: 200, Duration: time.Millisecond, Attempt: 2},
			},
			requests: map[[2]string]float64{
				{"GET /API/Safes/{id}", "401"}:           1,
				{"GET /API/Safes/{id}", "200"}:           1,
				{"POST /API/Auth/CyberArk/Logon", "200"}: 1,
			},
			counts:   map[string]float64{"GET /API/Safes/{id}": 2, "POST /API/Auth/CyberArk/Logon": 1},
			relogons: 1,
		},
		{
			name: "untrusted routes and codes are bounded",
			calls: []pam.CallInfo{
				{Route: "GET /API/Safes/P-LIN-01/Members/john.doe", Status: 200, Attempt: 1},
				{Route: "", Status: 999, Attempt: 1},
				{Route: "GET /API/Safes/{id}", Status: -1, Attempt: 1},
			},
			requests: map[[2]string]float64{
				{"other", "200"}:                 1,
				{"other", "other"}:               1,
				{"GET /API/Safes/{id}", "other"}: 1,
			},
			counts: map[string]float64{"other": 2, "GET /API/Safes/{id}": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := New("")
			for _, ci := range tt.calls {
				m.ObservePVWA(ci)
			}
			for rc, want := range tt.requests {
				if got := testutil.ToFloat64(m.pvwaRequests.WithLabelValues(rc[0], rc[1])); got != want {
					t.Errorf("requests{route=%q,code=%q} = %v, want %v", rc[0], rc[1], got, want)
				}
			}
			if got, want := testutil.CollectAndCount(m.pvwaRequests), len(tt.requests); got != want {
				t.Errorf("%d request series, want %d", got, want)
			}
			got := samples(t, exposition(t, m))
			for route, want := range tt.counts {
				series := `safeperm_pvwa_request_duration_seconds_count{route="` + route + `"}`
				if got[series] != want {
					t.Errorf("%s = %v, want %v", series, got[series], want)
				}
			}
			for route, want := range tt.sums {
				series := `safeperm_pvwa_request_duration_seconds_sum{route="` + route + `"}`
				if math.Abs(got[series]-want) > 1e-9 {
					t.Errorf("%s = %v, want %v", series, got[series], want)
				}
			}
			if got := testutil.ToFloat64(m.relogons); got != tt.relogons {
				t.Errorf("relogons = %v, want %v", got, tt.relogons)
			}
		})
	}
}

func TestThrottledAndGauges(t *testing.T) {
	t.Parallel()
	m := New("w")
	for _, r := range []string{"429", "429", "5xx", "latency", "retry-after", "timeout", "teapot", "GET /x"} {
		m.Throttled(r)
	}
	m.SetConcurrencyLimit(16)
	m.SetConcurrencyLimit(12)
	m.SetRateBudget(7.5)
	want := `# HELP safeperm_concurrency_limit Current adaptive limit of concurrent PVWA requests.
# TYPE safeperm_concurrency_limit gauge
safeperm_concurrency_limit{worker="w"} 12
# HELP safeperm_pvwa_throttled_total Times the PVWA transport backed off, by reason.
# TYPE safeperm_pvwa_throttled_total counter
safeperm_pvwa_throttled_total{reason="429",worker="w"} 2
safeperm_pvwa_throttled_total{reason="5xx",worker="w"} 1
safeperm_pvwa_throttled_total{reason="latency",worker="w"} 1
safeperm_pvwa_throttled_total{reason="other",worker="w"} 2
safeperm_pvwa_throttled_total{reason="retry-after",worker="w"} 1
safeperm_pvwa_throttled_total{reason="timeout",worker="w"} 1
# HELP safeperm_rate_budget Current PVWA request budget in requests per second.
# TYPE safeperm_rate_budget gauge
safeperm_rate_budget{worker="w"} 7.5
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"safeperm_concurrency_limit", "safeperm_pvwa_throttled_total", "safeperm_rate_budget"); err != nil {
		t.Error(err)
	}
}

// TestConcurrentUse runs every recording method from many goroutines; run
// with -race.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	m := New("w")
	const goroutines, each = 8, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				m.JobStarted()
				m.ObservePVWA(pam.CallInfo{Route: "GET /API/Safes/{id}", Status: 200, Attempt: 1 + i%2})
				m.Throttled("429")
				m.SetConcurrencyLimit(g)
				m.JobFinished(jobs.StatusApplied, time.Millisecond)
			}
		})
	}
	wg.Wait()
	const n = goroutines * each
	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"jobs applied", testutil.ToFloat64(m.jobs.WithLabelValues("applied")), n},
		{"requests", testutil.ToFloat64(m.pvwaRequests.WithLabelValues("GET /API/Safes/{id}", "200")), n},
		{"relogons", testutil.ToFloat64(m.relogons), n / 2},
		{"throttled 429", testutil.ToFloat64(m.throttled.WithLabelValues("429")), n},
		{"in flight", float64(m.inFlight.Load()), 0},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}
