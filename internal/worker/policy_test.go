package worker

import (
	"context"
	"strings"
	"testing"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
	"github.com/safeperm/safeperm/internal/policy"
)

var (
	helpDeskRevoke = policy.Directive{Rule: "helpdesk-no-retrieve", Member: policy.Member{Name: pamtest.HelpDesk, Type: "Group", SearchIn: "Vault"},
		Action: policy.ActionRevoke, Permissions: pam.Perms(pam.RetrieveAccounts)}
	domainMove = policy.Directive{Rule: "domain-move", Member: policy.Member{Name: pamtest.NewcorpOpsAdmins, Type: "Group", SearchIn: "Vault"},
		Action: policy.ActionCopy, Source: pamtest.DomainOpsAdmins, RemoveSource: true}
	offboard = policy.Directive{Rule: "offboard-jdoe", Member: policy.Member{Name: pamtest.DepartedUser, Type: "User", SearchIn: "Vault"},
		Action: policy.ActionAbsent}
	auditorsRead = policy.Directive{Rule: "auditors-read", Member: policy.Member{Name: pamtest.SecurityAuditors, Type: "Group", SearchIn: "Vault"},
		Action: policy.ActionGrant, Permissions: pam.Perms(pam.ListAccounts, pam.ViewAuditLog, pam.ViewSafeMembers)}
	linuxExact = policy.Directive{Rule: "linux-exact", Member: policy.Member{Name: pamtest.LinuxAdmins, Type: "Group", SearchIn: "Vault"},
		Action: policy.ActionExactly, Permissions: pam.Perms(pam.ListAccounts, pam.UseAccounts, pam.RetrieveAccounts)}
)

// pickWith returns an account Safe (full access, not big) whose seeded
// members satisfy ok.
func pickWith(t *testing.T, srv *pamtest.Server, ok func(in pamtest.SafeInfo, members map[string]pamtest.MemberState) bool) pamtest.SafeInfo {
	t.Helper()
	v := srv.Vault()
	for i := range v.Len() {
		in := v.Info(i)
		if in.Internal || in.Access != pamtest.AccessFull || in.Big {
			continue
		}
		if ok(in, byMember(v.Members(i))) {
			return in
		}
	}
	t.Fatal("no Safe fits")
	return pamtest.SafeInfo{}
}

func byMember(ms []pamtest.MemberState) map[string]pamtest.MemberState {
	out := map[string]pamtest.MemberState{}
	for _, m := range ms {
		out[strings.ToLower(m.Name)] = m
	}
	return out
}

func has(ms map[string]pamtest.MemberState, name string) bool {
	_, ok := ms[strings.ToLower(name)]
	return ok
}

func policyJob(in pamtest.SafeInfo, mode jobs.Mode, rules ...policy.Directive) jobs.Job {
	return jobs.Job{V: jobs.Version, Run: "policy-run", Mode: mode, Safe: jobs.SafeRef{URLID: in.URLID, Name: in.Name}, Rules: rules}
}

// expectMembers checks the Safe's members against before with the given
// members replaced (nil: removed), and nothing else changed.
func expectMembers(t *testing.T, before, after []pamtest.MemberState, changed map[string]*pamtest.MemberState) {
	t.Helper()
	want := byMember(before)
	for name, m := range changed {
		if m == nil {
			delete(want, strings.ToLower(name))
		} else {
			want[strings.ToLower(name)] = *m
		}
	}
	got := byMember(after)
	if len(got) != len(want) {
		t.Errorf("members %d, want %d", len(got), len(want))
	}
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("member %s missing", w.Name)
		case g.Permissions != w.Permissions || !eqExp(g.Expiration, w.Expiration):
			t.Errorf("member %s: %s exp %v, want %s exp %v", w.Name, g.Permissions, g.Expiration, w.Permissions, w.Expiration)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected member %s", g.Name)
		}
	}
}

// TestExecutePolicyMultiMember: a Safe that several rules concern costs one
// read (the member listing) and one write per member that changes; a
// re-run costs the read alone; every other member and flag is kept.
func TestExecutePolicyMultiMember(t *testing.T) {
	srv, c := newSim(t, pamtest.Options{Safes: 3000, Seed: 41, PolicyMembers: true})
	in := pickWith(t, srv, func(in pamtest.SafeInfo, ms map[string]pamtest.MemberState) bool {
		hd, ok := ms[strings.ToLower(pamtest.HelpDesk)]
		return ok && hd.Permissions.Has(pam.RetrieveAccounts) && has(ms, pamtest.DomainOpsAdmins) &&
			has(ms, pamtest.DepartedUser) && !has(ms, pamtest.NewcorpOpsAdmins) && in.Class == pamtest.ClassListOnly
	})
	before, _ := srv.SafeState(in.Name)
	bm := byMember(before.Members)
	job := policyJob(in, jobs.ModeApply, psmRule, helpDeskRevoke, domainMove, offboard)

	srv.ResetStats()
	res, _, err := newExec(c).Execute(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != jobs.StatusApplied {
		t.Fatalf("status %s: %+v", res.Status, res)
	}
	st := srv.Stats()
	if n := st.Count(pamtest.RouteMembers, 200); n != 1 || st.Count(pamtest.RouteMember, 200)+st.Count(pamtest.RouteMember, 404) != 0 {
		t.Errorf("reads: %d listings and %v single GETs, want one listing", n, st.Requests)
	}
	// PSMAppUsers PUT, HelpDesk PUT, NEWCORP POST, Domain Ops DELETE, jdoe DELETE.
	if st.MemberWrites.Total != 5 || st.MemberWrites.Add != 1 || st.MemberWrites.Delete != 2 {
		t.Errorf("writes %+v, want 5: 2 PUT, 1 POST, 2 DELETE", st.MemberWrites)
	}
	after, _ := srv.SafeState(in.Name)
	psm := bm[strings.ToLower(pamtest.PSMAppUsers)]
	psm.Permissions |= want
	hd := bm[strings.ToLower(pamtest.HelpDesk)]
	hd.Permissions &^= pam.Perms(pam.RetrieveAccounts)
	ops := bm[strings.ToLower(pamtest.DomainOpsAdmins)]
	newcorp := pamtest.MemberState{Name: pamtest.NewcorpOpsAdmins, Permissions: ops.Permissions, Expiration: ops.Expiration}
	expectMembers(t, before.Members, after.Members, map[string]*pamtest.MemberState{
		pamtest.PSMAppUsers: &psm, pamtest.HelpDesk: &hd, pamtest.NewcorpOpsAdmins: &newcorp,
		pamtest.DomainOpsAdmins: nil, pamtest.DepartedUser: nil,
	})
	// One entry per member, with its rule and change.
	got := map[string]jobs.MemberResult{}
	for _, m := range res.Members {
		got[m.Member.Name] = m
	}
	checks := []struct {
		member, rule string
		change       jobs.Change
	}{
		{pamtest.PSMAppUsers, "psm-unlock", jobs.ChangeUpdate},
		{pamtest.HelpDesk, "helpdesk-no-retrieve", jobs.ChangeUpdate},
		{pamtest.NewcorpOpsAdmins, "domain-move", jobs.ChangeAdd},
		{pamtest.DomainOpsAdmins, "domain-move", jobs.ChangeRemove},
		{pamtest.DepartedUser, "offboard-jdoe", jobs.ChangeRemove},
	}
	for _, c := range checks {
		m, ok := got[c.member]
		if !ok || m.Rule != c.rule || m.Change != c.change || m.Status != jobs.StatusApplied {
			t.Errorf("%s: entry %+v, want rule %s change %s applied", c.member, m, c.rule, c.change)
		}
	}
	if m := got[pamtest.HelpDesk]; m.Removed != pam.Perms(pam.RetrieveAccounts) || m.Added != 0 {
		t.Errorf("HelpDesk added %s removed %s", m.Added, m.Removed)
	}
	if m := got[pamtest.DomainOpsAdmins]; m.Before == nil || m.Before.Permissions != ops.Permissions || m.After != nil {
		t.Errorf("Domain Ops entry %+v", m)
	}

	// A re-run of the converged policy: the listing, no write.
	srv.ResetStats()
	res, _, err = newExec(c).Execute(context.Background(), job)
	if err != nil || res.Status != jobs.StatusUnchanged {
		t.Fatalf("re-run: %s %v", res.Status, err)
	}
	if st := srv.Stats(); st.MemberWrites.Total != 0 || st.RequestsTotal != 1 {
		t.Errorf("re-run: %d calls, %d writes; want 1 and 0 (%+v)", st.RequestsTotal, st.MemberWrites.Total, st)
	}

}

// TestExecutePolicyRollback: the rollback of a multi-member apply leaves
// the Safe exactly as before the run: removed members come back with their
// exact flags and expiry, added members go, changed flags return.
func TestExecutePolicyRollback(t *testing.T) {
	srv, c := newSim(t, pamtest.Options{Safes: 3000, Seed: 42, PolicyMembers: true})
	in := pickWith(t, srv, func(in pamtest.SafeInfo, ms map[string]pamtest.MemberState) bool {
		ops, ok := ms[strings.ToLower(pamtest.DomainOpsAdmins)]
		return ok && ops.Expiration != nil && has(ms, pamtest.DepartedUser) && in.Class == pamtest.ClassAbsent
	})
	before, _ := srv.SafeState(in.Name)
	e := newExec(c)
	res, _, err := e.Execute(context.Background(), policyJob(in, jobs.ModeApply, psmRule, domainMove, offboard))
	if err != nil || res.Status != jobs.StatusApplied {
		t.Fatalf("apply: %s %v", res.Status, err)
	}
	srv.ResetStats()
	rb, _, err := e.Execute(context.Background(), rollbackOf(in, res))
	if err != nil || rb.Status != jobs.StatusApplied {
		t.Fatalf("rollback: %s %v %+v", rb.Status, err, rb)
	}
	now, _ := srv.SafeState(in.Name)
	expectMembers(t, before.Members, now.Members, nil)
	if w := srv.Stats().MemberWrites; w.Total != 4 || w.Add != 2 || w.Delete != 2 {
		t.Errorf("rollback writes %+v, want 2 POST (the removed come back) and 2 DELETE (the added go)", w)
	}
	// A second rollback finds everything restored: nothing written.
	srv.ResetStats()
	again, _, err := e.Execute(context.Background(), rollbackOf(in, res))
	if err != nil || again.Status != jobs.StatusUnchanged || srv.Stats().MemberWrites.Total != 0 {
		t.Errorf("second rollback: %s %v, %d writes", again.Status, err, srv.Stats().MemberWrites.Total)
	}
}

// TestExecutePolicyConflict: rules that set the same flag of the same
// member to different values fail the Safe with POLICY_CONFLICT, naming
// both rules, and nothing is written on it; so does a copyFrom whose
// source lacks a flag another rule grants the target.
func TestExecutePolicyConflict(t *testing.T) {
	srv, c := newSim(t, pamtest.Options{Safes: 3000, Seed: 43, PolicyMembers: true})
	in := pickWith(t, srv, func(in pamtest.SafeInfo, ms map[string]pamtest.MemberState) bool {
		ops, ok := ms[strings.ToLower(pamtest.DomainOpsAdmins)]
		return ok && !ops.Permissions.Has(pam.BackupSafe) && has(ms, pamtest.HelpDesk) && in.Class == pamtest.ClassListOnly
	})
	grantRetrieve := policy.Directive{Rule: "helpdesk-retrieve", Member: helpDeskRevoke.Member, Action: policy.ActionGrant,
		Permissions: pam.Perms(pam.RetrieveAccounts)}
	grantBackup := policy.Directive{Rule: "newcorp-backup", Member: domainMove.Member, Action: policy.ActionGrant,
		Permissions: pam.Perms(pam.BackupSafe)}
	tests := []struct {
		name         string
		rules        []policy.Directive
		ruleA, ruleB string
	}{
		{"grant and revoke", []policy.Directive{psmRule, grantRetrieve, helpDeskRevoke}, "helpdesk-retrieve", "helpdesk-no-retrieve"},
		{"copy and grant", []policy.Directive{psmRule, domainMove, grantBackup}, "domain-move", "newcorp-backup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := srv.SafeState(in.Name)
			srv.ResetStats()
			for _, mode := range []jobs.Mode{jobs.ModeApply, jobs.ModeCheck} {
				res, _, err := newExec(c).Execute(context.Background(), policyJob(in, mode, tt.rules...))
				if err != nil {
					t.Fatal(err)
				}
				if res.Status != jobs.StatusFailed || res.ErrorCode != jobs.ErrorCodePolicyConflict {
					t.Fatalf("%s: %s %s, want failed %s", mode, res.Status, res.ErrorCode, jobs.ErrorCodePolicyConflict)
				}
				if !strings.Contains(res.Error, `"`+tt.ruleA+`"`) || !strings.Contains(res.Error, `"`+tt.ruleB+`"`) {
					t.Errorf("error %q does not name both rules", res.Error)
				}
			}
			if w := srv.Stats().MemberWrites.Total; w != 0 {
				t.Errorf("%d writes on a conflicting Safe", w)
			}
			after, _ := srv.SafeState(in.Name)
			expectMembers(t, before.Members, after.Members, nil)
		})
	}
}

// TestExecutePolicyPredefined: a member the PVWA flags isPredefinedUser is
// never written: skipped, with the reason.
func TestExecutePolicyPredefined(t *testing.T) {
	srv, c := newSim(t, pamtest.Options{Safes: 400, Seed: 44})
	in := pick(t, srv, pamtest.ClassListOnly, pamtest.AccessFull)
	batch := policy.Directive{Rule: "batch", Member: policy.Member{Name: "Batch", Type: "User"}, Action: policy.ActionGrant,
		Permissions: pam.Perms(pam.ManageSafe)}
	for _, rules := range [][]policy.Directive{{batch}, {psmRule, batch}} {
		srv.ResetStats()
		res, _, err := newExec(c).Execute(context.Background(), policyJob(in, jobs.ModeApply, rules...))
		if err != nil {
			t.Fatal(err)
		}
		var entry jobs.MemberResult
		for _, m := range res.Members {
			if m.Member.Name == "Batch" {
				entry = m
			}
		}
		if entry.Status != jobs.StatusSkipped || !strings.Contains(entry.Reason, "isPredefinedUser") {
			t.Errorf("%d rules: Batch entry %+v, want skipped (predefined)", len(rules), entry)
		}
		st, _ := srv.SafeState(in.Name)
		if m, _ := st.Member("Batch"); m.Permissions.Has(pam.ManageSafe) {
			t.Error("the predefined user was written")
		}
		if len(rules) == 1 && (res.Status != jobs.StatusSkipped || srv.Stats().MemberWrites.Total != 0) {
			t.Errorf("Safe status %s, writes %d; want skipped, 0", res.Status, srv.Stats().MemberWrites.Total)
		}
	}
}

// TestExecutePolicyCheck: check mode reports, per member, the flags that
// would be added and removed and the members that would be added or
// removed, and writes nothing.
func TestExecutePolicyCheck(t *testing.T) {
	srv, c := newSim(t, pamtest.Options{Safes: 3000, Seed: 45, PolicyMembers: true})
	in := pickWith(t, srv, func(in pamtest.SafeInfo, ms map[string]pamtest.MemberState) bool {
		la, ok := ms[strings.ToLower(pamtest.LinuxAdmins)]
		return ok && la.Permissions.Has(pam.ViewAuditLog) && has(ms, pamtest.DepartedUser) && !has(ms, pamtest.SecurityAuditors)
	})
	before, _ := srv.SafeState(in.Name)
	la, _ := before.Member(pamtest.LinuxAdmins)
	srv.ResetStats()
	res, _, err := newExec(c).Execute(context.Background(), policyJob(in, jobs.ModeCheck, linuxExact, offboard, auditorsRead))
	if err != nil || res.Status != jobs.StatusDrift {
		t.Fatalf("check: %s %v", res.Status, err)
	}
	if st := srv.Stats(); st.MemberWrites.Total != 0 || st.RequestsTotal != 1 {
		t.Errorf("check: %d calls %d writes; want 1 and 0", st.RequestsTotal, st.MemberWrites.Total)
	}
	got := map[string]jobs.MemberResult{}
	for _, m := range res.Members {
		got[m.Member.Name] = m
	}
	wantLinux := linuxExact.Permissions
	if m := got[pamtest.LinuxAdmins]; m.Status != jobs.StatusDrift || m.Change != jobs.ChangeUpdate ||
		m.Removed != la.Permissions&^wantLinux || m.Added != wantLinux&^la.Permissions {
		t.Errorf("LinuxAdmins %+v (had %s)", m, la.Permissions)
	}
	if m := got[pamtest.DepartedUser]; m.Change != jobs.ChangeRemove || m.Status != jobs.StatusDrift {
		t.Errorf("jdoe %+v, want would be removed", m)
	}
	if m := got[pamtest.SecurityAuditors]; m.Change != jobs.ChangeAdd || m.Added != auditorsRead.Permissions {
		t.Errorf("Security Auditors %+v, want would be added", m)
	}
}

// TestExecutePolicyRedelivery: a delivery that wrote some members and
// crashed before reporting; the redelivery writes the rest and reports
// every member applied with its true state before.
func TestExecutePolicyRedelivery(t *testing.T) {
	env := startNATS(t, nil)
	srv, c := newSim(t, pamtest.Options{Safes: 3000, Seed: 46, PolicyMembers: true})
	in := pickWith(t, srv, func(in pamtest.SafeInfo, ms map[string]pamtest.MemberState) bool {
		return has(ms, pamtest.DepartedUser) && in.Class == pamtest.ClassListOnly
	})
	before, _ := srv.SafeState(in.Name)
	job := policyJob(in, jobs.ModeApply, psmRule, offboard)
	first := &Executor{PVWA: crashAfterWrite{c}, Retry: RetryPolicy{Attempts: 1}, Sleep: noSleep, Intents: env.streams.Intents}
	if _, _, err := first.ExecuteDelivery(context.Background(), job, 1); err == nil {
		t.Fatal("the crashing delivery succeeded")
	}
	second := &Executor{PVWA: c, Retry: DefaultRetryPolicy(), Sleep: noSleep, Intents: env.streams.Intents}
	res, _, err := second.ExecuteDelivery(context.Background(), job, 2)
	if err != nil || res.Status != jobs.StatusApplied {
		t.Fatalf("redelivery: %s %v", res.Status, err)
	}
	bm := byMember(before.Members)
	for _, m := range res.Members {
		seeded := bm[strings.ToLower(m.Member.Name)]
		if m.Status != jobs.StatusApplied || m.Before == nil || m.Before.Permissions != seeded.Permissions {
			t.Errorf("%s: %+v, want applied with before %s", m.Member.Name, m, seeded.Permissions)
		}
	}
	if w := srv.Stats().WritesBySafe[in.Name]; w != 2 {
		t.Errorf("%d writes, want 2 (each member once)", w)
	}
}
