package watch_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/natsembed/natstest"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/testutil"
	"github.com/safeperm/safeperm/internal/watch"
)

// env is an embedded server with safeperm's streams set up.
type env struct {
	js      jetstream.JetStream
	streams *jobs.Streams
}

// startEnv starts an in-process embedded server (file storage in a temp
// dir), connects and runs jobs.Setup. Torn down with the test.
func startEnv(t testing.TB) *env {
	t.Helper()
	e := natstest.Start(t, "")
	return &env{js: e.JS, streams: e.Setup(t, nil)}
}

var testPerms = pam.Perms(pam.ListAccounts, pam.UnlockAccounts)

// createRun stores a run record for id.
func (e *env) createRun(t testing.TB, run jobs.Run) {
	t.Helper()
	if run.Params.Member.Name == "" {
		run.Params.Member = jobs.MemberRef{Name: "PSMAppUsers", Type: "Group"}
		run.Params.Permissions = testPerms
	}
	if err := e.streams.Runs.Create(testutil.Context(t, 5*time.Second), run); err != nil {
		t.Fatalf("create run: %v", err)
	}
}

// update changes the run record.
func (e *env) update(t testing.TB, id string, fn func(*jobs.Run)) {
	t.Helper()
	if _, err := e.streams.Runs.Update(testutil.Context(t, 5*time.Second), id, func(r *jobs.Run) error { fn(r); return nil }); err != nil {
		t.Fatalf("update run: %v", err)
	}
}

// res is a result to publish.
type res struct {
	safe   string
	status jobs.Status
}

// publish publishes one result per res for run.
func (e *env) publish(t testing.TB, run string, mode jobs.Mode, rs ...res) {
	t.Helper()
	ctx := testutil.Context(t, 10*time.Second)
	for _, x := range rs {
		r := jobs.Result{
			V: jobs.Version, Run: run, Mode: mode, Safe: jobs.SafeRef{URLID: x.safe, Name: x.safe},
			Status: x.status, Attempts: 1, Worker: "test", Time: time.Now().UTC(),
		}
		m := jobs.MemberResult{Rule: "psm-unlock", Member: jobs.MemberRef{Name: "PSMAppUsers", Type: "Group"}, Status: x.status}
		switch x.status {
		case jobs.StatusApplied:
			m.After, m.Change, m.Added = &jobs.MemberState{Permissions: testPerms}, jobs.ChangeAdd, testPerms
		case jobs.StatusDrift:
			m.Before = &jobs.MemberState{Permissions: pam.Perms(pam.ListAccounts)}
			m.After, m.Change, m.Added = &jobs.MemberState{Permissions: testPerms}, jobs.ChangeUpdate, pam.Perms(pam.UnlockAccounts)
		case jobs.StatusFailed, jobs.StatusConflict:
			r.ErrorCode, r.Error = "PASWS013E", "member changed\x1b[31m under us"
			m.ErrorCode, m.Error = r.ErrorCode, r.Error
		case jobs.StatusSkipped:
			r.Reason = "internal Safe"
		}
		if x.status != jobs.StatusSkipped {
			r.Members = []jobs.MemberResult{m}
		}
		if _, err := jobs.PublishResult(ctx, e.js, r); err != nil {
			t.Fatalf("publish result: %v", err)
		}
	}
}

// many returns n results named "<prefix> NNN" with status st.
func many(prefix string, n int, st jobs.Status) []res {
	out := make([]res, n)
	for i := range out {
		out[i] = res{fmt.Sprintf("%s %03d", prefix, i), st}
	}
	return out
}

// opts returns fast Options for tests.
func (e *env) opts(out *testutil.Buffer, mode watch.ViewMode) watch.Options {
	o := watch.Options{Mode: mode, Runs: e.streams.Runs, Poll: 20 * time.Millisecond,
		Interval: 50 * time.Millisecond, WaitForRun: -1, Logger: zerolog.Nop()}
	if out != nil {
		o.Out = out
	}
	return o
}

// watchAsync runs Watch in the background; wait returns its results.
func watchAsync(ctx context.Context, js jetstream.JetStream, id string, o watch.Options) (wait func() (watch.Outcome, error)) {
	type ret struct {
		o   watch.Outcome
		err error
	}
	ch := make(chan ret, 1)
	go func() {
		o, err := watch.Watch(ctx, js, id, o)
		ch <- ret{o, err}
	}()
	return func() (watch.Outcome, error) {
		r := <-ch
		return r.o, r.err
	}
}
