package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/natsembed"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/policy"
)

// A whole run on an embedded server: plan, work, follow.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir, _ := os.MkdirTemp("", "safeperm-example")
	defer os.RemoveAll(dir)

	srv, err := natsembed.Start(ctx, natsembed.Options{StoreDir: dir})
	if err != nil {
		panic(err)
	}
	defer srv.Shutdown()
	nc, _ := srv.Connect()
	defer nc.Close()
	js, _ := jetstream.New(nc)
	streams, err := jobs.Setup(ctx, js, jobs.DefaultConfig())
	if err != nil {
		panic(err)
	}

	// Planner: run record, lease, jobs.
	now := time.Now().UTC()
	run := jobs.Run{ID: jobs.NewRunID(now), Mode: jobs.ModeApply, Started: now}
	rule := policy.Directive{Rule: "psm-unlock", Member: jobs.MemberRef{Name: "PSMAppUsers", Type: "Group", SearchIn: "Vault"},
		Action: policy.ActionGrant, Permissions: pam.Perms(pam.ListAccounts, pam.UnlockAccounts)}
	if err := streams.Runs.Create(ctx, run); err != nil {
		panic(err)
	}
	lease, err := streams.Runs.AcquireLease(ctx, run.ID, "planner-1", 30*time.Second)
	if err != nil {
		panic(err)
	}
	pub := jobs.NewPublisher(js, zerolog.Nop(), jobs.PublisherOptions{})
	for _, name := range []string{"Linux Root", "Windows Admins", "DB Prod"} {
		j := jobs.Job{V: jobs.Version, Run: run.ID, Mode: run.Mode, Rules: []policy.Directive{rule},
			Safe: jobs.SafeRef{URLID: name, Name: name}, Created: now}
		if err := pub.PublishJob(ctx, j); err != nil {
			panic(err)
		}
	}
	stats, err := pub.Flush(ctx)
	if err != nil {
		panic(err)
	}
	run, _ = streams.Runs.Update(ctx, run.ID, func(r *jobs.Run) error {
		r.Planned, r.Published, r.PlanningDone, r.State = stats.Total(), stats.Total(), true, jobs.RunRunning
		return nil
	})
	_ = lease.Release(ctx)

	// Worker: one result per job, then ack.
	cc, _ := streams.Workers.Consume(func(m jetstream.Msg) {
		j, err := jobs.DecodeJob(m.Data())
		if errors.Is(err, jobs.ErrMalformed) {
			_ = jobs.DeadLetterMsg(ctx, js, m, "malformed: "+err.Error(), "worker-1")
			_ = m.TermWithReason("malformed")
			return
		}
		r := jobs.NewResult(j, jobs.StatusApplied, time.Now().UTC())
		after := &jobs.MemberState{Permissions: j.Rules[0].Permissions}
		r.Members = []jobs.MemberResult{{Rule: j.Rules[0].Rule, Member: j.Rules[0].Member, Status: jobs.StatusApplied,
			Change: jobs.ChangeAdd, After: after, Added: after.Permissions}}
		if _, err := jobs.PublishResult(ctx, js, r); err != nil {
			_ = m.NakWithDelay(time.Second)
			return
		}
		_ = m.DoubleAck(ctx)
	})
	defer cc.Stop()

	// Watcher: follow until every expected result is in.
	tally := jobs.NewTally()
	_ = jobs.Follow(ctx, js, run.ID, func(r jobs.Result) error {
		tally.Add(r)
		if tally.Done() == run.Expected() {
			return jobs.ErrStop
		}
		return nil
	})
	fmt.Println("published:", stats.Published, "done:", tally.Done(), "applied:", tally.Count(jobs.StatusApplied))
	// Output: published: 3 done: 3 applied: 3
}
