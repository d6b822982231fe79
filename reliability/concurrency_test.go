package reliability

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
	"github.com/safeperm/safeperm/internal/policy"
	"github.com/safeperm/safeperm/internal/proctest"
)

// TestConcurrentPlanners starts two planners at the same moment for the
// same run id: each Safe must be queued once and reported once.
func TestConcurrentPlanners(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	t.Parallel()
	dir := t.TempDir()
	s := startSim(t, simOptions{Safes: 800, Seed: 67, Latency: 2 * time.Millisecond})
	ns := startNATS(t, dir, "")
	js := connect(t, ns.URL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The streams exist first, so both planners race on the run, not on Setup.
	if _, err := jobs.Setup(ctx, js, jobs.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	const run = "twin-1"
	var ps []*proc
	for i := range 2 {
		ps = append(ps, start(t, fmt.Sprintf("planner-%d", i+1), s.env(), bin(t, "planner"), plannerArgs(s, ns.URL, "--run-id", run, "--watch=false", "--rate", "0")...))
	}
	var codes []int
	for _, p := range ps {
		code := p.Wait(t, 2*time.Minute)
		codes = append(codes, code)
		if code != 0 && code != 2 {
			t.Errorf("%s exit %d\n%s", p.Name, code, proctest.Tail(p.Stderr.String(), 2000))
		}
		if code == 2 {
			logFigure(t, "concurrent planners: %s refused: %s", p.Name, strings.TrimSpace(grepLine(p.Stderr.String(), "planner:")))
		}
	}
	// Before any worker: the jobs stream holds each Safe once.
	st, err := js.Stream(ctx, jobs.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(jobs.JobsFilter(run)))
	if err != nil {
		t.Fatal(err)
	}
	inScope := len(s.find(s.vault.Len(), func(in pamtest.SafeInfo) bool { return !in.Internal && in.Access != pamtest.AccessHidden }))
	queuedTwice := 0
	for _, n := range info.State.Subjects {
		if n != 1 {
			queuedTwice++
		}
	}
	if len(info.State.Subjects) != inScope || queuedTwice != 0 || int(info.State.Msgs) != inScope {
		t.Errorf("jobs stream: %d messages on %d subjects (%d with more than one), want %d Safes once each", info.State.Msgs, len(info.State.Subjects), queuedTwice, inScope)
	}
	w1 := startWorker(t, s, ns.URL, "worker-1", "--rate", "0")
	w2 := startWorker(t, s, ns.URL, "worker-2", "--rate", "0")
	out := waitRun(t, js, run, 2*time.Minute)
	w1.Stop(10 * time.Second)
	w2.Stop(10 * time.Second)
	v := verify(t, s, pamtest.PSMAppUsers, wantPerms, inScopeDefault)
	perSafe, total := rawResults(t, js, run)
	checkRun(t, s, out, v, perSafe, total, s.stats(t))
	logFigure(t, "concurrent planners: exits %v; %d jobs queued for %d Safes (queued twice %d); results %d for %d expected, duplicate results %d; converged %d, foreign flags changed %d",
		codes, info.State.Msgs, inScope, queuedTwice, total, out.Run.Expected(), duplicates(perSafe), v.Converged, v.ForeignChanged)
}

// TestConcurrentWorkersSameSafe publishes the same jobs under two run ids
// while two worker processes run, so both work on each Safe at about the
// same time. Each Safe must end compliant with nothing else lost, and each
// run must report each Safe once.
func TestConcurrentWorkersSameSafe(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	t.Parallel()
	dir := t.TempDir()
	s := startSim(t, simOptions{Safes: 400, Seed: 68, Latency: 5 * time.Millisecond, Jitter: 5 * time.Millisecond})
	ns := startNATS(t, dir, "")
	js := connect(t, ns.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	streams, err := jobs.Setup(ctx, js, jobs.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	targets := s.find(400, inScopeDefault)
	runs := []string{"same-a", "same-b"}
	pub := jobs.NewPublisher(js, zerolog.Nop(), jobs.PublisherOptions{})
	for _, r := range runs {
		if err := streams.Runs.Create(ctx, jobs.Run{ID: r, Mode: jobs.ModeApply, Planned: len(targets), Published: len(targets), PlanningDone: true, State: jobs.RunRunning}); err != nil {
			t.Fatal(err)
		}
	}
	// Interleaved: a's job for a Safe, then b's, so two workers take them
	// at once.
	for _, in := range targets {
		for _, r := range runs {
			j := jobs.Job{V: jobs.Version, Run: r, Mode: jobs.ModeApply, Safe: jobs.SafeRef{URLID: in.URLID, Name: in.Name},
				Rules: []policy.Directive{{Rule: "psm-unlock", Member: jobs.MemberRef{Name: pamtest.PSMAppUsers, Type: "Group", SearchIn: "Vault"},
					Action: policy.ActionGrant, Permissions: wantPerms}}, Created: time.Now().UTC()}
			if err := pub.PublishJob(ctx, j); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	w1 := startWorker(t, s, ns.URL, "worker-1", "--rate", "0", "--concurrency", "8")
	w2 := startWorker(t, s, ns.URL, "worker-2", "--rate", "0", "--concurrency", "8")
	var outs []runOutcome
	for _, r := range runs {
		outs = append(outs, waitRun(t, js, r, 2*time.Minute))
	}
	w1.Stop(10 * time.Second)
	w2.Stop(10 * time.Second)
	isTarget := map[string]bool{}
	for _, in := range targets {
		isTarget[in.Name] = true
	}
	v := verify(t, s, pamtest.PSMAppUsers, wantPerms, func(in pamtest.SafeInfo) bool { return isTarget[in.Name] })
	for _, p := range v.Problems {
		t.Error(p)
	}
	dups := 0
	for _, r := range runs {
		perSafe, total := rawResults(t, js, r)
		dups += duplicates(perSafe)
		if total != len(targets) || len(perSafe) != len(targets) {
			t.Errorf("run %s: %d results for %d Safes, want %d once each", r, total, len(perSafe), len(targets))
		}
	}
	bothApplied, failed := 0, 0
	for _, in := range targets {
		a, b := outs[0].Byname[in.Name], outs[1].Byname[in.Name]
		if a.Status == jobs.StatusApplied && b.Status == jobs.StatusApplied {
			bothApplied++
		}
		if a.Status == jobs.StatusFailed || b.Status == jobs.StatusFailed {
			failed++
			t.Errorf("Safe %q: %s %s / %s %s", in.Name, a.Status, a.Error, b.Status, b.Error)
		}
	}
	st := s.stats(t)
	if v.NotConverged != 0 || v.ForeignChanged != 0 || dups != 0 {
		t.Errorf("not converged %d, foreign changes %d, duplicate results %d", v.NotConverged, v.ForeignChanged, dups)
	}
	logFigure(t, "same Safe, two workers: %d Safes x 2 runs; converged %d, foreign flags changed %d, failed %d, duplicate results %d; both runs wrote %d Safes; member writes %d on %d changed Safes",
		len(targets), v.Converged, v.ForeignChanged, failed, dups, bothApplied, st.MemberWrites.Total, v.Changed)
}
