package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/metrics"
	"github.com/safeperm/safeperm/internal/pam"
)

// A worker records its jobs and PVWA calls and tells its readiness probe
// that NATS is down.
func Example() {
	m := metrics.New("worker-1")
	m.JobStarted()
	m.ObservePVWA(pam.CallInfo{Route: "GET /API/Safes/{id}/Members/{name}", Status: 200, Duration: 40 * time.Millisecond, Attempt: 1})
	m.JobFinished(jobs.StatusApplied, 90*time.Millisecond)

	nats := metrics.Check{Name: "nats", Fn: func(context.Context) error { return errors.New("not connected") }}
	srv := httptest.NewServer(m.Handler(nats))
	defer srv.Close()

	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%s %d %q\n", path, resp.StatusCode, body)
	}
	// Output:
	// /healthz 200 "ok"
	// /readyz 503 "nats: not connected\n"
}
