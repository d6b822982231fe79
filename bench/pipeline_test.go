package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/natsembed"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
	"github.com/safeperm/safeperm/internal/planner"
	"github.com/safeperm/safeperm/internal/policy"
	"github.com/safeperm/safeperm/internal/scope"
	"github.com/safeperm/safeperm/internal/secret"
	"github.com/safeperm/safeperm/internal/throttle"
	"github.com/safeperm/safeperm/internal/worker"
)

// wantPerms is what every run ensures for PSMAppUsers, as the demo does.
var wantPerms = pam.Perms(pam.ListAccounts, pam.UnlockAccounts)

var member = jobs.MemberRef{Name: pamtest.PSMAppUsers, Type: "Group", SearchIn: "Vault"}

// natsStack is an embedded server with safeperm's streams, as planner run
// starts it without --nats-url (file storage in a temporary directory).
type natsStack struct {
	srv     *natsembed.Server
	js      jetstream.JetStream
	streams *jobs.Streams
	close   func()
}

func startStack(b testing.TB, listen string, mutate func(*jobs.Config)) *natsStack {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := natsembed.Start(ctx, natsembed.Options{StoreDir: b.TempDir(), Listen: listen})
	if err != nil {
		b.Fatal(err)
	}
	s := &natsStack{srv: srv}
	if listen != "" {
		s.close = srv.Shutdown
		b.Cleanup(s.close)
		return s
	}
	nc, err := srv.Connect()
	if err != nil {
		srv.Shutdown()
		b.Fatal(err)
	}
	s.close = func() {
		nc.Close()
		srv.Shutdown()
	}
	b.Cleanup(s.close)
	if s.js, err = jetstream.New(nc); err != nil {
		b.Fatal(err)
	}
	cfg := jobs.DefaultConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	if s.streams, err = jobs.Setup(ctx, s.js, cfg); err != nil {
		b.Fatal(err)
	}
	return s
}

// finishObserver records when each job finished (after its ack).
type finishObserver struct {
	mu       sync.Mutex
	finished []time.Time
	retried  atomic.Int64
	status   map[jobs.Status]int
}

func (o *finishObserver) JobStarted() {}
func (o *finishObserver) JobFinished(s jobs.Status, _ time.Duration) {
	now := time.Now()
	o.mu.Lock()
	o.finished = append(o.finished, now)
	if o.status == nil {
		o.status = map[jobs.Status]int{}
	}
	o.status[s]++
	o.mu.Unlock()
}
func (o *finishObserver) JobRetried(uint64) { o.retried.Add(1) }

func (o *finishObserver) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.finished)
}

// callCounter counts, on the wire (below the adaptive limiter), the PVWA
// member calls per Safe and the 429s.
type callCounter struct {
	next http.RoundTripper
	mu   sync.Mutex
	// calls counts answered member calls other than 429, by unescaped
	// safeUrlId.
	calls      map[string]int
	total      atomic.Int64 // every member call, 429s included
	throttled  atomic.Int64 // 429s
	otherCalls atomic.Int64 // logon, Safes pages
}

func (c *callCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	id, ok := memberSafe(req.URL)
	if !ok {
		c.otherCalls.Add(1)
		return resp, err
	}
	c.total.Add(1)
	if err == nil && resp.StatusCode == http.StatusTooManyRequests {
		c.throttled.Add(1)
		return resp, err
	}
	c.mu.Lock()
	c.calls[id]++
	c.mu.Unlock()
	return resp, err
}

// memberSafe returns the Safe of a /API/Safes/{id}/Members... request.
func memberSafe(u *url.URL) (string, bool) {
	segs := strings.Split(u.EscapedPath(), "/")
	for i := 0; i+2 < len(segs); i++ {
		if strings.EqualFold(segs[i], "Safes") && strings.EqualFold(segs[i+2], "Members") {
			id, err := url.PathUnescape(segs[i+1])
			return id, err == nil
		}
	}
	return "", false
}

// runSpec is one run of the real pipeline: embedded NATS, planner.Start over
// the PVWA's Safe list, in-process workers sharing one PVWA client behind
// the adaptive limiter (rate unlimited), as cmd/planner run does.
type runSpec struct {
	Workers, Concurrency int
}

// runOutcome is what a run measured.
type runOutcome struct {
	start    time.Time
	finished []time.Time // sorted
	planned  int
	counter  *callCounter
	status   map[jobs.Status]int
	retried  int64
	limit    int // adaptive limit at the end
}

// elapsed is from the start of planning to the last job's ack.
func (o runOutcome) elapsed() time.Duration { return o.finished[len(o.finished)-1].Sub(o.start) }

// rate is jobs per second over the whole run.
func (o runOutcome) rate() float64 { return float64(len(o.finished)) / o.elapsed().Seconds() }

// steadyRate is jobs per second between the 10th and the 90th percentile
// of completions: the pipeline's pace once the limiter has found the
// capacity, without the ramp-up and the tail of the last few jobs.
func (o runOutcome) steadyRate() float64 {
	n := len(o.finished)
	lo, hi := n/10, n*9/10
	return float64(hi-lo) / o.finished[hi].Sub(o.finished[lo]).Seconds()
}

func runPipeline(b testing.TB, sim *pamtest.Server, spec runSpec) runOutcome {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	st := startStack(b, "", nil)
	defer st.close()
	log := zerolog.Nop()

	counter := &callCounter{calls: map[string]int{}}
	adaptive := throttle.NewAdaptive(throttle.AdaptiveOptions{Logger: log})
	client, err := pam.New(pam.Config{
		BaseURL: sim.URL, Username: pamtest.DefaultAdminUser, Password: secret.New(pamtest.DefaultAdminPassword),
		WrapTransport: func(rt http.RoundTripper) http.RoundTripper {
			counter.next = rt
			return adaptive.Wrap(counter)
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer client.CloseIdleConnections()
	if err := worker.Logon(ctx, client, 3, log); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = client.Logoff(context.Background()) }()

	obs := &finishObserver{}
	wctx, stopWorkers := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range spec.Workers {
		w, err := worker.New(ctx, worker.Config{ID: fmt.Sprintf("bench/w%d", i+1), Concurrency: spec.Concurrency,
			Logger: log, Observer: obs}, client, st.js, st.streams)
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = w.Run(wctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = jobs.RunDeadLetterMover(wctx, st.js, st.streams, log)
	}()
	defer func() {
		stopWorkers()
		wg.Wait()
	}()

	run := jobs.NewRunID(time.Now())
	p := planner.Plan{Run: run, Mode: jobs.ModeApply, Policy: policy.FromFlags(member, wantPerms),
		Filter: scope.Filter{Internal: scope.NewInternal(nil, nil)}, Logger: log}
	params := jobs.RunParams{Member: member, Permissions: wantPerms, PlannerHost: "bench",
		Policy: &jobs.PolicyParams{Digest: policy.FromFlags(member, wantPerms).Digest()}}
	start := time.Now()
	_, sum, err := planner.Start(ctx, st.js, st.streams, planner.SafesSource(client), p, params, "bench")
	if err != nil {
		b.Fatal(err)
	}
	for obs.count() < sum.Planned {
		if ctx.Err() != nil {
			b.Fatalf("only %d of %d jobs finished", obs.count(), sum.Planned)
		}
		time.Sleep(5 * time.Millisecond)
	}
	obs.mu.Lock()
	fin := append([]time.Time(nil), obs.finished...)
	status := obs.status
	obs.mu.Unlock()
	sort.Slice(fin, func(i, j int) bool { return fin[i].Before(fin[j]) })
	return runOutcome{start: start, finished: fin, planned: sum.Planned, counter: counter, status: status,
		retried: obs.retried.Load(), limit: adaptive.Limit()}
}

// vaultMix is what the seeded vault asks of a run.
type vaultMix struct {
	jobs      int     // Safes a run works on: listed and not internal
	compliant int     // of which PSMAppUsers already complies: 1 call
	changed   int     // of which need a write: 2 calls (GET + PUT/POST)
	writable  int     // of the changed, those the admin user can write
	ideal     float64 // ideal calls per Safe
	class     map[string]bool
}

// mixOf computes the ideal from pamtest's seeded vault.
func mixOf(v *pamtest.Vault) vaultMix {
	m := vaultMix{class: map[string]bool{}}
	for i := range v.Len() {
		in := v.Info(i)
		if in.Internal || in.Access == pamtest.AccessHidden {
			continue
		}
		m.jobs++
		ok := in.Class == pamtest.ClassCompliant
		id, _ := url.PathUnescape(in.URLID)
		m.class[id] = ok
		if ok {
			m.compliant++
		} else {
			m.changed++
			if in.Access == pamtest.AccessFull {
				m.writable++
			}
		}
	}
	m.ideal = float64(m.compliant+2*m.changed) / float64(m.jobs)
	return m
}

// callsPerSafe averages the counted calls over the compliant and the
// changed Safes.
func (m vaultMix) callsPerSafe(c *callCounter) (compliant, changed float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var nc, ns int
	for id, ok := range m.class {
		if ok {
			nc += c.calls[id]
		} else {
			ns += c.calls[id]
		}
	}
	return float64(nc) / float64(m.compliant), float64(ns) / float64(m.changed)
}

func newSim(b testing.TB, opts pamtest.Options) *pamtest.Server {
	b.Helper()
	srv, err := pamtest.NewServer(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	return srv
}
