package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/testutil"
)

// startMover runs RunDeadLetterMover until the test ends.
func startMover(t *testing.T, e *env, s *jobs.Streams) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- jobs.RunDeadLetterMover(ctx, e.js, s, testLogger(t)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunDeadLetterMover: %v", err)
		}
	})
}

// nakUntilExhausted Naks every delivery of the workers consumer (each Nak
// counts as a delivery) until it stops delivering.
func nakUntilExhausted(t *testing.T, s *jobs.Streams, onMsg func(jetstream.Msg)) {
	t.Helper()
	consume(t, s.Workers, func(m jetstream.Msg) {
		if onMsg != nil {
			onMsg(m)
		}
		_ = m.Nak()
	})
}

// resultsOf returns the results of run, one per Safe.
func resultsOf(ctx context.Context, t *testing.T, e *env, run string) []jobs.Result {
	t.Helper()
	var out []jobs.Result
	err := jobs.Replay(ctx, e.js, run, func(r jobs.Result) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMaxDeliverToDLQ(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	s := e.setup(t, func(c *jobs.Config) { c.MaxDeliver = 3 })
	ctx := testutil.Context(t, 30*time.Second)
	startMover(t, e, s)

	// Job 1 fails every time and never reports. Job 2 reports success on
	// its last attempt but never manages to ack (its worker keeps dying):
	// the mover's failed result must then be dropped as a duplicate.
	j1, j2 := testJob("r1", "Doomed"), testJob("r1", "Reported")
	p := jobs.NewPublisher(e.js, zerolog.Nop(), jobs.PublisherOptions{})
	for _, j := range []jobs.Job{j1, j2} {
		if err := p.PublishJob(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var reported sync.Once
	nakUntilExhausted(t, s, func(m jetstream.Msg) {
		if m.Subject() == j2.Subject() {
			reported.Do(func() {
				r := jobs.NewResult(j2, jobs.StatusApplied, time.Now().UTC())
				if _, err := jobs.PublishResult(ctx, e.js, r); err != nil {
					t.Errorf("PublishResult: %v", err)
				}
			})
		}
	})

	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		if n := streamMsgs(ctx, t, s.DLQ); n != 2 {
			return fmt.Errorf("DLQ holds %d, want 2", n)
		}
		if n := streamMsgs(ctx, t, s.Jobs); n != 0 {
			return fmt.Errorf("JOBS still holds %d", n)
		}
		if n := streamMsgs(ctx, t, s.Results); n != 2 {
			return fmt.Errorf("RESULTS holds %d, want 2", n)
		}
		return nil
	})

	// The dead letters carry the original payload and the metadata.
	for _, j := range []jobs.Job{j1, j2} {
		m, err := s.DLQ.GetLastMsgForSubject(ctx, jobs.DLQSubject(j.Run, j.Key()))
		if err != nil {
			t.Fatalf("dead letter of %s: %v", j.Safe.Name, err)
		}
		got, err := jobs.DecodeJob(m.Data)
		if err != nil || got.Safe.Name != j.Safe.Name {
			t.Errorf("dead letter payload = %s (%v), want the job", m.Data, err)
		}
		info := jobs.ParseDeadLetterHeader(m.Header)
		if info.Reason != "max deliveries (3)" || info.Deliveries != 3 || info.Subject != j.Subject() ||
			info.StreamSeq == 0 || !strings.HasPrefix(info.By, "dlq-mover/") || info.Time.IsZero() {
			t.Errorf("dead letter info = %+v", info)
		}
	}

	byName := map[string]jobs.Result{}
	for _, r := range resultsOf(ctx, t, e, "r1") {
		byName[r.Safe.Name] = r
	}
	if r := byName["Doomed"]; r.Status != jobs.StatusFailed || r.ErrorCode != jobs.ErrorCodeMaxDeliveries || r.Attempts != 3 {
		t.Errorf("result of the doomed job = %+v, want failed/MAX_DELIVERIES/3 attempts", r)
	}
	if r := byName["Reported"]; r.Status != jobs.StatusApplied {
		t.Errorf("result of the reported job = %+v, want the worker's applied result", r)
	}

	// Replaying an advisory (a mover crashed before acking) changes nothing.
	m, err := s.DLQ.GetLastMsgForSubject(ctx, jobs.DLQSubject(j1.Run, j1.Key()))
	if err != nil {
		t.Fatal(err)
	}
	seq := jobs.ParseDeadLetterHeader(m.Header).StreamSeq
	adv, _ := json.Marshal(map[string]any{
		"type": "io.nats.jetstream.advisory.v1.max_deliver", "stream": jobs.JobsStream,
		"consumer": jobs.WorkersConsumer, "stream_seq": seq, "deliveries": 3,
	})
	if _, err := e.js.Publish(ctx, "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.SAFEPERM_JOBS.workers", adv); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := streamMsgs(ctx, t, s.Advisories); n != 0 {
			return fmt.Errorf("%d advisories not handled", n)
		}
		return nil
	})
	if n := streamMsgs(ctx, t, s.DLQ); n != 2 {
		t.Errorf("DLQ after replay holds %d, want 2", n)
	}
	if n := streamMsgs(ctx, t, s.Results); n != 2 {
		t.Errorf("RESULTS after replay holds %d, want 2", n)
	}
}

// The worker's path for a message it cannot decode: DeadLetterMsg, then
// TermWithReason (which deletes it from the work queue).
func TestMalformedJobDeadLetter(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	s := e.setup(t, nil)
	ctx := testutil.Context(t, 20*time.Second)
	subj := jobs.JobSubject("r1", jobs.SafeKey("S1"))
	if _, err := e.js.Publish(ctx, subj, []byte(`{"v":9,"garbage`)); err != nil {
		t.Fatal(err)
	}
	batch, err := s.Workers.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var handled int
	for m := range batch.Messages() {
		handled++
		_, derr := jobs.DecodeJob(m.Data())
		if !errors.Is(derr, jobs.ErrMalformed) {
			t.Fatalf("DecodeJob = %v, want ErrMalformed", derr)
		}
		if err := jobs.DeadLetterMsg(ctx, e.js, m, "malformed: "+derr.Error(), "worker-1"); err != nil {
			t.Fatal(err)
		}
		// Dead-lettering twice (a retry after a crash) stores it once.
		if err := jobs.DeadLetterMsg(ctx, e.js, m, "malformed", "worker-1"); err != nil {
			t.Fatal(err)
		}
		if err := m.TermWithReason("malformed"); err != nil {
			t.Fatal(err)
		}
	}
	if handled != 1 {
		t.Fatalf("fetched %d messages, want 1", handled)
	}
	testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, func() error {
		if n := streamMsgs(ctx, t, s.Jobs); n != 0 {
			return fmt.Errorf("JOBS still holds %d", n)
		}
		return nil
	})
	if n := streamMsgs(ctx, t, s.DLQ); n != 1 {
		t.Fatalf("DLQ holds %d, want 1", n)
	}
	m, err := s.DLQ.GetLastMsgForSubject(ctx, jobs.DLQSubject("r1", jobs.SafeKey("S1")))
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != `{"v":9,"garbage` {
		t.Errorf("payload = %q, want the original bytes", m.Data)
	}
	info := jobs.ParseDeadLetterHeader(m.Header)
	if !strings.HasPrefix(info.Reason, "malformed: ") || info.Subject != subj || info.Deliveries != 1 || info.By != "worker-1" {
		t.Errorf("info = %+v", info)
	}
	if err := jobs.DeadLetter(ctx, e.js, nil, jobs.DeadLetterInfo{Reason: "x"}); err == nil {
		t.Error("DeadLetter without StreamSeq succeeded")
	}
}
