package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/testutil"
)

func TestTally(t *testing.T) {
	t.Parallel()
	tl := jobs.NewTally()
	j := testJob("r1", "S1")
	add := func(safe string, st jobs.Status) bool {
		j.Safe.Name = safe
		return tl.Add(jobs.NewResult(j, st, time.Now()))
	}
	steps := []struct {
		safe string
		st   jobs.Status
		want bool
	}{
		{"A", jobs.StatusApplied, true},
		{"B", jobs.StatusFailed, true},
		{"a", jobs.StatusUnchanged, false}, // same Safe, other case
		{"B", jobs.StatusApplied, false},
		{"C", jobs.StatusDrift, true},
	}
	for _, s := range steps {
		if got := add(s.safe, s.st); got != s.want {
			t.Errorf("Add(%s, %s) = %v, want %v", s.safe, s.st, got, s.want)
		}
	}
	want := map[jobs.Status]int{jobs.StatusApplied: 1, jobs.StatusFailed: 1, jobs.StatusDrift: 1}
	if got := tl.Counts(); !reflect.DeepEqual(got, want) {
		t.Errorf("Counts() = %v, want %v", got, want)
	}
	if tl.Done() != 3 || tl.Count(jobs.StatusApplied) != 1 || tl.Count(jobs.StatusConflict) != 0 {
		t.Errorf("Done()=%d Count(applied)=%d", tl.Done(), tl.Count(jobs.StatusApplied))
	}
}

// publishRawResult stores r under an arbitrary Msg-ID, to simulate a second
// report for a Safe arriving after the dedup window.
func publishRawResult(ctx context.Context, t *testing.T, js jetstream.JetStream, r jobs.Result, msgID string) {
	t.Helper()
	data, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	m := &nats.Msg{Subject: r.Subject(), Data: data, Header: nats.Header{jetstream.MsgIDHeader: {msgID}}}
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
}

func TestFollowAndReplay(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	s := e.setup(t, nil)
	ctx := testutil.Context(t, 20*time.Second)
	statuses := jobs.AllStatuses()
	const n = 60
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			r := jobs.NewResult(testJob("r1", safeName(i)), statuses[i%len(statuses)], time.Now().UTC())
			if _, err := jobs.PublishResult(ctx, e.js, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(0, n/2)
	// Noise: duplicates dropped by JetStream, a late second report stored
	// under another Msg-ID, a malformed message and another run's result.
	publish(0, 5)
	late := jobs.NewResult(testJob("r1", safeName(0)), jobs.StatusFailed, time.Now().UTC())
	publishRawResult(ctx, t, e.js, late, "late")
	if _, err := e.js.Publish(ctx, jobs.ResultSubject("r1", jobs.StatusFailed), []byte("junk")); err != nil {
		t.Fatal(err)
	}
	other := jobs.NewResult(testJob("r2", safeName(0)), jobs.StatusApplied, time.Now().UTC())
	if _, err := jobs.PublishResult(ctx, e.js, other); err != nil {
		t.Fatal(err)
	}

	// Follow from the start while the rest arrives.
	tally := jobs.NewTally()
	var mu sync.Mutex
	var calls int
	done := make(chan error, 1)
	go func() {
		done <- jobs.Follow(ctx, e.js, "r1", func(r jobs.Result) error {
			mu.Lock()
			calls++
			mu.Unlock()
			tally.Add(r)
			if tally.Done() == n {
				return jobs.ErrStop
			}
			return nil
		})
	}()
	publish(n/2, n)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Follow = %v, want nil after ErrStop", err)
		}
	case <-ctx.Done():
		t.Fatalf("Follow did not finish; tally %v", tally.Counts())
	}
	if calls != n {
		t.Errorf("fn called %d times, want %d (one per Safe)", calls, n)
	}
	want := map[jobs.Status]int{}
	for i := range n {
		want[statuses[i%len(statuses)]]++
	}
	if got := tally.Counts(); !reflect.DeepEqual(got, want) {
		t.Errorf("counts = %v, want %v", got, want)
	}
	if got := streamMsgs(ctx, t, s.Results); got != n+3 {
		t.Errorf("results stream holds %d, want %d", got, n+3)
	}

	// Replay sees the same and returns by itself.
	rt := jobs.NewTally()
	if err := jobs.Replay(ctx, e.js, "r1", func(r jobs.Result) error { rt.Add(r); return nil }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rt.Counts(), want) {
		t.Errorf("replay counts = %v, want %v", rt.Counts(), want)
	}
	// Only the failed and conflict subjects: what planner status reads. The
	// late failed report of safeName(0), whose first result was applied,
	// is among them: a filtered read cannot know the other subjects.
	ft := jobs.NewTally()
	if err := jobs.ReplayStatuses(ctx, e.js, "r1", []jobs.Status{jobs.StatusFailed, jobs.StatusConflict}, func(r jobs.Result) error {
		ft.Add(r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	wantFailed := map[jobs.Status]int{jobs.StatusFailed: want[jobs.StatusFailed] + 1, jobs.StatusConflict: want[jobs.StatusConflict]}
	if !reflect.DeepEqual(ft.Counts(), wantFailed) {
		t.Errorf("failed and conflict replay counts = %v, want %v", ft.Counts(), wantFailed)
	}
	if err := jobs.ReplayStatuses(ctx, e.js, "r1", []jobs.Status{"bogus"}, func(jobs.Result) error { return nil }); err == nil {
		t.Error("ReplayStatuses accepted an unknown status")
	}
	// The first result of a Safe wins.
	var first jobs.Result
	_ = jobs.Replay(ctx, e.js, "r1", func(r jobs.Result) error {
		if r.Safe.Name == safeName(0) {
			first = r
			return jobs.ErrStop
		}
		return nil
	})
	if first.Status != statuses[0] {
		t.Errorf("first result of %s = %s, want %s", safeName(0), first.Status, statuses[0])
	}
}

func TestFollowEnds(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	e.setup(t, nil)
	ctx := testutil.Context(t, 10*time.Second)

	// Replay of a run without results returns at once.
	if err := jobs.Replay(ctx, e.js, "empty", func(jobs.Result) error { t.Error("fn called"); return nil }); err != nil {
		t.Errorf("Replay(empty) = %v", err)
	}
	// Follow ends with ctx.
	fctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := jobs.Follow(fctx, e.js, "empty", func(jobs.Result) error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Follow after ctx end = %v, want DeadlineExceeded", err)
	}
	// A callback error is returned.
	if _, err := jobs.PublishResult(ctx, e.js, jobs.NewResult(testJob("r1", "S"), jobs.StatusApplied, time.Now())); err != nil {
		t.Fatal(err)
	}
	boom := fmt.Errorf("boom")
	if err := jobs.Follow(ctx, e.js, "r1", func(jobs.Result) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("Follow = %v, want boom", err)
	}
	if err := jobs.Follow(ctx, e.js, "bad run", nil); err == nil {
		t.Error("Follow accepted an invalid run id")
	}
}
