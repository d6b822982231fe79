package throttle_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/pam/pamtest"
	"github.com/safeperm/safeperm/internal/testutil"
	"github.com/safeperm/safeperm/internal/throttle"
)

// The tests of the control loop drive real HTTP servers (pamtest in the
// shapes of make bench, and small httptest servers) with many callers and
// check behaviour bounds loose enough for a loaded CI machine; the precise
// ratios, with their targets, are make bench's (bench.BenchmarkDefaults).

// signals counts OnThrottle calls by reason.
type signals struct{ m sync.Map }

func (s *signals) add(r string) {
	n, _ := s.m.LoadOrStore(r, new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
}

func (s *signals) get(r string) int64 {
	if n, ok := s.m.Load(r); ok {
		return n.(*atomic.Int64).Load()
	}
	return 0
}

// run drives p with clients (callers goroutines each) for warm, then
// measures for d.
func run(t *testing.T, p *pvwa, clients []*client, warm, d time.Duration, delays ...time.Duration) measured {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	wg := p.drive(ctx, t, clients, 100, delays...)
	time.Sleep(warm)
	m := p.measure(clients, d)
	stop()
	wg.Wait()
	t.Logf("ratio %.3f, refused %d, errors %d, ok %d, queue wait median %s (%.2f of the service time), total limit median %d",
		m.ratio, m.refused, m.errors, m.ok, m.queue.Median(), m.waitRatio, median(m.total))
	for i, c := range clients {
		t.Logf("client %d: limit median %d, %s", i, median(c.limits), c.a)
	}
	return m
}

func newClients(t *testing.T, n int, o throttle.AdaptiveOptions) []*client {
	var cs []*client
	for range n {
		o := o
		o.Logger = testLogger(t)
		cs = append(cs, newClient(throttle.NewAdaptive(o)))
	}
	return cs
}

// A server that refuses above C requests in flight: the limit settles at
// about C, with few refusals once adapted.
func TestAdaptiveRefusingServer(t *testing.T) {
	tests := []struct {
		name    string
		c       int
		clients int
	}{
		{"C=4", 4, 1},
		{"C=16", 16, 1},
		{"C=16, 3 clients", 16, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPVWA(t, pamtest.Faults{MaxInFlight: tt.c, Latency: 25 * time.Millisecond, Jitter: 5 * time.Millisecond})
			ref := p.reference(t, tt.c, 500*time.Millisecond, 2*time.Second)
			m := run(t, p, newClients(t, tt.clients, throttle.AdaptiveOptions{}), 2*time.Second, 2*time.Second)
			if frac := float64(m.refused) / float64(max(1, m.ok+m.refused)); frac > 0.03 {
				t.Errorf("refused fraction %.4f once adapted, want <= 0.03", frac)
			}
			if got := median(m.total); got < tt.c/2 || got > tt.c+2 {
				t.Errorf("total limit %d, want about C=%d", got, tt.c)
			}
			if rel := m.rate / ref; rel < 0.6 {
				t.Errorf("throughput %.3f of what C requests in flight get, want >= 0.6", rel)
			}
		})
	}
}

// maxWaitRatio bounds the median time a request waits in the server's
// queue, over the service time, in these tests: a short queue, where a
// client without the loop (its requests all in flight at once) makes
// requests wait many service times. The 0.3 the loop is built for is
// measured by make bench; here the bound leaves room for a loaded
// machine, where the client's own delays read as queueing and hide it:
// under the whole suite beside a CPU hog, clients measured their unloaded
// round trip at up to 1.4 times the server's least, and medians of 0.55
// and 0.64 were seen.
const maxWaitRatio = 1.0

// A server that queues above C: the limit settles in a band around C, so
// the server is busy and the queue stays short.
func TestAdaptiveQueueingServer(t *testing.T) {
	tests := []struct {
		name    string
		c       int
		latency time.Duration
		clients int
	}{
		{"C=8", 8, 40 * time.Millisecond, 1},
		{"C=32", 32, 40 * time.Millisecond, 1},
		{"C=8, 3 clients", 8, 40 * time.Millisecond, 3},
		{"C=32, 3 clients", 32, 40 * time.Millisecond, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPVWA(t, pamtest.Faults{Slots: tt.c, Latency: tt.latency, Jitter: tt.latency / 5})
			ref := p.reference(t, tt.c, 500*time.Millisecond, 2*time.Second)
			m := run(t, p, newClients(t, tt.clients, throttle.AdaptiveOptions{}), 2*time.Second, 2*time.Second)
			// Not far above C (the queue stays short) and not collapsed:
			// on a loaded machine the client's own delays read as a queue
			// and hold the limit somewhat under C, which the throughput
			// bound below (relative to this machine) covers.
			if got := median(m.total); got < tt.c/2 || got > 2*tt.c {
				t.Errorf("total limit %d, want within [%d, %d] around C=%d", got, tt.c/2, 2*tt.c, tt.c)
			}
			if m.waitRatio > maxWaitRatio {
				t.Errorf("median queue wait %.2f of the service time, want <= %.1f", m.waitRatio, maxWaitRatio)
			}
			if rel := m.rate / ref; rel < 0.7 {
				t.Errorf("throughput %.3f of what C requests in flight get, want >= 0.7", rel)
			}
			if m.refused != 0 {
				t.Errorf("%d refused by a server that queues", m.refused)
			}
		})
	}
}

// Random HTML 500s at a normal latency are errors to retry, not load: the
// limit does not fall to the minimum, and no backoff for errors happens.
func TestAdaptiveRandomErrorsDoNotLowerTheLimit(t *testing.T) {
	const c = 16
	p := newPVWA(t, pamtest.Faults{Slots: c, Latency: 30 * time.Millisecond, Jitter: 6 * time.Millisecond, P500: 0.05})
	var sig signals
	cs := newClients(t, 1, throttle.AdaptiveOptions{OnThrottle: sig.add})
	m := run(t, p, cs, 2*time.Second, 2*time.Second)
	if m.errors == 0 {
		t.Fatalf("no 500 injected")
	}
	if got := median(m.total); got < c*3/4 {
		t.Errorf("limit %d under 5%% random 500s, want >= %d (C=%d)", got, c*3/4, c)
	}
	if n := sig.get(throttle.ReasonServerError); n != 0 {
		t.Errorf("%d backoffs for server errors at 5%% errors", n)
	}
}

// When errors are most answers the server may be failing: the limit backs
// off to the minimum, and a warning says so.
func TestAdaptiveBacksOffWhenErrorsDominate(t *testing.T) {
	t.Parallel()
	p := newPVWA(t, pamtest.Faults{Latency: 5 * time.Millisecond, P500: 0.6})
	var sig signals
	var logs testutil.Buffer
	a := throttle.NewAdaptive(throttle.AdaptiveOptions{Initial: 16, OnThrottle: sig.add, Logger: zerolog.New(&logs).Level(zerolog.WarnLevel)})
	c := newClient(a)
	ctx, stop := context.WithCancel(context.Background())
	wg := p.drive(ctx, t, []*client{c}, 32)
	defer func() { stop(); wg.Wait() }()
	// All three are waited for: the limit can be low for a moment for
	// another reason (on a loaded machine the first round trips can read
	// as a queue) before enough answers came for the error rate to count.
	testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
		if l := a.Limit(); l > 2 {
			return fmt.Errorf("limit %d with 60%% errors", l)
		}
		if sig.get(throttle.ReasonServerError) == 0 {
			return fmt.Errorf("no %q signal", throttle.ReasonServerError)
		}
		if !strings.Contains(logs.String(), `"level":"warn"`) || !strings.Contains(logs.String(), "server errors") {
			return fmt.Errorf("no warning about the server errors; logs:\n%s", logs.String())
		}
		return nil
	})
}

// A token bucket refusing with Retry-After: requests pause, and the limit
// settles where it carries the bucket's rate without piling refusals.
func TestAdaptiveTokenBucket(t *testing.T) {
	const rate = 100.0
	p := newPVWA(t, pamtest.Faults{Slots: 64, Latency: 10 * time.Millisecond, RateLimit: rate, RateBurst: int(rate), P429RetryAfter: 1})
	var sig signals
	cs := newClients(t, 1, throttle.AdaptiveOptions{OnThrottle: sig.add})
	m := run(t, p, cs, 2*time.Second, 4*time.Second)
	if sig.get(throttle.ReasonRetryAfter) == 0 || cs[0].a.PausedUntil().IsZero() {
		t.Errorf("never refused or paused by a bucket of %.0f/s", rate)
	}
	if m.ratio < 0.6 {
		t.Errorf("throughput %.3f of the bucket's rate, want >= 0.6", m.ratio)
	}
	if frac := float64(m.refused) / float64(max(1, m.ok+m.refused)); frac > 0.15 {
		t.Errorf("refused fraction %.3f, want <= 0.15", frac)
	}
	if got := median(cs[0].limits); got > 20 {
		t.Errorf("limit %d, want near what carries %.0f/s at 10 ms (1 to 2)", got, rate)
	}
}

// A client that joins two running ones measures the unloaded latency
// behind their queue; its drain corrects it, and nobody starves.
func TestAdaptiveLateJoinerShares(t *testing.T) {
	const c = 24
	p := newPVWA(t, pamtest.Faults{Slots: c, Latency: 30 * time.Millisecond, Jitter: 6 * time.Millisecond})
	cs := newClients(t, 3, throttle.AdaptiveOptions{})
	m := run(t, p, cs, 4*time.Second, 3*time.Second, 0, 0, 2*time.Second)
	for i, cl := range cs {
		if got := slices.Max(cl.limits); got < 2 {
			t.Errorf("client %d starves: its limit stayed at %d while the total was %d", i, got, median(m.total))
		}
	}
	if m.waitRatio > maxWaitRatio {
		t.Errorf("median queue wait %.2f of the service time, want <= %.1f", m.waitRatio, maxWaitRatio)
	}
}

func TestAdaptiveRecoversWhenCapacityRises(t *testing.T) {
	t.Parallel()
	srv := newCapacityServer(t, 6, 20*time.Millisecond)
	a := throttle.NewAdaptive(throttle.AdaptiveOptions{Logger: testLogger(t), ProbeInterval: 200 * time.Millisecond, ProbeAfter: 1})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	wg := load(ctx, t, srv.URL, a.Wrap(testTransport()), 48)
	defer wg.Wait()
	defer stop()
	// Settled below the capacity of 6, having been refused above it.
	var refused int64
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		_, thr := srv.counts()
		refused += thr
		if l := a.Limit(); refused == 0 || l < 4 || l > 7 {
			return fmt.Errorf("limit %d after %d refusals, want 4..7 at capacity 6", l, refused)
		}
		return nil
	})
	srv.capacity.Store(32)
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if l := a.Limit(); l < 20 {
			return fmt.Errorf("limit %d, want >= 20 after capacity rose to 32", l)
		}
		return nil
	})
}

// RetryRefused sends a request refused at once again, so the caller sees
// the answer that followed, and leaves requests with a body alone.
func TestAdaptiveRetryRefused(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 3 {
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	a := throttle.NewAdaptive(throttle.AdaptiveOptions{RetryRefused: 5})
	c := &http.Client{Transport: a.Wrap(testTransport())}
	req, _ := http.NewRequestWithContext(testutil.Context(t, 10*time.Second), http.MethodGet, srv.URL, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || calls.Load() != 4 {
		t.Errorf("status %d after %d calls, want 200 after 4", resp.StatusCode, calls.Load())
	}
	calls.Store(0)
	req, _ = http.NewRequestWithContext(testutil.Context(t, 10*time.Second), http.MethodPut, srv.URL, strings.NewReader("{}"))
	if resp, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || calls.Load() != 1 {
		t.Errorf("PUT: status %d after %d calls, want the 429 after 1", resp.StatusCode, calls.Load())
	}
}

func TestAdaptiveRetryAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		header func() string
		want   time.Duration // at least
	}{
		{"delay seconds", func() string { return "1" }, time.Second},
		{"http date", func() string {
			// HTTP dates have whole seconds: the second after next.
			return time.Now().Add(2 * time.Second).UTC().Truncate(time.Second).Format(http.TimeFormat)
		}, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var first atomic.Bool
			first.Store(true)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if first.Swap(false) {
					w.Header().Set("Retry-After", tt.header())
					w.WriteHeader(http.StatusTooManyRequests)
				}
			}))
			defer srv.Close()
			// Record, below the middleware, when each request went out and
			// when the 429 came back.
			var (
				mu    sync.Mutex
				sends []time.Time
				got   time.Time
			)
			inner := testTransport()
			rec := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				mu.Lock()
				sends = append(sends, time.Now())
				mu.Unlock()
				resp, err := inner.RoundTrip(r)
				if err == nil && resp.StatusCode == http.StatusTooManyRequests {
					mu.Lock()
					got = time.Now()
					mu.Unlock()
				}
				return resp, err
			})
			var throttles atomic.Int64
			a := throttle.NewAdaptive(throttle.AdaptiveOptions{
				Logger: testLogger(t), OnThrottle: func(string) { throttles.Add(1) },
			})
			ctx, stop := context.WithCancel(context.Background())
			wg := load(ctx, t, srv.URL, a.Wrap(rec), 8)
			testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
				mu.Lock()
				defer mu.Unlock()
				if got.IsZero() || len(sends) < 50 {
					return fmt.Errorf("%d requests so far", len(sends))
				}
				return nil
			})
			stop()
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			if n := throttles.Load(); n != 1 {
				t.Errorf("throttle signals = %d, want 1", n)
			}
			until := a.PausedUntil()
			if pause := until.Sub(got); pause < tt.want-10*time.Millisecond {
				t.Errorf("pause = %s, want at least %s", pause, tt.want)
			}
			after := 0
			for _, at := range sends {
				// A request past the pause check when the 429 came back
				// still goes: allow it a moment.
				if at.After(got.Add(20*time.Millisecond)) && at.Before(until) {
					t.Errorf("request sent %s after the 429, during the pause until +%s", at.Sub(got), until.Sub(got))
				}
				if !at.Before(until) {
					after++
				}
			}
			if after == 0 {
				t.Errorf("no request after the pause")
			}
		})
	}
}

func TestAdaptiveReleasesSlotsOnErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		rt   http.RoundTripper
	}{
		{"transport error", roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, fmt.Errorf("boom") })},
		{"server error", roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 500, Body: http.NoBody, Request: r}, nil
		})},
		{"refused with Retry-After", roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 429, Header: http.Header{"Retry-After": {"0"}}, Body: http.NoBody, Request: r}, nil
		})},
		{"ok", roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := throttle.NewAdaptive(throttle.AdaptiveOptions{Initial: 2, Max: 2})
			c := &http.Client{Transport: a.Wrap(tt.rt)}
			for range 20 {
				req, _ := http.NewRequestWithContext(testutil.Context(t, 5*time.Second), http.MethodGet, "http://example.invalid/", nil)
				if resp, err := c.Do(req); err == nil {
					resp.Body.Close()
				}
			}
			if got := a.InFlight(); got != 0 {
				t.Errorf("InFlight = %d after all requests, want 0", got)
			}
			// Every slot must be free: Limit requests at once get through.
			var wg sync.WaitGroup
			for range a.Limit() {
				wg.Go(func() {
					req, _ := http.NewRequestWithContext(testutil.Context(t, 5*time.Second), http.MethodGet, "http://example.invalid/", nil)
					if resp, err := c.Do(req); err == nil {
						resp.Body.Close()
					} else if ctxErr := req.Context().Err(); ctxErr != nil {
						t.Errorf("request blocked: %v", err)
					}
				})
			}
			wg.Wait()
		})
	}
}

func TestAdaptiveCancelWhileWaiting(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	a := throttle.NewAdaptive(throttle.AdaptiveOptions{Initial: 1, Max: 1})
	rt := a.Wrap(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		<-release
		return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
	}))
	go func() {
		req, _ := http.NewRequest(http.MethodGet, "http://example.invalid/", nil)
		if resp, err := rt.RoundTrip(req); err == nil {
			resp.Body.Close()
		}
	}()
	testutil.Eventually(t, time.Second, time.Millisecond, func() error {
		if a.InFlight() != 1 {
			return fmt.Errorf("in flight %d", a.InFlight())
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://example.invalid/", nil)
	if _, err := rt.RoundTrip(req); err == nil {
		t.Fatalf("RoundTrip with the only slot taken and a 50ms context: no error")
	}
	close(release)
	testutil.Eventually(t, time.Second, time.Millisecond, func() error {
		if a.InFlight() != 0 {
			return fmt.Errorf("in flight %d", a.InFlight())
		}
		return nil
	})
	req, _ = http.NewRequestWithContext(testutil.Context(t, time.Second), http.MethodGet, "http://example.invalid/", nil)
	if _, err := rt.RoundTrip(req); err != nil {
		t.Fatalf("slot not given back after a cancelled wait: %v", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
