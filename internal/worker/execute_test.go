package worker

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
	"github.com/safeperm/safeperm/internal/policy"
	"github.com/safeperm/safeperm/internal/secret"
)

var want = pam.Perms(pam.ListAccounts, pam.UnlockAccounts)

// newSim starts a simulator and a logged-on client against it.
func newSim(t *testing.T, opts pamtest.Options) (*pamtest.Server, *pam.Client) {
	t.Helper()
	srv, err := pamtest.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pam.New(pam.Config{BaseURL: srv.URL, Username: pamtest.DefaultAdminUser,
		Password: secret.New(pamtest.DefaultAdminPassword), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.CloseIdleConnections()
		srv.Close()
	})
	if err := c.Logon(context.Background()); err != nil {
		t.Fatal(err)
	}
	return srv, c
}

// pick returns the first account Safe matching the class and access.
func pick(t *testing.T, srv *pamtest.Server, class pamtest.Class, access pamtest.Access) pamtest.SafeInfo {
	t.Helper()
	v := srv.Vault()
	for i := range v.Len() {
		in := v.Info(i)
		if !in.Internal && in.Class == class && in.Access == access && !in.Big {
			return in
		}
	}
	t.Fatalf("no Safe of class %s access %s", class, access)
	return pamtest.SafeInfo{}
}

// psmRule is the PSM unlock rule.
var psmRule = policy.Directive{Rule: "psm-unlock", Member: jobs.MemberRef{Name: pamtest.PSMAppUsers, Type: "Group", SearchIn: "Vault"},
	Action: policy.ActionGrant, Permissions: want}

func jobFor(in pamtest.SafeInfo, mode jobs.Mode) jobs.Job {
	return jobs.Job{V: jobs.Version, Run: "test-run", Mode: mode,
		Safe: jobs.SafeRef{URLID: in.URLID, Name: in.Name}, Rules: []policy.Directive{psmRule}}
}

// m0 is the result's entry for its first member (there is always one for
// a job that read its Safe).
func m0(t *testing.T, res jobs.Result) jobs.MemberResult {
	t.Helper()
	if len(res.Members) == 0 {
		t.Fatalf("result without member entries: %+v", res)
	}
	return res.Members[0]
}

// rollbackOf is the rollback job of an apply result.
func rollbackOf(in pamtest.SafeInfo, res jobs.Result) jobs.Job {
	j := jobFor(in, jobs.ModeRollback)
	j.Rules = nil
	for _, m := range res.Members {
		if m.Status == jobs.StatusApplied {
			j.Restore = append(j.Restore, jobs.Restore{Rule: m.Rule, Member: m.Member, To: m.Before, Expect: m.After})
		}
	}
	return j
}

func noSleep(context.Context, time.Duration) error { return nil }

func newExec(p PVWA) *Executor {
	return &Executor{PVWA: p, Retry: DefaultRetryPolicy(), Sleep: noSleep}
}

// otherMembers returns every member but PSMAppUsers, for "nothing else
// changed" checks.
func otherMembers(st pamtest.SafeState) []pamtest.MemberState {
	var out []pamtest.MemberState
	for _, m := range st.Members {
		if m.Name != pamtest.PSMAppUsers {
			out = append(out, m)
		}
	}
	return out
}

func sameMembers(t *testing.T, a, b []pamtest.MemberState) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("member count %d, want %d", len(a), len(b))
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Permissions != b[i].Permissions || !eqExp(a[i].Expiration, b[i].Expiration) {
			t.Errorf("member %s changed: %v -> %v", a[i].Name, a[i], b[i])
		}
	}
}

func eqExp(a, b *int64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func TestExecuteApply(t *testing.T) {
	srv, c := newSim(t, pamtest.Options{Safes: 400, Seed: 11})
	tests := []struct {
		class      pamtest.Class
		mode       jobs.Mode
		wantStatus jobs.Status
		wantCalls  int64
		wantWrites int64
	}{
		{pamtest.ClassCompliant, jobs.ModeApply, jobs.StatusUnchanged, 1, 0},
		{pamtest.ClassListOnly, jobs.ModeApply, jobs.StatusApplied, 2, 1},
		{pamtest.ClassListUseRetrieve, jobs.ModeApply, jobs.StatusApplied, 2, 1},
		{pamtest.ClassManyFlagsExpiring, jobs.ModeApply, jobs.StatusApplied, 2, 1},
		{pamtest.ClassAbsent, jobs.ModeApply, jobs.StatusApplied, 2, 1},
		{pamtest.ClassCompliant, jobs.ModeCheck, jobs.StatusUnchanged, 1, 0},
		{pamtest.ClassListOnly, jobs.ModeCheck, jobs.StatusDrift, 1, 0},
		{pamtest.ClassAbsent, jobs.ModeCheck, jobs.StatusDrift, 1, 0},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		t.Run(string(tc.mode)+"/"+string(tc.class), func(t *testing.T) {
			// A fresh Safe per case: an apply case changes its Safe.
			v := srv.Vault()
			var in pamtest.SafeInfo
			for i := range v.Len() {
				x := v.Info(i)
				if !x.Internal && x.Class == tc.class && x.Access == pamtest.AccessFull && !x.Big && !seen[x.Name] {
					in = x
					break
				}
			}
			if in.Name == "" {
				t.Fatal("no Safe left for the case")
			}
			seen[in.Name] = true
			before, _ := srv.SafeState(in.Name)
			srv.ResetStats()

			res, attempts, err := newExec(c).Execute(context.Background(), jobFor(in, tc.mode))
			if err != nil {
				t.Fatal(err)
			}
			st := srv.Stats()
			if res.Status != tc.wantStatus {
				t.Fatalf("status %s, want %s (%+v)", res.Status, tc.wantStatus, res)
			}
			if attempts != 1 {
				t.Errorf("attempts %d, want 1", attempts)
			}
			if st.RequestsTotal != tc.wantCalls {
				t.Errorf("PVWA calls %d, want %d (%v)", st.RequestsTotal, tc.wantCalls, st.Requests)
			}
			if st.MemberWrites.Total != tc.wantWrites {
				t.Errorf("writes %d, want %d", st.MemberWrites.Total, tc.wantWrites)
			}
			after, _ := srv.SafeState(in.Name)
			sameMembers(t, otherMembers(before), otherMembers(after))
			m, isMember := after.Member(pamtest.PSMAppUsers)

			// Before in the result is what the vault held.
			mr := m0(t, res)
			if in.PSMMember != (mr.Before != nil) {
				t.Errorf("result before %v, seeded member %v", mr.Before, in.PSMMember)
			}
			if mr.Before != nil && mr.Before.Permissions != in.PSMPermissions {
				t.Errorf("result before %s, seeded %s", mr.Before.Permissions, in.PSMPermissions)
			}
			if mr.Rule != "psm-unlock" || mr.Status != tc.wantStatus {
				t.Errorf("member entry %+v", mr)
			}
			switch tc.mode {
			case jobs.ModeCheck:
				if isMember != in.PSMMember || (isMember && m.Permissions != in.PSMPermissions) {
					t.Errorf("check mode changed the member: %v", m)
				}
				if tc.wantStatus == jobs.StatusDrift && mr.Added != in.PSMPermissions.Missing(want) {
					t.Errorf("would add %s, want %s", mr.Added, in.PSMPermissions.Missing(want))
				}
				if tc.wantStatus == jobs.StatusDrift && (mr.Change == jobs.ChangeAdd) == in.PSMMember {
					t.Errorf("change %q for a member that was present: %v", mr.Change, in.PSMMember)
				}
			case jobs.ModeApply:
				if !isMember {
					t.Fatal("PSMAppUsers is not a member after apply")
				}
				// Every flag held before is kept, the wanted ones added.
				if m.Permissions != in.PSMPermissions|want {
					t.Errorf("after %s, want %s", m.Permissions, in.PSMPermissions|want)
				}
				if in.PSMExpiration != 0 && (m.Expiration == nil || *m.Expiration != in.PSMExpiration) {
					t.Errorf("expiration %v, want %d kept", m.Expiration, in.PSMExpiration)
				}
				if mr.After == nil || mr.After.Permissions != m.Permissions {
					t.Errorf("result after %v, vault %s", mr.After, m.Permissions)
				}
			}
		})
	}
}

func TestExecutePermanentFailures(t *testing.T) {
	srv, c := newSim(t, pamtest.Options{Safes: 3000, Seed: 12})
	ro := pick(t, srv, pamtest.ClassListOnly, pamtest.AccessReadOnly)
	gone := pick(t, srv, pamtest.ClassAbsent, pamtest.AccessFull)
	if err := srv.DeleteSafe(gone.Name); err != nil {
		t.Fatal(err)
	}
	unknown := pick(t, srv, pamtest.ClassCompliant, pamtest.AccessFull)
	if unknown.Name == gone.Name {
		t.Fatal("same Safe picked twice")
	}

	tests := []struct {
		name     string
		job      jobs.Job
		wantCode string
		wantOp   string
		calls    int64
	}{
		{"read-only caller gets 403", jobFor(ro, jobs.ModeApply), "CAWS00001E", "PUT member", 2},
		{"deleted Safe", jobFor(gone, jobs.ModeApply), "SFWS0007", "GET member", 1},
		{"unknown principal", func() jobs.Job {
			j := jobFor(unknown, jobs.ModeApply)
			j.Rules = []policy.Directive{psmRule}
			j.Rules[0].Member.Name = "NoSuchGroup"
			return j
		}(), "CAWS00001E", "POST member", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.ResetStats()
			res, _, err := newExec(c).Execute(context.Background(), tc.job)
			if err != nil {
				t.Fatalf("permanent failure returned as retryable error: %v", err)
			}
			if res.Status != jobs.StatusFailed || res.ErrorCode != tc.wantCode || res.Op != tc.wantOp {
				t.Fatalf("got %s %q on %q (%s), want failed %s on %q", res.Status, res.ErrorCode, res.Op, res.Error, tc.wantCode, tc.wantOp)
			}
			if mr := m0(t, res); mr.Status != jobs.StatusFailed || mr.ErrorCode != tc.wantCode {
				t.Errorf("member entry %+v, want failed %s", mr, tc.wantCode)
			}
			if res.Op == "" {
				t.Errorf("no op in %+v", res)
			}
			if n := srv.Stats().RequestsTotal; n != tc.calls {
				t.Errorf("calls %d, want %d: a permanent error must not be retried", n, tc.calls)
			}
			if w := srv.Stats().MemberWrites.Total; w != 0 {
				t.Errorf("writes %d, want 0", w)
			}
		})
	}
}

// TestExecuteWriteAppliedThen500: the PVWA applies the write but answers
// an HTML 500. The retry must find it done: applied, one write, no failure.
func TestExecuteWriteAppliedThen500(t *testing.T) {
	for _, class := range []pamtest.Class{pamtest.ClassListOnly, pamtest.ClassAbsent} {
		t.Run(string(class), func(t *testing.T) {
			srv, c := newSim(t, pamtest.Options{Safes: 400, Seed: 13})
			in := pick(t, srv, class, pamtest.AccessFull)
			if err := srv.SetFaults(pamtest.Faults{PWriteApplied500: 1}); err != nil {
				t.Fatal(err)
			}
			res, attempts, err := newExec(c).Execute(context.Background(), jobFor(in, jobs.ModeApply))
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != jobs.StatusApplied {
				t.Fatalf("status %s (%s), want applied", res.Status, res.Error)
			}
			if attempts != 2 {
				t.Errorf("attempts %d, want 2", attempts)
			}
			st := srv.Stats()
			if st.MemberWrites.Total != 1 {
				t.Errorf("writes %d, want exactly 1", st.MemberWrites.Total)
			}
			mr := m0(t, res)
			if mr.Before.Equal(mr.After) || mr.After == nil || mr.After.Permissions.Missing(want) != 0 {
				t.Errorf("before %v after %v", mr.Before, mr.After)
			}
			if in.PSMMember != (mr.Before != nil) {
				t.Errorf("before %v should reflect the first read", mr.Before)
			}
		})
	}
}

// racer adds the member in the vault just before the worker's POST, as a
// second worker or an administrator would.
type racer struct {
	PVWA
	srv  *pamtest.Server
	safe string
	done bool
}

func (r *racer) AddMember(ctx context.Context, id string, m pam.NewMember) (pam.Member, error) {
	if !r.done {
		r.done = true
		exp := int64(2100000000)
		_ = r.srv.SetMember(r.safe, pamtest.MemberState{Name: m.Name,
			Permissions: pam.Perms(pam.UseAccounts, pam.ListAccounts), Expiration: &exp})
	}
	return r.PVWA.AddMember(ctx, id, m)
}

func TestExecutePostConflictReadsAndPuts(t *testing.T) {
	srv, c := newSim(t, pamtest.Options{Safes: 400, Seed: 14})
	in := pick(t, srv, pamtest.ClassAbsent, pamtest.AccessFull)
	srv.ResetStats()
	res, _, err := newExec(&racer{PVWA: c, srv: srv, safe: in.Name}).Execute(context.Background(), jobFor(in, jobs.ModeApply))
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != jobs.StatusApplied {
		t.Fatalf("status %s %s", res.Status, res.Error)
	}
	st, _ := srv.SafeState(in.Name)
	m, ok := st.Member(pamtest.PSMAppUsers)
	wantPerms := want.With(pam.UseAccounts)
	if !ok || m.Permissions != wantPerms {
		t.Fatalf("member %v, want %s: the flags the racer set must be kept", m, wantPerms)
	}
	if m.Expiration == nil || *m.Expiration != 2100000000 {
		t.Errorf("expiration %v, want kept", m.Expiration)
	}
	s := srv.Stats()
	if got := s.Count(pamtest.RouteAddMember, 409); got != 1 {
		t.Errorf("409s %d, want 1", got)
	}
	if got := s.Count(pamtest.RouteUpdateMember, 200); got != 1 {
		t.Errorf("PUTs %d, want 1", got)
	}
}

func TestExecuteTransientGivesUp(t *testing.T) {
	srv, c := newSim(t, pamtest.Options{Safes: 400, Seed: 15})
	in := pick(t, srv, pamtest.ClassListOnly, pamtest.AccessFull)
	if err := srv.SetFaults(pamtest.Faults{P500: 1}); err != nil {
		t.Fatal(err)
	}
	var slept []time.Duration
	e := newExec(c)
	e.Sleep = func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }
	_, attempts, err := e.Execute(context.Background(), jobFor(in, jobs.ModeApply))
	if err == nil || !errors.Is(err, pam.ErrTransient) {
		t.Fatalf("err %v, want a transient error to hand back", err)
	}
	if attempts != e.Retry.Attempts || len(slept) != e.Retry.Attempts-1 {
		t.Errorf("attempts %d slept %v", attempts, slept)
	}
	if len(slept) >= 2 && slept[1] < e.Retry.Base*2 {
		t.Errorf("backoff did not grow: %v", slept)
	}
	if w := srv.Stats().MemberWrites.Total; w != 0 {
		t.Errorf("writes %d", w)
	}
}

func TestExecuteRollback(t *testing.T) {
	srv, c := newSim(t, pamtest.Options{Safes: 400, Seed: 16})
	e := newExec(c)
	ctx := context.Background()

	// Apply, then roll back: the member returns to what it was.
	for _, class := range []pamtest.Class{pamtest.ClassManyFlagsExpiring, pamtest.ClassAbsent} {
		in := pick(t, srv, class, pamtest.AccessFull)
		orig, _ := srv.SafeState(in.Name)
		res, _, err := e.Execute(ctx, jobFor(in, jobs.ModeApply))
		if err != nil || res.Status != jobs.StatusApplied {
			t.Fatalf("%s apply: %v %v", class, res.Status, err)
		}
		got, _, err := e.Execute(ctx, rollbackOf(in, res))
		if err != nil || got.Status != jobs.StatusApplied {
			t.Fatalf("%s rollback: %v %v %s", class, got.Status, err, got.Error)
		}
		now, _ := srv.SafeState(in.Name)
		sameMembers(t, orig.Members, now.Members)
	}

	// Changed by hand after the run: conflict, left alone.
	in := pick(t, srv, pamtest.ClassListOnly, pamtest.AccessFull)
	res, _, err := e.Execute(ctx, jobFor(in, jobs.ModeApply))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.SetMember(in.Name, pamtest.MemberState{Name: pamtest.PSMAppUsers, Permissions: pam.Perms(pam.ListAccounts, pam.UnlockAccounts, pam.ViewAuditLog)}); err != nil {
		t.Fatal(err)
	}
	hand, _ := srv.SafeState(in.Name)
	srv.ResetStats()
	got, _, err := e.Execute(ctx, rollbackOf(in, res))
	if err != nil || got.Status != jobs.StatusConflict {
		t.Fatalf("rollback of a hand-changed Safe: %v %v", got.Status, err)
	}
	now, _ := srv.SafeState(in.Name)
	sameMembers(t, hand.Members, now.Members)
	if w := srv.Stats().MemberWrites.Total; w != 0 {
		t.Errorf("conflict wrote %d times", w)
	}
}

func TestOpOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want string
	}{
		{&pam.APIError{Method: "GET", Path: "/PasswordVault/API/Safes/Finance/Members/PSMAppUsers/"}, "GET member"},
		{&pam.APIError{Method: "GET", Path: "/PasswordVault/API/Safes/Finance/Members/"}, "list members"},
		{fmt.Errorf("wrapped: %w", &pam.APIError{Method: "PUT", Path: "/x/Members/PSMAppUsers"}), "PUT member"},
		{errRace, ""},
	}
	for _, tt := range tests {
		if got := opOf(tt.err); got != tt.want {
			t.Errorf("opOf(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
