package throttle_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/natsembed"
	"github.com/safeperm/safeperm/internal/testutil"
)

// testLogger returns a logger writing to the test log at warn level and up.
func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

// natsEnv is one embedded server; conn gives each member its own client
// connection, as separate worker processes would have.
type natsEnv struct {
	srv *natsembed.Server
}

func startNATS(t testing.TB) *natsEnv {
	t.Helper()
	srv, err := natsembed.Start(testutil.Context(t, 20*time.Second), natsembed.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return &natsEnv{srv: srv}
}

// js opens a new connection, closed with the test, and its JetStream.
func (e *natsEnv) js(t testing.TB) (jetstream.JetStream, func()) {
	t.Helper()
	nc, err := e.srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js, nc.Close
}

// capacityServer emulates a server with a capacity of cap requests in
// flight: above it, 429 at once (with Retry-After when retryAfter is set);
// within it, a fixed latency.
type capacityServer struct {
	*httptest.Server
	capacity   atomic.Int64
	latency    time.Duration
	retryAfter string

	inFlight  atomic.Int64
	ok        atomic.Int64
	throttled atomic.Int64

	mu       sync.Mutex
	arrivals []time.Time
	record   bool
}

func newCapacityServer(t testing.TB, capacity int, latency time.Duration) *capacityServer {
	s := &capacityServer{latency: latency}
	s.capacity.Store(int64(capacity))
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *capacityServer) serve(w http.ResponseWriter, r *http.Request) {
	if s.record {
		s.mu.Lock()
		s.arrivals = append(s.arrivals, time.Now())
		s.mu.Unlock()
	}
	if s.inFlight.Add(1) > s.capacity.Load() {
		s.inFlight.Add(-1)
		s.throttled.Add(1)
		if s.retryAfter != "" {
			w.Header().Set("Retry-After", s.retryAfter)
		}
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	time.Sleep(s.latency)
	s.inFlight.Add(-1) // before answering: the slot is free when the client learns it
	s.ok.Add(1)
	w.WriteHeader(http.StatusOK)
}

// counts returns and resets the ok and throttled counters.
func (s *capacityServer) counts() (ok, throttled int64) {
	return s.ok.Swap(0), s.throttled.Swap(0)
}

// load runs n goroutines sending GET requests through rt until ctx ends.
func load(ctx context.Context, t testing.TB, url string, rt http.RoundTripper, n int) *sync.WaitGroup {
	t.Helper()
	c := &http.Client{Transport: rt}
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				if err != nil {
					t.Error(err)
					return
				}
				resp, err := c.Do(req)
				if err != nil {
					continue
				}
				resp.Body.Close()
			}
		})
	}
	return &wg
}

// testTransport is a transport with enough idle connections for the load.
func testTransport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 512
	return tr
}
