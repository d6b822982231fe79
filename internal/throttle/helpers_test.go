package throttle_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/natsembed"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
	"github.com/safeperm/safeperm/internal/testutil"
	"github.com/safeperm/safeperm/internal/throttle"
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

// pvwa is a pamtest PVWA with a session token and a member to read, for
// driving Adaptive with real API requests.
type pvwa struct {
	*pamtest.Server
	token  string
	member string // path of GET one member
}

func newPVWA(t testing.TB, f pamtest.Faults) *pvwa {
	t.Helper()
	srv, err := pamtest.NewServer(pamtest.Options{Safes: 200, Seed: 5, Faults: f})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	resp, err := http.Post(srv.URL+"/API/Auth/CyberArk/Logon", "application/json",
		strings.NewReader(`{"username":"Administrator","password":"Cyberark1","concurrentSession":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok string
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != 200 {
		t.Fatalf("logon: %d %v", resp.StatusCode, err)
	}
	v := srv.Vault()
	safe := ""
	for i := v.Internal(); i < v.Len() && safe == ""; i++ {
		if in := v.Info(i); in.Access == pamtest.AccessFull {
			safe = in.URLID
		}
	}
	return &pvwa{Server: srv, token: tok, member: srv.URL + "/API/Safes/" + safe + "/Members/Administrator/"}
}

// capacity is the PVWA's member reads per second: its slots (or the most
// it serves before refusing) over its latency.
func (p *pvwa) capacity() float64 {
	f := p.Faults()
	c := float64(max(f.Slots, f.MaxInFlight)) / (f.Latency + f.Jitter/2).Seconds()
	if f.RateLimit > 0 {
		c = min(c, f.RateLimit)
	}
	return c
}

// client is one worker process's view of the PVWA: its own connections
// behind its own Adaptive.
type client struct {
	a      *throttle.Adaptive
	rt     http.RoundTripper
	limits []int // sampled during the measurement
}

func newClient(a *throttle.Adaptive) *client {
	return &client{a: a, rt: a.Wrap(testTransport())}
}

// drive sends member reads from callers goroutines per client until ctx
// ends; a client starts after its delay in delays (none when absent).
func (p *pvwa) drive(ctx context.Context, t testing.TB, clients []*client, callers int, delays ...time.Duration) *sync.WaitGroup {
	t.Helper()
	var wg sync.WaitGroup
	for i, c := range clients {
		hc := &http.Client{Transport: c.rt}
		var delay time.Duration
		if i < len(delays) {
			delay = delays[i]
		}
		for range callers {
			wg.Go(func() {
				select {
				case <-time.After(delay):
				case <-ctx.Done():
					return
				}
				for ctx.Err() == nil {
					req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.member, nil)
					if err != nil {
						t.Error(err)
						return
					}
					req.Header.Set("Authorization", p.token)
					resp, err := hc.Do(req)
					if err != nil {
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		}
	}
	return &wg
}

// reference is what a client with perfect knowledge gets from p on this
// machine, now: exactly n requests in flight (the PVWA's C), no limiter,
// member reads answered per second over d after warm. The loop's
// throughput is compared with it rather than with the nominal capacity:
// on a loaded machine the client's own delays (the scheduler, the race
// detector, other processes) cost both alike, and that is not the loop's
// doing.
func (p *pvwa) reference(t *testing.T, n int, warm, d time.Duration) float64 {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	wg := p.drive(ctx, t, []*client{{rt: testTransport()}}, n)
	time.Sleep(warm)
	p.ResetStats()
	start := time.Now()
	time.Sleep(d)
	st := p.Stats()
	rate := float64(st.Count(pamtest.RouteMember, 200)+st.Count(pamtest.RouteMember, 404)) / time.Since(start).Seconds()
	stop()
	wg.Wait()
	t.Logf("reference: %d requests in flight without a limiter: %.0f reads/s (%.3f of the nominal capacity)", n, rate, rate/p.capacity())
	return rate
}

// measured is what a measurement window saw at the PVWA.
type measured struct {
	ok, refused, errors int64
	elapsed             time.Duration
	ratio               float64 // member reads answered ÷ capacity
	rate                float64 // member reads answered per second
	queue               pamtest.QueueStats
	waitRatio           float64 // median queue wait ÷ service time
	total               []int   // sum of the clients' limits, sampled
}

// measure resets the PVWA's counters, samples the clients' limits every 5 ms
// for d, and returns what the PVWA counted.
func (p *pvwa) measure(clients []*client, d time.Duration) measured {
	for _, c := range clients {
		c.limits = c.limits[:0]
	}
	p.ResetStats()
	start := time.Now()
	var m measured
	for time.Since(start) < d {
		sum := 0
		for _, c := range clients {
			l := c.a.Limit()
			c.limits = append(c.limits, l)
			sum += l
		}
		m.total = append(m.total, sum)
		time.Sleep(5 * time.Millisecond)
	}
	st := p.Stats()
	m.elapsed = time.Since(start)
	m.ok = st.Count(pamtest.RouteMember, 200) + st.Count(pamtest.RouteMember, 404)
	m.refused = st.Faults.InFlight429 + st.Faults.Rate429
	m.errors = st.Faults.Random500
	m.rate = float64(m.ok) / m.elapsed.Seconds()
	m.ratio = m.rate / p.capacity()
	m.queue = st.Queue
	if f := p.Faults(); f.Latency > 0 {
		m.waitRatio = float64(st.Queue.Median()) / float64(f.Latency+f.Jitter/2)
	}
	return m
}

// median returns the median of xs (0 when empty).
func median(xs []int) int {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
