package metrics

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one readiness check, e.g. "nats" (the JetStream connection is
// up) or "pvwa" (the last logon worked).
type Check struct {
	// Name identifies the check in the /readyz answer.
	Name string
	// Fn returns nil when the dependency is ready, or an error whose text
	// says what is wrong. The text is shown verbatim to whoever can reach
	// /readyz, so it must not hold a credential or token. Fn must honour
	// ctx; it is given DefaultCheckTimeout at most.
	Fn func(context.Context) error
}

// DefaultCheckTimeout bounds one /readyz request: a check without an answer
// by then counts as failing.
const DefaultCheckTimeout = 5 * time.Second

// Scrape limits: a slow or stuck Gather must not pile up scrapes.
const (
	scrapeTimeout     = 10 * time.Second
	maxParallelScrape = 4
)

// Handler returns the HTTP handler of the metrics and health endpoints:
//
//   - GET /metrics: every collector of the registry (promhttp).
//   - GET /healthz: 200 "ok" whenever the process can answer at all; it
//     checks nothing else, so that a liveness probe never restarts a worker
//     because a dependency is down.
//   - GET /readyz: runs every check in ready concurrently, each bounded by
//     DefaultCheckTimeout and the request's context; 200 "ok" when all
//     pass, else 503 with one line "<name>: <error text>" per failing
//     check, in the order given. A check that panics fails with the panic
//     value. With no checks, /readyz answers like /healthz.
//
// Handler may be called more than once. It panics if a Check has no Fn, a
// programming error like http.Handle with a nil handler.
func (m *Metrics) Handler(ready ...Check) http.Handler {
	for i, c := range ready {
		if c.Fn == nil {
			panic(fmt.Sprintf("metrics: readiness check %d (%q) has no Fn", i, c.Name))
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(m.reg,
		promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
			Registry:            m.reg,
			MaxRequestsInFlight: maxParallelScrape,
			Timeout:             scrapeTimeout,
		})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.Handle("GET /readyz", &readiness{checks: slices.Clone(ready), timeout: m.checkTimeout})
	return mux
}

// readiness serves /readyz.
type readiness struct {
	checks  []Check
	timeout time.Duration
}

// checkResult is the outcome of checks[i].
type checkResult struct {
	i   int
	err error
}

func (rd *readiness) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), rd.timeout)
	defer cancel()

	// Buffered so that a check finishing after the deadline does not
	// block: its goroutine ends when its Fn returns.
	results := make(chan checkResult, len(rd.checks))
	for i, c := range rd.checks {
		go func() { results <- checkResult{i: i, err: runCheck(ctx, c)} }()
	}
	errs := make([]error, len(rd.checks))
	answered := make([]bool, len(rd.checks))
wait:
	for range rd.checks {
		select {
		case res := <-results:
			errs[res.i], answered[res.i] = res.err, true
		case <-ctx.Done():
			break wait
		}
	}

	var b strings.Builder
	for i, err := range errs {
		if !answered[i] {
			err = fmt.Errorf("no answer within %s: %w", rd.timeout, ctx.Err())
		}
		if err != nil {
			fmt.Fprintf(&b, "%s: %s\n", rd.checks[i].Name, oneLine(err.Error()))
		}
	}
	if b.Len() > 0 {
		writeText(w, http.StatusServiceUnavailable, b.String())
		return
	}
	writeText(w, http.StatusOK, "ok")
}

// runCheck runs c, turning a panic into an error.
func runCheck(ctx context.Context, c Check) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return c.Fn(ctx)
}

// oneLine keeps one failing check on one line of the answer.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// writeText answers with a plain-text body that no cache keeps.
func writeText(w http.ResponseWriter, code int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = fmt.Fprint(w, body)
}
