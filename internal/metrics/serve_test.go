package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
	"github.com/safeperm/safeperm/internal/secret"
	sptest "github.com/safeperm/safeperm/internal/testutil"
)

// server is a Serve running on 127.0.0.1:0 for one test.
type server struct {
	url    string
	logs   *sptest.Buffer
	cancel context.CancelFunc
	done   chan error
}

// startServe runs Serve with h until the test ends or stop is called.
func startServe(t *testing.T, h http.Handler) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{logs: &sptest.Buffer{}, cancel: cancel, done: make(chan error, 1)}
	bound := make(chan net.Addr, 1)
	log := zerolog.New(s.logs)
	go func() { s.done <- Serve(ctx, "127.0.0.1:0", h, log, func(a net.Addr) { bound <- a }) }()
	select {
	case a := <-bound:
		s.url = "http://" + a.String()
	case err := <-s.done:
		t.Fatalf("Serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not report its address")
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop ends Serve and fails t unless it returns nil promptly. Calling it
// again does nothing.
func (s *server) stop(t testing.TB) {
	t.Helper()
	s.cancel()
	if s.done == nil {
		return
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("Serve returned %v after its context ended, want nil", err)
		}
	case <-time.After(ShutdownTimeout + 5*time.Second):
		t.Error("Serve did not return after its context ended")
	}
	s.done = nil
}

// httpGet fetches url and returns its status and body.
func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// TestServeScrape records a sequence of events and reads them back through
// a real HTTP scrape.
func TestServeScrape(t *testing.T) {
	t.Parallel()
	m := New("w-7")
	s := startServe(t, m.Handler())

	for range 3 {
		m.JobStarted()
	}
	m.JobFinished(jobs.StatusApplied, 1500*time.Millisecond)
	m.JobFinished(jobs.StatusDrift, 250*time.Millisecond)
	m.JobRetried(2)
	m.JobStarted()
	m.ObservePVWA(pam.CallInfo{Route: "GET /API/Safes/{id}/Members/{name}", Status: 200, Duration: 80 * time.Millisecond, Attempt: 1})
	m.ObservePVWA(pam.CallInfo{Route: "GET /API/Safes/{id}/Members/{name}", Status: 401, Duration: 20 * time.Millisecond, Attempt: 1})
	m.ObservePVWA(pam.CallInfo{Route: "POST /API/Auth/CyberArk/Logon", Status: 200, Duration: 100 * time.Millisecond, Attempt: 1})
	m.ObservePVWA(pam.CallInfo{Route: "GET /API/Safes/{id}/Members/{name}", Status: 200, Duration: 60 * time.Millisecond, Attempt: 2})
	m.ObservePVWA(pam.CallInfo{Route: "PUT /API/Safes/{id}/Members/{name}", Duration: 30 * time.Second, Attempt: 1, Err: context.DeadlineExceeded})
	m.Throttled(ReasonTooMany)
	m.Throttled(ReasonRetryAfter)
	m.SetConcurrencyLimit(8)
	m.SetRateBudget(20)

	want := `# HELP safeperm_jobs_total Jobs finished, by outcome.
# TYPE safeperm_jobs_total counter
safeperm_jobs_total{status="applied",worker="w-7"} 1
safeperm_jobs_total{status="conflict",worker="w-7"} 0
safeperm_jobs_total{status="drift",worker="w-7"} 1
safeperm_jobs_total{status="failed",worker="w-7"} 0
safeperm_jobs_total{status="skipped",worker="w-7"} 0
safeperm_jobs_total{status="unchanged",worker="w-7"} 0
# HELP safeperm_jobs_in_flight Jobs started and not yet finished or handed back.
# TYPE safeperm_jobs_in_flight gauge
safeperm_jobs_in_flight{worker="w-7"} 1
# HELP safeperm_job_retries_total Jobs handed back for another delivery after a transient failure.
# TYPE safeperm_job_retries_total counter
safeperm_job_retries_total{worker="w-7"} 1
# HELP safeperm_pvwa_requests_total PVWA HTTP requests by route template and status code ("error": no answer).
# TYPE safeperm_pvwa_requests_total counter
safeperm_pvwa_requests_total{code="200",route="GET /API/Safes/{id}/Members/{name}",worker="w-7"} 2
safeperm_pvwa_requests_total{code="200",route="POST /API/Auth/CyberArk/Logon",worker="w-7"} 1
safeperm_pvwa_requests_total{code="401",route="GET /API/Safes/{id}/Members/{name}",worker="w-7"} 1
safeperm_pvwa_requests_total{code="error",route="PUT /API/Safes/{id}/Members/{name}",worker="w-7"} 1
# HELP safeperm_pvwa_relogons_total PVWA requests replayed after a fresh logon.
# TYPE safeperm_pvwa_relogons_total counter
safeperm_pvwa_relogons_total{worker="w-7"} 1
# HELP safeperm_pvwa_throttled_total Times the PVWA transport backed off, by reason.
# TYPE safeperm_pvwa_throttled_total counter
safeperm_pvwa_throttled_total{reason="429",worker="w-7"} 1
safeperm_pvwa_throttled_total{reason="5xx",worker="w-7"} 0
safeperm_pvwa_throttled_total{reason="latency",worker="w-7"} 0
safeperm_pvwa_throttled_total{reason="retry-after",worker="w-7"} 1
safeperm_pvwa_throttled_total{reason="timeout",worker="w-7"} 0
# HELP safeperm_concurrency_limit Current adaptive limit of concurrent PVWA requests.
# TYPE safeperm_concurrency_limit gauge
safeperm_concurrency_limit{worker="w-7"} 8
# HELP safeperm_rate_budget Current PVWA request budget in requests per second.
# TYPE safeperm_rate_budget gauge
safeperm_rate_budget{worker="w-7"} 20
`
	if err := testutil.ScrapeAndCompare(s.url+"/metrics", strings.NewReader(want),
		"safeperm_jobs_total", "safeperm_jobs_in_flight", "safeperm_job_retries_total",
		"safeperm_pvwa_requests_total", "safeperm_pvwa_relogons_total", "safeperm_pvwa_throttled_total",
		"safeperm_concurrency_limit", "safeperm_rate_budget"); err != nil {
		t.Error(err)
	}

	code, body := httpGet(t, s.url+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", code)
	}
	got := samples(t, body)
	wantSamples(t, got, map[string]float64{
		`safeperm_job_duration_seconds_sum{status="applied",worker="w-7"}`:                                               1.5,
		`safeperm_job_duration_seconds_bucket{status="applied",worker="w-7",le="1"}`:                                     0,
		`safeperm_job_duration_seconds_bucket{status="applied",worker="w-7",le="2.5"}`:                                   1,
		`safeperm_job_duration_seconds_count{status="drift",worker="w-7"}`:                                               1,
		`safeperm_job_duration_seconds_count{status="failed",worker="w-7"}`:                                              0,
		`safeperm_pvwa_request_duration_seconds_count{route="GET /API/Safes/{id}/Members/{name}",worker="w-7"}`:          3,
		`safeperm_pvwa_request_duration_seconds_sum{route="GET /API/Safes/{id}/Members/{name}",worker="w-7"}`:            0.16,
		`safeperm_pvwa_request_duration_seconds_bucket{route="PUT /API/Safes/{id}/Members/{name}",worker="w-7",le="15"}`: 0,
		`safeperm_pvwa_request_duration_seconds_bucket{route="PUT /API/Safes/{id}/Members/{name}",worker="w-7",le="30"}`: 1,
		`safeperm_rate_limit_waits_total{worker="w-7"}`:                                                                  0,
	})
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", `promhttp_metric_handler_requests_total{code="200"}`} {
		if _, ok := got[name]; !ok {
			t.Errorf("series %s missing from the scrape", name)
		}
	}
	// ScrapeAndCompare's scrape is counted; this one is not, as it was
	// still being answered.
	if n := got[`promhttp_metric_handler_requests_total{code="200"}`]; n != 1 {
		t.Errorf(`promhttp_metric_handler_requests_total{code="200"} = %v, want 1 (the earlier scrape)`, n)
	}

	s.stop(t)
	logs := s.logs.String()
	for _, want := range []string{`"component":"metrics"`, `"addr":"127.0.0.1:`, "metrics server stopped"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
	if _, err := http.Get(s.url + "/healthz"); err == nil {
		t.Error("GET /healthz succeeded after Serve returned")
	}
}

// TestServeHealth drives /healthz and /readyz over HTTP while a dependency
// goes down and comes back.
func TestServeHealth(t *testing.T) {
	t.Parallel()
	var natsErr atomic.Pointer[error]
	down := errors.New("nats: connection closed")
	natsErr.Store(&down)
	s := startServe(t, New("w").Handler(
		Check{Name: "nats", Fn: func(context.Context) error { return *natsErr.Load() }},
		Check{Name: "pvwa", Fn: pass},
	))
	var none error
	tests := []struct {
		name     string
		natsErr  *error
		path     string
		wantCode int
		wantBody string
	}{
		{"alive while nats is down", &down, "/healthz", 200, "ok"},
		{"not ready while nats is down", &down, "/readyz", 503, "nats: nats: connection closed\n"},
		{"ready once nats is back", &none, "/readyz", 200, "ok"},
		{"alive once nats is back", &none, "/healthz", 200, "ok"},
	}
	for _, tt := range tests {
		natsErr.Store(tt.natsErr)
		code, body := httpGet(t, s.url+tt.path)
		if code != tt.wantCode || body != tt.wantBody {
			t.Errorf("%s: GET %s = %d %q, want %d %q", tt.name, tt.path, code, body, tt.wantCode, tt.wantBody)
		}
	}
}

// TestServeDrainsInFlight checks that shutdown lets a request in progress
// finish.
func TestServeDrainsInFlight(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	s := startServe(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(entered)
		<-release
		fmt.Fprint(w, "done")
	}))
	type answer struct {
		code int
		body string
		err  error
	}
	answers := make(chan answer, 1)
	go func() {
		resp, err := http.Get(s.url + "/slow")
		if err != nil {
			answers <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		answers <- answer{code: resp.StatusCode, body: string(b), err: err}
	}()
	<-entered
	s.cancel()
	// New connections are refused once shutdown has begun.
	sptest.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		c, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
		if err == nil {
			c.Close()
			return errors.New("listener still accepting")
		}
		return nil
	})
	select {
	case err := <-s.done:
		t.Fatalf("Serve returned %v while a request was in flight", err)
	default:
	}
	close(release)
	a := <-answers
	if a.err != nil || a.code != http.StatusOK || a.body != "done" {
		t.Errorf("in-flight request: %d %q %v, want 200 \"done\"", a.code, a.body, a.err)
	}
	s.stop(t)
}

func TestServeListenError(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	tests := []struct {
		name string
		addr string
	}{
		{"address in use", taken.Addr().String()},
		{"malformed address", "127.0.0.1:notaport"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			called := false
			err := Serve(sptest.Context(t, 10*time.Second), tt.addr, New("").Handler(), zerolog.Nop(), func(net.Addr) { called = true })
			if err == nil || !strings.Contains(err.Error(), tt.addr) {
				t.Errorf("Serve(%q) = %v, want an error naming the address", tt.addr, err)
			}
			if called {
				t.Error("bound was called although nothing was bound")
			}
		})
	}
}

// TestPAMClient wires Metrics into a real pam.Client talking to the PVWA
// simulator and checks what one small sequence of calls records.
func TestPAMClient(t *testing.T) {
	t.Parallel()
	srv, err := pamtest.NewServer(pamtest.Options{Safes: 10, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	m := New("w")
	c, err := pam.New(pam.Config{
		BaseURL:       srv.URL,
		Username:      pamtest.DefaultAdminUser,
		Password:      secret.New(pamtest.DefaultAdminPassword),
		SafesPageSize: 5,
		Observe:       m.ObservePVWA,
		Limiter:       m.Limiter(rate.NewLimiter(rate.Inf, 1)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := sptest.Context(t, 30*time.Second)
	var first pam.Safe
	n := 0
	for safe, err := range c.Safes(ctx, pam.SafesOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			first = safe
		}
		n++
	}
	if n == 0 {
		t.Fatal("the simulator listed no Safes")
	}
	if _, err := c.Member(ctx, first.URLID, "no.such-user@example.com"); !errors.Is(err, pam.ErrMemberNotFound) {
		t.Fatalf("Member of a non-member: %v, want ErrMemberNotFound", err)
	}

	got := samples(t, exposition(t, m))
	pages := float64((n + 4) / 5)
	wantSamples(t, got, map[string]float64{
		`safeperm_pvwa_requests_total{code="200",route="POST /API/Auth/CyberArk/Logon",worker="w"}`:      1,
		`safeperm_pvwa_requests_total{code="200",route="GET /API/Safes",worker="w"}`:                     pages,
		`safeperm_pvwa_requests_total{code="404",route="GET /API/Safes/{id}/Members/{name}",worker="w"}`: 1,
		`safeperm_pvwa_relogons_total{worker="w"}`:                                                       0,
		`safeperm_rate_limit_waits_total{worker="w"}`:                                                    2 + pages,
		`safeperm_rate_limit_wait_seconds_count{worker="w"}`:                                             2 + pages,
	})
	if n := countSeries(got, "safeperm_pvwa_requests_total"); n != 3 {
		t.Errorf("%d request series, want 3:\n%s", n, body(got, "safeperm_pvwa_requests_total"))
	}
}

// body lists the series of got named name, for failure messages.
func body(got map[string]float64, name string) string {
	var b strings.Builder
	for series, v := range got {
		if strings.HasPrefix(series, name) {
			fmt.Fprintf(&b, "%s %v\n", series, v)
		}
	}
	return b.String()
}
