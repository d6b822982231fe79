package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/testutil"
)

func testRun(id string) jobs.Run {
	return jobs.Run{
		ID:   id,
		Mode: jobs.ModeApply,
		Params: jobs.RunParams{
			Member:      testRule.Member,
			Permissions: testPerms,
			Policy:      &jobs.PolicyParams{File: "p.yaml", Digest: "abc", Rules: []string{"psm-unlock"}},
			PVWAHost:    "pvwa.example.com",
			PlannerHost: "host-1/42",
			Rate:        20,
		},
	}
}

func TestRunsCreateGetList(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	runs := e.setup(t, nil).Runs
	ctx := testutil.Context(t, 10*time.Second)

	if err := runs.Create(ctx, testRun("r2")); err != nil {
		t.Fatal(err)
	}
	if err := runs.Create(ctx, testRun("r1")); err != nil {
		t.Fatal(err)
	}
	if err := runs.Create(ctx, testRun("r1")); !errors.Is(err, jobs.ErrRunExists) {
		t.Errorf("second Create = %v, want ErrRunExists", err)
	}
	got, rev, err := runs.Get(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if rev == 0 || got.V != jobs.Version || got.State != jobs.RunPlanning || got.Started.IsZero() ||
		got.Params.Permissions != testPerms || got.Params.Member.Name != "PSMAppUsers" {
		t.Errorf("Get = %+v rev %d", got, rev)
	}
	if _, _, err := runs.Get(ctx, "nope"); !errors.Is(err, jobs.ErrRunNotFound) {
		t.Errorf("Get(missing) = %v, want ErrRunNotFound", err)
	}
	if err := runs.Create(ctx, jobs.Run{ID: "bad id", Mode: jobs.ModeApply}); err == nil {
		t.Error("Create accepted an invalid id")
	}
	// A lease must not show up as a run.
	lease, err := runs.AcquireLease(ctx, "r1", "me", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lease.Release(ctx) }()
	list, err := runs.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "r1" || list[1].ID != "r2" {
		t.Errorf("List = %+v, want r1, r2", list)
	}
}

// Concurrent updaters never lose an increment: Update retries on
// ErrKeyRevisionMismatch.
func TestRunsUpdateConcurrent(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	runs := e.setup(t, nil).Runs
	ctx := testutil.Context(t, 30*time.Second)
	if err := runs.Create(ctx, testRun("r1")); err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				_, err := runs.Update(ctx, "r1", func(r *jobs.Run) error {
					r.Planned++
					if w == 0 {
						r.Skipped++
					}
					return nil
				})
				if err != nil {
					t.Errorf("Update: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	got, _, err := runs.Get(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Planned != workers*each || got.Skipped != each {
		t.Errorf("Planned=%d Skipped=%d, want %d and %d", got.Planned, got.Skipped, workers*each, each)
	}

	// fn's error aborts without writing; changing the id is refused.
	stop := errors.New("no")
	if _, err := runs.Update(ctx, "r1", func(r *jobs.Run) error { r.Planned = 0; return stop }); !errors.Is(err, stop) {
		t.Errorf("Update with failing fn = %v", err)
	}
	if _, err := runs.Update(ctx, "r1", func(r *jobs.Run) error { r.ID = "r9"; return nil }); err == nil {
		t.Error("Update allowed changing the id")
	}
	if _, err := runs.Update(ctx, "missing", func(*jobs.Run) error { return nil }); !errors.Is(err, jobs.ErrRunNotFound) {
		t.Errorf("Update(missing) = %v, want ErrRunNotFound", err)
	}
	got, _, _ = runs.Get(ctx, "r1")
	if got.Planned != workers*each {
		t.Errorf("aborted updates changed Planned to %d", got.Planned)
	}
	done, err := runs.Update(ctx, "r1", func(r *jobs.Run) error {
		r.PlanningDone, r.Published, r.State, r.Ended = true, r.Planned, jobs.RunDone, time.Now().UTC()
		return nil
	})
	if err != nil || done.Expected() != workers*each+each || !done.State.Final() {
		t.Errorf("final Update = %+v, %v", done, err)
	}
}

func TestLease(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	runs := e.setup(t, nil).Runs
	ctx := testutil.Context(t, 30*time.Second)
	const ttl = time.Second

	a, err := runs.AcquireLease(ctx, "r1", "planner-a", ttl)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := runs.AcquireLease(ctx, "r1", "planner-b", ttl); !errors.Is(err, jobs.ErrLeaseHeld) {
		t.Fatalf("second holder = %v, want ErrLeaseHeld", err)
	}
	// Another run's lease is independent.
	other, err := runs.AcquireLease(ctx, "r2", "planner-b", ttl)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Release(ctx); err != nil {
		t.Fatal(err)
	}

	// Renewal keeps it held well past its TTL.
	held := time.Now().Add(3 * ttl)
	for time.Now().Before(held) {
		if _, err := runs.AcquireLease(ctx, "r1", "planner-b", ttl); !errors.Is(err, jobs.ErrLeaseHeld) {
			t.Fatalf("while renewed: AcquireLease = %v, want ErrLeaseHeld", err)
		}
		select {
		case <-a.Lost():
			t.Fatal("lease lost while renewing")
		case <-time.After(200 * time.Millisecond):
		}
	}

	// Release frees it at once.
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Release(ctx); err != nil {
		t.Errorf("second Release: %v", err)
	}
	b, err := runs.AcquireLease(ctx, "r1", "planner-b", ttl)
	if err != nil {
		t.Fatalf("after Release: %v", err)
	}

	// The same holder takes its own lease over (restart with a stable id).
	bctx, bcancel := context.WithCancel(ctx)
	b2, err := runs.AcquireLease(bctx, "r1", "planner-b", ttl)
	if err != nil {
		t.Fatalf("same-holder takeover: %v", err)
	}
	// The first handle notices it is superseded at its next renewal.
	select {
	case <-b.Lost():
	case <-time.After(5 * ttl):
		t.Error("superseded lease not reported lost")
	}
	// Releasing the superseded handle leaves the new lease of the same
	// holder alone.
	if err := b.Release(ctx); err != nil {
		t.Fatalf("Release of the superseded lease: %v", err)
	}
	if _, err := runs.AcquireLease(ctx, "r1", "planner-c", ttl); !errors.Is(err, jobs.ErrLeaseHeld) {
		t.Fatalf("after the superseded handle's Release: AcquireLease = %v, want ErrLeaseHeld", err)
	}

	// A holder that stops renewing (its ctx ended, e.g. it crashed) loses
	// the lease after the TTL, and someone else gets it.
	bcancel()
	<-b2.Lost()
	testutil.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error {
		c, err := runs.AcquireLease(ctx, "r1", "planner-c", ttl)
		if err != nil {
			return fmt.Errorf("planner-c: %w", err)
		}
		return c.Release(ctx)
	})

	if _, err := runs.AcquireLease(ctx, "r1", "x", 10*time.Millisecond); err == nil {
		t.Error("AcquireLease accepted a 10ms TTL")
	}
	if _, err := runs.AcquireLease(ctx, "r1", "", ttl); err == nil {
		t.Error("AcquireLease accepted an empty holder")
	}
}
