package planner

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/natsembed/natstest"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
	"github.com/safeperm/safeperm/internal/policy"
	"github.com/safeperm/safeperm/internal/scope"
	"github.com/safeperm/safeperm/internal/secret"
	"github.com/safeperm/safeperm/internal/testutil"
)

type env struct {
	js      jetstream.JetStream
	streams *jobs.Streams
	srv     *pamtest.Server
	client  *pam.Client
}

func newEnv(t *testing.T, safes int) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ne := natstest.Start(t, "")
	js, st := ne.JS, ne.Setup(t, nil)
	srv, err := pamtest.NewServer(pamtest.Options{Safes: safes, Seed: 31})
	if err != nil {
		t.Fatal(err)
	}
	c, err := pam.New(pam.Config{BaseURL: srv.URL, Username: pamtest.DefaultAdminUser, Password: secret.New(pamtest.DefaultAdminPassword)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Logon(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.CloseIdleConnections()
		srv.Close()
	})
	return &env{js: js, streams: st, srv: srv, client: c}
}

func (e *env) plan(run string, f scope.Filter) Plan {
	return Plan{Run: run, Mode: jobs.ModeApply, Policy: policy.FromFlags(jobs.MemberRef{Name: "PSMAppUsers", Type: "Group", SearchIn: "Vault"},
		pam.Perms(pam.ListAccounts, pam.UnlockAccounts)), Filter: f, Logger: zerolog.Nop()}
}

// jobsIn counts the jobs of run waiting in the work queue.
func (e *env) jobsIn(t *testing.T, run string) int {
	t.Helper()
	info, err := e.streams.Jobs.Info(context.Background(), jetstream.WithSubjectFilter(jobs.JobsFilter(run)))
	if err != nil {
		t.Fatal(err)
	}
	return len(info.State.Subjects)
}

func list(t *testing.T, text string) *scope.List {
	t.Helper()
	l, err := scope.ParseList(strings.NewReader(text), "test.txt")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestStartScope(t *testing.T) {
	e := newEnv(t, 300)
	v := e.srv.Vault()
	var account, internal []string
	for i := range v.Len() {
		in := v.Info(i)
		switch {
		case in.Access == pamtest.AccessHidden:
		case in.Internal:
			internal = append(internal, in.Name)
		default:
			account = append(account, in.Name)
		}
	}
	excluded := account[3]
	f := scope.Filter{
		// The include list names an internal Safe, an excluded one, two
		// account Safes (one in another case) and one that does not exist.
		Include: list(t, "PSMRecordings\n"+excluded+"\n"+account[5]+"\n"+strings.ToUpper(account[7])+"\nNo Such Safe\n"),
		Exclude: list(t, excluded+"\n"),
	}
	rec, sum, err := Start(context.Background(), e.js, e.streams, SafesSource(e.client), e.plan("run-scope", f), jobs.RunParams{}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Planned != 2 || rec.Published != 2 || e.jobsIn(t, "run-scope") != 2 {
		t.Errorf("planned %d published %d queued %d, want 2", sum.Planned, rec.Published, e.jobsIn(t, "run-scope"))
	}
	if sum.Listed != len(account)+len(internal) || rec.Expected() != sum.Listed {
		t.Errorf("listed %d expected %d, want %d", sum.Listed, rec.Expected(), len(account)+len(internal))
	}
	if sum.Skipped[scope.ReasonInternal] != len(internal) || sum.Skipped[scope.ReasonExcluded] != 1 {
		t.Errorf("skipped %v, want %d internal and 1 excluded", sum.Skipped, len(internal))
	}
	if len(sum.Unmatched) != 1 || sum.Unmatched[0] != "No Such Safe" {
		t.Errorf("unmatched %v", sum.Unmatched)
	}
	if !rec.PlanningDone || rec.State != jobs.RunRunning {
		t.Errorf("record %+v", rec)
	}
	// The skipped results are published by the planner, one per Safe.
	var skipped []jobs.Result
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := jobs.Replay(ctx, e.js, "run-scope", func(r jobs.Result) error {
		skipped = append(skipped, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(skipped) != rec.Skipped {
		t.Errorf("skipped results %d, record says %d", len(skipped), rec.Skipped)
	}
	for _, r := range skipped {
		if r.Status != jobs.StatusSkipped || r.Reason == "" {
			t.Errorf("%+v", r)
		}
		if r.Safe.Name == "PSMRecordings" && !strings.Contains(r.Reason, "internal") {
			t.Errorf("PSMRecordings skipped for %q, want internal", r.Reason)
		}
	}
}

// TestStartCPMSafesFromManagingCPM: Safes of a CPM named only in other
// Safes' managingCPM are internal.
func TestStartCPMSafesFromManagingCPM(t *testing.T) {
	e := newEnv(t, 200)
	_, sum, err := Start(context.Background(), e.js, e.streams, SafesSource(e.client), e.plan("run-cpm", scope.Filter{}), jobs.RunParams{}, "test")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range sum.CPMs {
		found = found || c == "cyberark-connec"
	}
	if !found {
		t.Fatalf("CPMs %v, want cyberark-connec learnt from managingCPM", sum.CPMs)
	}
	if e.jobsIn(t, "run-cpm") != sum.Planned {
		t.Fatal("queued jobs differ from planned")
	}
	// None of the queued jobs is for an internal Safe.
	info, _ := e.streams.Jobs.Info(context.Background(), jetstream.WithSubjectFilter(jobs.JobsFilter("run-cpm")))
	for subj := range info.State.Subjects {
		for _, n := range []string{"cyberark-connec_Accounts", "PasswordManager_Info", "VaultInternal"} {
			if subj == jobs.JobSubject("run-cpm", jobs.SafeKey(n)) {
				t.Errorf("job published for internal Safe %s", n)
			}
		}
	}
}

// TestStartTwice: two planners for the same run id, at once and one after
// the other, publish each job once.
func TestStartTwice(t *testing.T) {
	e := newEnv(t, 400)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	sums := make([]Summary, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, sums[i], errs[i] = Start(context.Background(), e.js, e.streams, SafesSource(e.client), e.plan("run-twice", scope.Filter{}), jobs.RunParams{}, []string{"a", "b"}[i])
		}()
	}
	wg.Wait()
	planned := 0
	for i, err := range errs {
		if err != nil && !errors.Is(err, jobs.ErrLeaseHeld) {
			t.Fatalf("planner %d: %v", i, err)
		}
		planned = max(planned, sums[i].Planned)
	}
	if planned == 0 {
		t.Fatal("no planner published")
	}
	info, _ := e.streams.Jobs.Info(context.Background())
	if int(info.State.Msgs) != planned {
		t.Fatalf("queued %d jobs, want %d: each once", info.State.Msgs, planned)
	}

	// A restart with the same id re-publishes nothing new.
	rec, sum, err := Start(context.Background(), e.js, e.streams, SafesSource(e.client), e.plan("run-twice", scope.Filter{}), jobs.RunParams{}, "c")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Publish.Published != 0 || sum.Publish.Duplicates+sum.Publish.AlreadyPending != planned {
		t.Errorf("re-plan stats %+v, want all %d dropped", sum.Publish, planned)
	}
	info, _ = e.streams.Jobs.Info(context.Background())
	if int(info.State.Msgs) != planned || rec.Published != planned {
		t.Errorf("queued %d, record %d, want %d", info.State.Msgs, rec.Published, planned)
	}

	// Once done, the id cannot be planned again.
	if _, err := Finish(context.Background(), e.streams.Runs, "run-twice"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Start(context.Background(), e.js, e.streams, SafesSource(e.client), e.plan("run-twice", scope.Filter{}), jobs.RunParams{}, "d"); !errors.Is(err, ErrRunFinished) {
		t.Fatalf("err %v, want ErrRunFinished", err)
	}
	// Other parameters under an existing id are refused.
	p := e.plan("run-other", scope.Filter{})
	params := func(p *policy.Policy) jobs.RunParams {
		return jobs.RunParams{Policy: &jobs.PolicyParams{Digest: p.Digest()}}
	}
	if _, _, err := Start(context.Background(), e.js, e.streams, SafesSource(e.client), p, params(p.Policy), "e"); err != nil {
		t.Fatal(err)
	}
	p.Policy = policy.FromFlags(jobs.MemberRef{Name: "PSMAppUsers", Type: "Group"}, pam.Perms(pam.ListAccounts))
	if _, _, err := Start(context.Background(), e.js, e.streams, SafesSource(e.client), p, params(p.Policy), "e"); err == nil || !strings.Contains(err.Error(), "other parameters") {
		t.Fatalf("err %v, want other parameters", err)
	}
}

// TestStartListingSurvivesTransientErrors: HTML 500s and 429s while paging
// the Safes neither stop planning nor skip or repeat a Safe.
func TestStartListingSurvivesTransientErrors(t *testing.T) {
	listBackoff = time.Millisecond
	e := newEnv(t, 400)
	clean, _, err := Start(context.Background(), e.js, e.streams, SafesSource(e.client), e.plan("run-clean", scope.Filter{}), jobs.RunParams{}, "t")
	if err != nil {
		t.Fatal(err)
	}
	c, err := pam.New(pam.Config{BaseURL: e.srv.URL, Username: pamtest.DefaultAdminUser,
		Password: secret.New(pamtest.DefaultAdminPassword), SafesPageSize: 25})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	if err := e.srv.SetFaults(pamtest.Faults{P500: 0.25, P429: 0.1}); err != nil {
		t.Fatal(err)
	}
	rec, sum, err := Start(context.Background(), e.js, e.streams, SafesSource(c), e.plan("run-faults", scope.Filter{}), jobs.RunParams{}, "t")
	if err != nil {
		t.Fatalf("planning failed on transient errors: %v", err)
	}
	st := e.srv.Stats()
	if st.Faults.Random500+st.Faults.Random429 == 0 {
		t.Fatal("no fault was injected; the test proves nothing")
	}
	if sum.Listed != clean.Expected() || rec.Published != clean.Published || rec.Skipped != clean.Skipped {
		t.Fatalf("with faults: listed %d published %d skipped %d; without: %d %d %d",
			sum.Listed, rec.Published, rec.Skipped, clean.Expected(), clean.Published, clean.Skipped)
	}
	if e.jobsIn(t, "run-faults") != clean.Published {
		t.Fatalf("queued %d jobs, want %d", e.jobsIn(t, "run-faults"), clean.Published)
	}
	t.Logf("listing survived %d HTML 500s and %d 429s", st.Faults.Random500, st.Faults.Random429)
}

// TestStartPolicy: each job carries exactly the rules that apply to its
// Safe (patterns, except, managedBy), and a Safe in scope that no rule
// applies to is reported skipped, not sent to the workers.
func TestStartPolicy(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	ne := natstest.Start(t, "")
	js, st := ne.JS, ne.Setup(t, nil)
	srv, err := pamtest.NewServer(pamtest.Options{Safes: 600, Seed: 33, PolicyMembers: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := pam.New(pam.Config{BaseURL: srv.URL, Username: pamtest.DefaultAdminUser, Password: secret.New(pamtest.DefaultAdminPassword)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	if err := c.Logon(ctx); err != nil {
		t.Fatal(err)
	}
	auditors := policy.Rule{Name: "auditors", Safes: []scope.Pattern{scope.NewPattern("DB-*"), scope.NewPattern("db.*")},
		Except: []scope.Pattern{scope.NewPattern("db.test.*")}, Member: jobs.MemberRef{Name: pamtest.SecurityAuditors, Type: "Group"},
		Action: policy.ActionGrant, Permissions: pam.Perms(pam.ListAccounts)}
	linux := policy.Rule{Name: "linux", Safes: []scope.Pattern{scope.NewPattern("Linux*")}, ManagedBy: []string{pamtest.CPMLinux},
		Member: jobs.MemberRef{Name: pamtest.LinuxAdmins, Type: "Group"}, Action: policy.ActionExactly, Permissions: pam.Perms(pam.ListAccounts)}
	pol := &policy.Policy{Version: 1, Rules: []policy.Rule{auditors, linux}}
	p := Plan{Run: "run-policy", Mode: jobs.ModeCheck, Policy: pol, Logger: zerolog.Nop()}
	rec, sum, err := Start(ctx, js, st, SafesSource(c), p, jobs.RunParams{}, "t")
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, jobs.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	v := srv.Vault()
	wantJobs, noRule := 0, 0
	for i := range v.Len() {
		in := v.Info(i)
		if in.Access == pamtest.AccessHidden || in.Internal {
			continue
		}
		var want []string
		name := strings.ToLower(in.Name)
		if (strings.HasPrefix(name, "db-") || strings.HasPrefix(name, "db.")) && !strings.HasPrefix(name, "db.test.") {
			want = append(want, "auditors")
		}
		if strings.HasPrefix(name, "linux") && in.ManagingCPM == pamtest.CPMLinux {
			want = append(want, "linux")
		}
		if len(want) == 0 {
			noRule++
			continue
		}
		wantJobs++
		msg, err := stream.GetLastMsgForSubject(ctx, jobs.JobSubject("run-policy", jobs.SafeKey(in.Name)))
		if err != nil {
			t.Fatalf("%s: no job (%v), want rules %v", in.Name, err, want)
		}
		j, err := jobs.DecodeJob(msg.Data)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range j.Rules {
			got = append(got, d.Rule)
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s (%s): rules %v, want %v", in.Name, in.ManagingCPM, got, want)
		}
	}
	if wantJobs == 0 || noRule == 0 {
		t.Fatalf("vault has %d Safes with rules and %d without: the test proves nothing", wantJobs, noRule)
	}
	if rec.Published != wantJobs || sum.NoRule != noRule {
		t.Errorf("published %d, no rule %d; want %d and %d", rec.Published, sum.NoRule, wantJobs, noRule)
	}
	var skippedNoRule int
	if err := jobs.Replay(ctx, js, "run-policy", func(r jobs.Result) error {
		if r.Status == jobs.StatusSkipped && r.Reason == noRuleReason {
			skippedNoRule++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if skippedNoRule != noRule {
		t.Errorf("%d skipped results say no rule applies, want %d", skippedNoRule, noRule)
	}
}

// TestCPMPassByPage: the first pass reads the pages side by side and
// learns the same CPM users as the pass in order, each page once; the plan
// is the same.
func TestCPMPassByPage(t *testing.T) {
	e := newEnv(t, 1200)
	c, err := pam.New(pam.Config{BaseURL: e.srv.URL, Username: pamtest.DefaultAdminUser,
		Password: secret.New(pamtest.DefaultAdminPassword), SafesPageSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	ctx := testutil.Context(t, 30*time.Second)
	if err := c.Logon(ctx); err != nil {
		t.Fatal(err)
	}
	var inOrder []string
	for s, err := range c.Safes(ctx, pam.SafesOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		inOrder = append(inOrder, s.ManagingCPM)
	}
	e.srv.ResetStats()
	var byPage []string
	head, err := managingCPMs(ctx, c, zerolog.Nop(), func(m string) {
		if !slices.Contains(byPage, m) {
			byPage = append(byPage, m)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	var distinct []string
	for _, m := range inOrder {
		if !slices.Contains(distinct, m) {
			distinct = append(distinct, m)
		}
	}
	if strings.Join(byPage, "|") != strings.Join(distinct, "|") {
		t.Fatalf("by page: %q; in order: %q; want the same, in the order they first appear", byPage, distinct)
	}
	if len(head) != 50*8 {
		t.Errorf("kept %d Safes, want the first 8 pages of 50", len(head))
	}
	pages := (len(inOrder) + 49) / 50
	if got := e.srv.Stats().Count(pamtest.RouteSafes, 200); int(got) != pages {
		t.Errorf("%d page requests, want %d (each page once)", got, pages)
	}
	// The second pass reads on after the kept pages: together in order.
	var second []string
	for s, err := range withHead(head, allSafesFrom(ctx, c, zerolog.Nop(), len(head))) {
		if err != nil {
			t.Fatal(err)
		}
		second = append(second, s.ManagingCPM)
	}
	if strings.Join(second, "|") != strings.Join(inOrder, "|") {
		t.Errorf("second pass: %d Safes, want the %d of the listing, in order", len(second), len(inOrder))
	}
}
