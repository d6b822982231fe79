package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/testutil"
)

// consumeAll acks every job on the workers consumer until want distinct
// subjects were seen, and fails on a subject delivered twice.
func consumeAll(ctx context.Context, t *testing.T, s *jobs.Streams, want int) map[string]int {
	t.Helper()
	var mu sync.Mutex
	seen := map[string]int{}
	consume(t, s.Workers, func(m jetstream.Msg) {
		if err := m.DoubleAck(ctx); err != nil {
			t.Errorf("ack: %v", err)
			return
		}
		mu.Lock()
		seen[m.Subject()]++
		mu.Unlock()
	})
	testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) < want {
			return fmt.Errorf("consumed %d of %d", len(seen), want)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for subj, n := range seen {
		if n != 1 {
			t.Errorf("%s delivered %d times", subj, n)
		}
	}
	return seen
}

func TestPublishDuplicate(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	s := e.setup(t, nil)
	ctx := testutil.Context(t, 20*time.Second)
	p := jobs.NewPublisher(e.js, zerolog.Nop(), jobs.PublisherOptions{})
	j := testJob("r1", "Linux Root")
	for range 2 {
		if err := p.PublishJob(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	// Same Safe, different case: the same key, so also a duplicate.
	j2 := j
	j2.Safe.Name = "LINUX ROOT"
	if err := p.PublishJob(ctx, j2); err != nil {
		t.Fatal(err)
	}
	stats, err := p.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (jobs.PublishStats{Published: 1, Duplicates: 2}); stats != want {
		t.Errorf("stats = %+v, want %+v", stats, want)
	}
	if got := streamMsgs(ctx, t, s.Jobs); got != 1 {
		t.Errorf("jobs in stream = %d, want 1", got)
	}
	// A second planner (new Publisher) re-publishing: still one message.
	p2 := jobs.NewPublisher(e.js, zerolog.Nop(), jobs.PublisherOptions{})
	if err := p2.PublishJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	if stats, err := p2.Flush(ctx); err != nil || stats.Duplicates != 1 {
		t.Errorf("re-publish stats = %+v, %v; want 1 duplicate", stats, err)
	}
	if got := streamMsgs(ctx, t, s.Jobs); got != 1 {
		t.Errorf("jobs in stream = %d, want 1", got)
	}
}

func TestPublishConsumeAll(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	s := e.setup(t, nil)
	ctx := testutil.Context(t, 30*time.Second)
	const n = 2000
	p := jobs.NewPublisher(e.js, testLogger(t), jobs.PublisherOptions{MaxPending: 64})
	for i := range n {
		if err := p.PublishJob(ctx, testJob("r1", safeName(i))); err != nil {
			t.Fatal(err)
		}
	}
	stats, err := p.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Published != n || stats.Total() != n || p.Pending() != 0 {
		t.Fatalf("stats = %+v pending=%d, want %d published", stats, p.Pending(), n)
	}
	seen := consumeAll(ctx, t, s, n)
	for i := range n {
		if subj := testJob("r1", safeName(i)).Subject(); seen[subj] != 1 {
			t.Errorf("%s consumed %d times, want 1", subj, seen[subj])
		}
	}
	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		if got := streamMsgs(ctx, t, s.Jobs); got != 0 {
			return fmt.Errorf("%d jobs left in the work queue", got)
		}
		return nil
	})
}

// A job still pending from the same run is "already pending" once the
// dedup window is over: the per-subject limit catches it.
func TestPublishAlreadyPending(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	s := e.setup(t, func(c *jobs.Config) { c.Duplicates = time.Second })
	ctx := testutil.Context(t, 20*time.Second)
	j := testJob("r1", "S1")
	p := jobs.NewPublisher(e.js, zerolog.Nop(), jobs.PublisherOptions{})
	if err := p.PublishJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error {
		if err := p.PublishJob(ctx, j); err != nil {
			t.Fatal(err)
		}
		stats, err := p.Flush(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if stats.AlreadyPending == 0 {
			return fmt.Errorf("stats %+v: no already-pending yet", stats)
		}
		if stats.Published != 1 {
			t.Fatalf("stats %+v: job stored twice", stats)
		}
		return nil
	})
	if got := streamMsgs(ctx, t, s.Jobs); got != 1 {
		t.Errorf("jobs in stream = %d, want 1", got)
	}
}

// A full jobs stream is backpressure: the publisher waits while workers
// drain it, and every job arrives exactly once.
func TestPublishBackpressure(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	s := e.setup(t, func(c *jobs.Config) { c.MaxJobs = 25 })
	ctx := testutil.Context(t, 30*time.Second)
	const n = 400

	var mu sync.Mutex
	seen := map[string]int{}
	consume(t, s.Workers, func(m jetstream.Msg) {
		time.Sleep(time.Millisecond) // slower than the publisher
		if err := m.DoubleAck(ctx); err != nil {
			t.Errorf("ack: %v", err)
			return
		}
		mu.Lock()
		seen[m.Subject()]++
		mu.Unlock()
	}, jetstream.PullMaxMessages(10))

	p := jobs.NewPublisher(e.js, testLogger(t), jobs.PublisherOptions{MaxPending: 50})
	for i := range n {
		if err := p.PublishJob(ctx, testJob("r1", safeName(i))); err != nil {
			t.Fatal(err)
		}
	}
	stats, err := p.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Published != n {
		t.Errorf("stats = %+v, want %d published", stats, n)
	}
	if stats.Backpressure == 0 {
		t.Errorf("stats = %+v: the stream never filled up; the test proves nothing", stats)
	}
	testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) < n {
			return fmt.Errorf("consumed %d of %d", len(seen), n)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for subj, c := range seen {
		if c != 1 {
			t.Errorf("%s consumed %d times", subj, c)
		}
	}
}

func TestPublishInvalidJob(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	e.setup(t, nil)
	ctx := testutil.Context(t, 10*time.Second)
	p := jobs.NewPublisher(e.js, zerolog.Nop(), jobs.PublisherOptions{})
	j := testJob("bad run", "S1")
	if err := p.PublishJob(ctx, j); !errors.Is(err, jobs.ErrMalformed) {
		t.Errorf("PublishJob(invalid) = %v, want ErrMalformed", err)
	}
	// An invalid job is the caller's problem, not a sticky failure.
	if err := p.PublishJob(ctx, testJob("r1", "S1")); err != nil {
		t.Errorf("PublishJob after invalid job: %v", err)
	}
	if stats, err := p.Flush(ctx); err != nil || stats.Published != 1 {
		t.Errorf("Flush = %+v, %v; want 1 published", stats, err)
	}
}

// Without a stream nothing can be stored: the publisher must say so rather
// than drop jobs, and keep saying so.
func TestPublishNoStreamFails(t *testing.T) {
	t.Parallel()
	e := startEnv(t) // no Setup
	ctx := testutil.Context(t, 30*time.Second)
	p := jobs.NewPublisher(e.js, zerolog.Nop(), jobs.PublisherOptions{MaxAttempts: 2, AckTimeout: time.Second})
	for i := range 3 {
		if err := p.PublishJob(ctx, testJob("r1", safeName(i))); err != nil {
			t.Fatalf("PublishJob %d: %v", i, err)
		}
	}
	stats, err := p.Flush(ctx)
	var pe *jobs.PublishError
	if !errors.As(err, &pe) {
		t.Fatalf("Flush error = %v, want a *PublishError", err)
	}
	if !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Errorf("Flush error = %v, want it to wrap ErrNoStreamResponse", err)
	}
	if stats.Total() != 0 {
		t.Errorf("stats = %+v, want nothing published", stats)
	}
	if err := p.PublishJob(ctx, testJob("r1", "later")); !errors.As(err, &pe) {
		t.Errorf("PublishJob after failure = %v, want the sticky *PublishError", err)
	}
}

func TestPublishResultDedup(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	s := e.setup(t, nil)
	ctx := testutil.Context(t, 10*time.Second)
	j := testJob("r1", "S1")
	r := jobs.NewResult(j, jobs.StatusApplied, time.Now().UTC())
	dup, err := jobs.PublishResult(ctx, e.js, r)
	if err != nil || dup {
		t.Fatalf("first PublishResult = %v, %v; want false, nil", dup, err)
	}
	// A redelivered job reporting again, even with another outcome.
	r2 := jobs.NewResult(j, jobs.StatusUnchanged, time.Now().UTC())
	r2.Attempts = 2
	dup, err = jobs.PublishResult(ctx, e.js, r2)
	if err != nil || !dup {
		t.Fatalf("second PublishResult = %v, %v; want true, nil", dup, err)
	}
	if got := streamMsgs(ctx, t, s.Results); got != 1 {
		t.Errorf("results in stream = %d, want 1", got)
	}
	bad := r
	bad.Status = "great"
	if _, err := jobs.PublishResult(ctx, e.js, bad); !errors.Is(err, jobs.ErrMalformed) {
		t.Errorf("PublishResult(invalid) = %v, want ErrMalformed", err)
	}
}

// BenchmarkPublishJobs measures the planner's publish rate to an embedded
// server (go test -run '^$' -bench PublishJobs -benchtime 200000x).
func BenchmarkPublishJobs(b *testing.B) {
	for _, st := range []jetstream.StorageType{jetstream.MemoryStorage, jetstream.FileStorage} {
		b.Run(st.String(), func(b *testing.B) {
			e := startEnv(b)
			e.setup(b, func(c *jobs.Config) {
				c.Storage = st
				c.MaxJobs = int64(b.N) + 1
			})
			ctx := context.Background()
			p := jobs.NewPublisher(e.js, zerolog.Nop(), jobs.PublisherOptions{})
			js := make([]jobs.Job, b.N)
			for i := range js {
				js[i] = testJob("bench", fmt.Sprintf("Safe %08d", i))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if err := p.PublishJob(ctx, js[i]); err != nil {
					b.Fatal(err)
				}
			}
			stats, err := p.Flush(ctx)
			b.StopTimer()
			if err != nil || stats.Published != b.N {
				b.Fatalf("stats %+v, %v", stats, err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
		})
	}
}
