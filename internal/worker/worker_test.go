package worker

import (
	"context"
	"fmt"
	"iter"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/natsembed/natstest"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
	"github.com/safeperm/safeperm/internal/testutil"
)

type natsEnv struct {
	js      jetstream.JetStream
	streams *jobs.Streams
}

func startNATS(t *testing.T, mutate func(*jobs.Config)) natsEnv {
	t.Helper()
	e := natstest.Start(t, "")
	return natsEnv{js: e.JS, streams: e.Setup(t, mutate)}
}

// publishAll publishes one job per account Safe of the vault and returns
// them by Safe name.
func publishAll(t *testing.T, env natsEnv, srv *pamtest.Server, run string, mode jobs.Mode) map[string]pamtest.SafeInfo {
	t.Helper()
	ctx := context.Background()
	p := jobs.NewPublisher(env.js, zerolog.Nop(), jobs.PublisherOptions{})
	v := srv.Vault()
	out := map[string]pamtest.SafeInfo{}
	for i := range v.Len() {
		in := v.Info(i)
		if in.Internal || in.Access == pamtest.AccessHidden {
			continue
		}
		j := jobFor(in, mode)
		j.Run = run
		if err := p.PublishJob(ctx, j); err != nil {
			t.Fatal(err)
		}
		out[in.Name] = in
	}
	if _, err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	return out
}

// collect follows run until n results arrived, or fails after wait.
func collect(t *testing.T, env natsEnv, run string, n int, wait time.Duration) map[string]jobs.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	got := map[string]jobs.Result{}
	err := jobs.Follow(ctx, env.js, run, func(r jobs.Result) error {
		got[r.Safe.Name] = r
		if len(got) == n {
			return jobs.ErrStop
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%d of %d results: %v", len(got), n, err)
	}
	return got
}

func runWorker(t *testing.T, ctx context.Context, env natsEnv, p PVWA, cfg Config) (wait func()) {
	t.Helper()
	w, err := New(ctx, cfg, p, env.js, env.streams)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := w.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	return wg.Wait
}

func TestWorkerRunConverges(t *testing.T) {
	env := startNATS(t, nil)
	srv, c := newSim(t, pamtest.Options{Safes: 300, Seed: 21})
	ctx, cancel := context.WithCancel(context.Background())
	wait := runWorker(t, ctx, env, c, Config{Concurrency: 6, Retry: fastRetry()})
	defer func() { cancel(); wait() }()

	safes := publishAll(t, env, srv, "run-a", jobs.ModeApply)
	got := collect(t, env, "run-a", len(safes), 30*time.Second)

	for name, in := range safes {
		r := got[name]
		var ws jobs.Status
		switch {
		case in.Access == pamtest.AccessReadOnly && in.PSMPermissions.Missing(want) != 0:
			ws = jobs.StatusFailed
		case in.PSMPermissions.Missing(want) == 0:
			ws = jobs.StatusUnchanged
		default:
			ws = jobs.StatusApplied
		}
		if r.Status != ws {
			t.Errorf("%s (%s/%s): %s %s, want %s", name, in.Class, in.Access, r.Status, r.Error, ws)
		}
		if ws == jobs.StatusFailed && r.ErrorCode != "CAWS00001E" {
			t.Errorf("%s: error code %q", name, r.ErrorCode)
		}
		st, _ := srv.SafeState(name)
		m, ok := st.Member(pamtest.PSMAppUsers)
		if ws != jobs.StatusFailed && (!ok || m.Permissions != in.PSMPermissions|want) {
			t.Errorf("%s: vault holds %v, want %s", name, m.Permissions, in.PSMPermissions|want)
		}
	}
	// The last ack follows the last result: wait for it.
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		n, err := env.streams.Jobs.Info(context.Background())
		if err != nil {
			return err
		}
		if n.State.Msgs != 0 {
			return fmt.Errorf("%d jobs left in the work queue", n.State.Msgs)
		}
		return nil
	})
}

func fastRetry() RetryPolicy {
	return RetryPolicy{Attempts: 2, Base: time.Millisecond, Max: 5 * time.Millisecond,
		RedeliverBase: 10 * time.Millisecond, RedeliverMax: 50 * time.Millisecond, MaxRetryAfter: 50 * time.Millisecond}
}

// TestWorkerPoisonMessage: a message that is not a job is dead-lettered
// with the reason and terminated, never retried, and yields no result.
func TestWorkerPoisonMessage(t *testing.T) {
	env := startNATS(t, nil)
	_, c := newSim(t, pamtest.Options{Safes: 10, Seed: 22})
	ctx, cancel := context.WithCancel(context.Background())
	wait := runWorker(t, ctx, env, c, Config{Concurrency: 2})
	defer func() { cancel(); wait() }()

	for _, body := range []string{`{not json`, `{"v":9,"run":"run-p"}`, `{"v":1,"run":"run-p","mode":"apply","safe":{"urlId":"x","name":"x"},"member":{"name":"m","type":"Group"},"permissions":[]}`} {
		if _, err := env.js.Publish(context.Background(), jobs.JobSubject("run-p", jobs.SafeKey(body)), []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	// The worker dead-letters a poison message, then terminates it; the
	// termination is an ack the server applies a moment later, so both
	// are waited for.
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := env.streams.DLQ.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ji, err := env.streams.Jobs.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 3 && ji.State.Msgs == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead letters %d, want 3; %d poison messages left in the queue, want 0", info.State.Msgs, ji.State.Msgs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Each dead letter says why; a job of another schema version (an
	// older planner's) says which version this build reads.
	reasons := map[string]string{}
	for seq := uint64(1); seq <= 3; seq++ {
		m, err := env.streams.DLQ.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		info := jobs.ParseDeadLetterHeader(m.Header)
		if info.Reason == "" || info.Deliveries != 1 {
			t.Errorf("dead letter %d: %+v, want a reason and 1 delivery", seq, info)
		}
		reasons[string(m.Data)] = info.Reason
	}
	for body, want := range map[string]string{
		`{"v":9,"run":"run-p"}`: "unsupported version 9 (this build reads 2)",
		`{"v":1,"run":"run-p","mode":"apply","safe":{"urlId":"x","name":"x"},"member":{"name":"m","type":"Group"},"permissions":[]}`: "unsupported version 1 (this build reads 2)",
	} {
		if !strings.Contains(reasons[body], want) {
			t.Errorf("dead letter of %s: reason %q, want it to say %q", body, reasons[body], want)
		}
	}
	ri, _ := env.streams.Results.Info(context.Background())
	if ri.State.Msgs != 0 {
		t.Errorf("%d results for poison messages", ri.State.Msgs)
	}
}

// TestWorkerTransientThenDeadLetter: a Safe that always answers 500 is
// handed back with a delay until MaxDeliver, then reported failed once.
func TestWorkerTransientThenDeadLetter(t *testing.T) {
	env := startNATS(t, func(c *jobs.Config) { c.MaxDeliver = 3 })
	srv, c := newSim(t, pamtest.Options{Safes: 120, Seed: 23})
	in := pick(t, srv, pamtest.ClassListOnly, pamtest.AccessFull)
	if err := srv.SetFaults(pamtest.Faults{P500: 1}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wait := runWorker(t, ctx, env, c, Config{Concurrency: 2, Retry: fastRetry()})
	defer func() { cancel(); wait() }()
	moverCtx, stopMover := context.WithCancel(ctx)
	defer stopMover()
	go func() { _ = jobs.RunDeadLetterMover(moverCtx, env.js, env.streams, zerolog.Nop()) }()

	j := jobFor(in, jobs.ModeApply)
	j.Run = "run-t"
	p := jobs.NewPublisher(env.js, zerolog.Nop(), jobs.PublisherOptions{})
	if err := p.PublishJob(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := collect(t, env, "run-t", 1, 20*time.Second)
	r := got[in.Name]
	if r.Status != jobs.StatusFailed || r.Attempts != 3 {
		t.Fatalf("result %s attempts %d (%s), want failed after 3 deliveries", r.Status, r.Attempts, r.Error)
	}
	// GETs: 2 tries in each of 3 deliveries; never a write.
	if n := srv.Stats().Count(pamtest.RouteMember, 500); n != 6 {
		t.Errorf("GETs answered 500: %d, want 6", n)
	}
	if w := srv.Stats().MemberWrites.Total; w != 0 {
		t.Errorf("writes %d", w)
	}
	time.Sleep(200 * time.Millisecond)
	ri, _ := env.streams.Results.Info(context.Background())
	if ri.State.Msgs != 1 {
		t.Errorf("results %d, want exactly 1", ri.State.Msgs)
	}
}

// TestWorkerShutdownHandsBack: a worker stopped with jobs in flight hands
// them back; another worker finishes them and nothing is lost. A job the
// server had sent to the stopping worker's pull request, and that never
// reached it, comes back after the consumer's AckWait: 3 s here (60 s by
// default), so that the test waits for it (it once missed it at 60 s).
func TestWorkerShutdownHandsBack(t *testing.T) {
	env := startNATS(t, func(c *jobs.Config) { c.AckWait = 3 * time.Second })
	srv, c := newSim(t, pamtest.Options{Safes: 150, Seed: 24})
	if err := srv.SetFaults(pamtest.Faults{Latency: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	want := publishAll(t, env, srv, "run-s", jobs.ModeApply)

	ctx1, cancel1 := context.WithCancel(context.Background())
	wait1 := runWorker(t, ctx1, env, c, Config{Concurrency: 4, ShutdownTimeout: 50 * time.Millisecond, Retry: fastRetry()})
	time.Sleep(700 * time.Millisecond)
	cancel1()
	done := make(chan struct{})
	go func() { wait1(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("worker did not stop within its shutdown timeout")
	}
	if err := srv.SetFaults(pamtest.Faults{}); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	wait2 := runWorker(t, ctx2, env, c, Config{Concurrency: 8, Retry: fastRetry()})
	defer func() { cancel2(); wait2() }()
	got := collect(t, env, "run-s", len(want), 60*time.Second)
	if len(got) != len(want) {
		t.Fatalf("results %d, want %d", len(got), len(want))
	}
	for name, r := range got {
		if r.Status == jobs.StatusFailed && want[name].Access == pamtest.AccessFull {
			t.Errorf("%s failed: %s", name, r.Error)
		}
		// One delivery to the stopping worker, one to the next; a third
		// at most for a job cut short while the first was still
		// unsubscribing. More means the stopping worker's hand-backs came
		// back to it (the job runs out of deliveries and is lost).
		if r.Attempts > 3 {
			t.Errorf("%s: delivered %d times", name, r.Attempts)
		}
	}
	ri, _ := env.streams.Results.Info(context.Background())
	if int(ri.State.Msgs) != len(want) {
		t.Errorf("result messages %d, want %d (one per job)", ri.State.Msgs, len(want))
	}
}

// crashAfterWrite lets the write reach the PVWA, then fails the call as a
// worker killed right after it would: the answer never arrives.
type crashAfterWrite struct{ PVWA }

func (c crashAfterWrite) UpdateMember(ctx context.Context, id, name string, u pam.MemberUpdate) (pam.Member, error) {
	if _, err := c.PVWA.UpdateMember(ctx, id, name, u); err != nil {
		return pam.Member{}, err
	}
	return pam.Member{}, context.Canceled
}

func (c crashAfterWrite) AddMember(ctx context.Context, id string, m pam.NewMember) (pam.Member, error) {
	if _, err := c.PVWA.AddMember(ctx, id, m); err != nil {
		return pam.Member{}, err
	}
	return pam.Member{}, context.Canceled
}

// TestIntentSurvivesCrash: a delivery writes and dies before reporting; the
// redelivery finds the Safe compliant and, from the write intent, reports
// "applied" with the state before the first write, not "unchanged".
func TestIntentSurvivesCrash(t *testing.T) {
	env := startNATS(t, nil)
	srv, c := newSim(t, pamtest.Options{Safes: 400, Seed: 25})
	for _, class := range []pamtest.Class{pamtest.ClassListOnly, pamtest.ClassAbsent} {
		in := pick(t, srv, class, pamtest.AccessFull)
		job := jobFor(in, jobs.ModeApply)
		first := &Executor{PVWA: crashAfterWrite{c}, Retry: RetryPolicy{Attempts: 1}, Sleep: noSleep, Intents: env.streams.Intents}
		if _, _, err := first.ExecuteDelivery(context.Background(), job, 1); err == nil {
			t.Fatalf("%s: the crashing delivery succeeded", class)
		}
		second := &Executor{PVWA: c, Retry: DefaultRetryPolicy(), Sleep: noSleep, Intents: env.streams.Intents}
		res, _, err := second.ExecuteDelivery(context.Background(), job, 2)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != jobs.StatusApplied {
			t.Errorf("%s: redelivery reported %s, want applied", class, res.Status)
		}
		if b := m0(t, res).Before; (b != nil) != in.PSMMember || (b != nil && b.Permissions != in.PSMPermissions) {
			t.Errorf("%s: before %v, want the seeded state (member %v, %s)", class, b, in.PSMMember, in.PSMPermissions)
		}
		if srv.Stats().WritesBySafe[in.Name] != 1 {
			t.Errorf("%s: %d writes, want 1", class, srv.Stats().WritesBySafe[in.Name])
		}
	}
	// A first delivery of a compliant Safe never consults intents.
	in := pick(t, srv, pamtest.ClassCompliant, pamtest.AccessFull)
	res, _, err := (&Executor{PVWA: c, Retry: DefaultRetryPolicy(), Intents: env.streams.Intents}).ExecuteDelivery(context.Background(), jobFor(in, jobs.ModeApply), 2)
	if err != nil || res.Status != jobs.StatusUnchanged {
		t.Fatalf("compliant Safe on a redelivery without intent: %s %v", res.Status, err)
	}
}

// gatePVWA answers every read "compliant", after the test opens its gate;
// it counts the reads waiting at once.
type gatePVWA struct {
	gate    chan struct{}
	waiting atomic.Int64
	peak    atomic.Int64
}

func (g *gatePVWA) Member(ctx context.Context, safe, name string) (pam.Member, error) {
	n := g.waiting.Add(1)
	defer g.waiting.Add(-1)
	for p := g.peak.Load(); n > p && !g.peak.CompareAndSwap(p, n); p = g.peak.Load() {
	}
	select {
	case <-g.gate:
	case <-ctx.Done():
		return pam.Member{}, ctx.Err()
	}
	return pam.Member{SafeURLID: safe, Name: name, Type: "Group", Permissions: want}, nil
}
func (g *gatePVWA) Members(context.Context, string, ...pam.MembersOptions) iter.Seq2[pam.Member, error] {
	return func(yield func(pam.Member, error) bool) { yield(pam.Member{}, fmt.Errorf("unexpected listing")) }
}
func (g *gatePVWA) AddMember(context.Context, string, pam.NewMember) (pam.Member, error) {
	return pam.Member{}, fmt.Errorf("unexpected write")
}
func (g *gatePVWA) UpdateMember(context.Context, string, string, pam.MemberUpdate) (pam.Member, error) {
	return pam.Member{}, fmt.Errorf("unexpected write")
}
func (g *gatePVWA) DeleteMember(context.Context, string, string) error {
	return fmt.Errorf("unexpected write")
}

// TestWorkerHoldFollowsRequestLimit: with RequestLimit, the worker works on
// HoldFor(limit) jobs at once, follows the limit up, and stays within
// Concurrency.
func TestWorkerHoldFollowsRequestLimit(t *testing.T) {
	env := startNATS(t, nil)
	srv, _ := newSim(t, pamtest.Options{Safes: 400, Seed: 23})
	g := &gatePVWA{gate: make(chan struct{})}
	var limit atomic.Int64
	limit.Store(3)
	ctx, cancel := context.WithCancel(context.Background())
	wait := runWorker(t, ctx, env, g, Config{Concurrency: 40, RequestLimit: func() int { return int(limit.Load()) }, Retry: fastRetry()})
	defer func() { cancel(); wait() }()
	safes := publishAll(t, env, srv, "run-hold", jobs.ModeApply)

	waitFor := func(n int64) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, func() error {
			if got := g.waiting.Load(); got != n {
				return fmt.Errorf("%d jobs at the PVWA, want %d", got, n)
			}
			return nil
		})
	}
	waitFor(int64(HoldFor(3)))
	limit.Store(10)
	waitFor(int64(HoldFor(10)))
	limit.Store(100) // HoldFor(100) is above Concurrency
	waitFor(40)
	close(g.gate)
	collect(t, env, "run-hold", len(safes), 30*time.Second)
	if p := g.peak.Load(); p != 40 {
		t.Errorf("peak %d jobs at once, want Concurrency 40", p)
	}
}
