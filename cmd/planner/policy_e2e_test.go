package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/safeperm/safeperm/internal/cliconf"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
)

// examplePolicy is the policy of issue 12, accepted exactly as written.
const examplePolicy = `version: 1
rules:
  - name: psm-unlock
    safes: ["*"]
    member: PSMAppUsers
    memberType: Group
    grant: [listAccounts, unlockAccounts]
  - name: auditors-read-db
    safes: ["DB-*", "db.*"]
    except: ["db.test.*"]
    member: Security Auditors
    memberType: Group
    searchIn: Vault
    grant: [listAccounts, viewAuditLog, viewSafeMembers]
  - name: helpdesk-no-retrieve
    safes: ["Help Desk*"]
    member: HelpDesk
    revoke: [retrieveAccounts]
  - name: linux-exact
    safes: ["Linux*"]
    managedBy: [PasswordManager_Linux]
    member: LinuxAdmins
    exactly: [listAccounts, useAccounts, retrieveAccounts]
  - name: domain-move
    safes: ["*"]
    member: NEWCORP Ops Admins
    memberType: Group
    copyFrom: Domain Ops Admins
    removeSource: true
  - name: offboard-jdoe
    safes: ["*"]
    member: jdoe
    memberType: User
    absent: true
`

// memberKey is a member name as the Vault compares it.
func memberKey(n string) string { return strings.ToLower(n) }

// expectedAfterPolicy is what the example policy must make of one account
// Safe's members, written out rule by rule independently of the worker:
// the members by lower-cased name. changed names the members that differ.
func expectedAfterPolicy(in pamtest.SafeInfo, seeded []pamtest.MemberState) (map[string]pamtest.MemberState, []string) {
	m := map[string]pamtest.MemberState{}
	for _, x := range seeded {
		m[memberKey(x.Name)] = x
	}
	var changed []string
	set := func(name string, x pamtest.MemberState) {
		old, ok := m[memberKey(name)]
		if !ok || old.Permissions != x.Permissions || !eqExpiry(old.Expiration, x.Expiration) {
			changed = append(changed, name)
		}
		x.Name = name
		m[memberKey(name)] = x
	}
	remove := func(name string) {
		if _, ok := m[memberKey(name)]; ok {
			delete(m, memberKey(name))
			changed = append(changed, name)
		}
	}
	grant := func(name string, perms pam.PermSet) {
		x := m[memberKey(name)]
		x.Permissions |= perms
		set(name, x)
	}
	lower := strings.ToLower(in.Name)
	// psm-unlock
	grant(pamtest.PSMAppUsers, wantPerms)
	// auditors-read-db
	if (strings.HasPrefix(lower, "db-") || strings.HasPrefix(lower, "db.")) && !strings.HasPrefix(lower, "db.test.") {
		grant(pamtest.SecurityAuditors, pam.Perms(pam.ListAccounts, pam.ViewAuditLog, pam.ViewSafeMembers))
	}
	// helpdesk-no-retrieve
	if x, ok := m[memberKey(pamtest.HelpDesk)]; ok && strings.HasPrefix(lower, "help desk") {
		x.Permissions &^= pam.Perms(pam.RetrieveAccounts)
		set(pamtest.HelpDesk, x)
	}
	// linux-exact
	if strings.HasPrefix(lower, "linux") && strings.Contains(in.ManagingCPM, pamtest.CPMLinux) {
		x := m[memberKey(pamtest.LinuxAdmins)]
		x.Permissions = pam.Perms(pam.ListAccounts, pam.UseAccounts, pam.RetrieveAccounts)
		set(pamtest.LinuxAdmins, x)
	}
	// domain-move
	if src, ok := m[memberKey(pamtest.DomainOpsAdmins)]; ok {
		set(pamtest.NewcorpOpsAdmins, pamtest.MemberState{Permissions: src.Permissions, Expiration: src.Expiration})
		remove(pamtest.DomainOpsAdmins)
	}
	// offboard-jdoe
	remove(pamtest.DepartedUser)
	return m, changed
}

func eqExpiry(a, b *int64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// sameAsMap compares a Safe's members with the expected map: same names,
// flags and expiry.
func sameAsMap(got []pamtest.MemberState, want map[string]pamtest.MemberState) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d members, want %d", len(got), len(want))
	}
	for _, g := range got {
		w, ok := want[memberKey(g.Name)]
		switch {
		case !ok:
			return fmt.Errorf("unexpected member %s", g.Name)
		case g.Permissions != w.Permissions || !eqExpiry(g.Expiration, w.Expiration):
			return fmt.Errorf("member %s: %s exp %v, want %s exp %v", g.Name, g.Permissions, g.Expiration, w.Permissions, w.Expiration)
		}
	}
	return nil
}

// reportRows reads a JSON Lines report: every row.
func reportRows(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var row map[string]any
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatal(err)
		}
		out = append(out, row)
	}
	return out
}

// TestPolicyEndToEnd runs the example policy of docs/policy.md against a
// simulated vault seeded with its principals, and checks every member of
// every Safe afterwards; then a re-run with no write; then check mode after
// a hand-made change (exit 3, naming it); then the rollback, which leaves
// every Safe as before the first run except the hand-changed member
// (reported conflict).
func TestPolicyEndToEnd(t *testing.T) {
	srv := sim(t, pamtest.Options{Safes: 1500, Seed: 52, PolicyMembers: true})
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	polFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(polFile, []byte(examplePolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	v := srv.Vault()
	before := make([]pamtest.SafeState, v.Len())
	for i := range v.Len() {
		before[i] = srv.SafeStateAt(i)
	}

	// Removals need the explicit opt-in; refused before anything is written.
	code, out, _ := plannerRun(t, srv, data, "run", "--policy", polFile)
	if code != cliconf.ExitUsage || !strings.Contains(out, `"domain-move", "offboard-jdoe"`) || !strings.Contains(out, "--allow-removals") {
		t.Fatalf("without --allow-removals: exit %d, want 2 naming the removing rules\n%s", code, out)
	}
	if srv.Stats().MemberWrites.Total != 0 {
		t.Fatal("a refused policy wrote")
	}

	srv.ResetStats()
	rep := filepath.Join(dir, "apply.jsonl")
	code, out, errOut := plannerRun(t, srv, data, "run", "--policy", polFile, "--allow-removals", "--run-id", "pol-1", "--report", rep)
	if code != cliconf.ExitOK && code != cliconf.ExitFailed {
		t.Fatalf("apply exit %d\n%s\n%s", code, out, errOut)
	}
	st := srv.Stats()
	var jobsN, changedSafes, changedMembers, readOnlyFailed int
	for i := range v.Len() {
		in := v.Info(i)
		now := srv.SafeStateAt(i)
		if in.Access == pamtest.AccessHidden || in.Internal {
			if now.Changed {
				t.Errorf("%s: internal or hidden Safe changed", in.Name)
			}
			continue
		}
		jobsN++
		want, changed := expectedAfterPolicy(in, before[i].Members)
		if in.Access == pamtest.AccessReadOnly {
			// The API user may read but not write: nothing changes; the
			// Safe fails when it needed a change.
			if len(changed) > 0 {
				readOnlyFailed++
			}
			if err := sameAsMap(now.Members, byName(before[i].Members)); err != nil {
				t.Errorf("%s (read-only): %v", in.Name, err)
			}
			continue
		}
		if len(changed) > 0 {
			changedSafes++
			changedMembers += len(changed)
		}
		if err := sameAsMap(now.Members, want); err != nil {
			t.Errorf("%s: %v (rules changed %v)", in.Name, err, changed)
		}
	}
	if changedSafes == 0 || readOnlyFailed == 0 {
		t.Fatalf("%d changed Safes, %d read-only failures: the vault does not exercise the policy", changedSafes, readOnlyFailed)
	}
	if code != cliconf.ExitFailed {
		t.Errorf("exit %d, want 1 (%d read-only Safes fail)", code, readOnlyFailed)
	}
	listings := st.Count(pamtest.RouteMembers, 200)
	singleGets := st.Count(pamtest.RouteMember, 200) + st.Count(pamtest.RouteMember, 404)
	if int(listings) != jobsN || singleGets != 0 {
		t.Errorf("reads: %d member listings and %d single GETs for %d Safes; want one listing per Safe", listings, singleGets, jobsN)
	}
	if int(st.MemberWrites.Total) != changedMembers {
		t.Errorf("writes %d (%+v), want one per changed member: %d", st.MemberWrites.Total, st.MemberWrites, changedMembers)
	}
	t.Logf("example policy on %d Safes: %d member listings (%.2f reads per Safe), %d single GETs; %d members changed on %d Safes with %d writes (%.2f per changed member: %d PUT, %d POST, %d DELETE); %d read-only Safes failed",
		jobsN, listings, float64(listings)/float64(jobsN), singleGets, changedMembers, changedSafes, st.MemberWrites.Total,
		float64(st.MemberWrites.Total)/float64(changedMembers), st.MemberWrites.Update, st.MemberWrites.Add, st.MemberWrites.Delete, readOnlyFailed)

	// The report: one row per Safe and member, with the rule's name.
	rows := reportRows(t, rep)
	perRule := map[string]int{}
	seen := map[string]bool{}
	for _, r := range rows {
		key := fmt.Sprint(r["safe"], "\x00", r["member"])
		if seen[key] {
			t.Errorf("Safe %v member %v reported twice", r["safe"], r["member"])
		}
		seen[key] = true
		if r["status"] == "applied" {
			for rule := range strings.SplitSeq(fmt.Sprint(r["rule"]), ",") {
				perRule[rule]++
			}
		}
		if r["member"] == pamtest.DomainOpsAdmins && r["status"] == "applied" && (r["rule"] != "domain-move" || r["change"] != "remove") {
			t.Errorf("Domain Ops row %v", r)
		}
	}
	for _, rule := range []string{"psm-unlock", "auditors-read-db", "helpdesk-no-retrieve", "linux-exact", "domain-move", "offboard-jdoe"} {
		if perRule[rule] == 0 {
			t.Errorf("no member applied by rule %s in the report", rule)
		}
		if !strings.Contains(out, rule+":") {
			t.Errorf("summary does not count rule %s:\n%s", rule, out)
		}
	}

	// A re-run of the converged policy writes nothing.
	srv.ResetStats()
	code, out, _ = plannerRun(t, srv, data, "run", "--policy", polFile, "--allow-removals", "--run-id", "pol-2")
	if w := srv.Stats().MemberWrites.Total; w != 0 || code != cliconf.ExitFailed {
		t.Fatalf("re-run: exit %d, %d writes; want 1 (read-only Safes) and 0\n%s", code, w, out)
	}

	// A hand-made change: the help desk gets retrieveAccounts back on one
	// Help Desk Safe, with flags it never had. Check mode finds it (exit 3)
	// and names it.
	var hand pamtest.SafeInfo
	for i := range v.Len() {
		in := v.Info(i)
		if _, ok := srv.SafeStateAt(i).Member(pamtest.HelpDesk); ok && !in.Internal && in.Access == pamtest.AccessFull &&
			strings.HasPrefix(in.Name, "Help Desk") {
			hand = in
			break
		}
	}
	if hand.Name == "" {
		t.Fatal("no Help Desk Safe with the HelpDesk group")
	}
	if err := srv.SetMember(hand.Name, pamtest.MemberState{Name: pamtest.HelpDesk, Type: "Group",
		Permissions: pam.Perms(pam.ListAccounts, pam.RetrieveAccounts, pam.CreateFolders)}); err != nil {
		t.Fatal(err)
	}
	handState, _ := srv.SafeState(hand.Name)
	srv.ResetStats()
	checkRep := filepath.Join(dir, "check.jsonl")
	code, out, _ = plannerRun(t, srv, data, "run", "--policy", polFile, "--allow-removals", "--mode", "check", "--run-id", "pol-check", "--report", checkRep)
	if code != cliconf.ExitDrift || srv.Stats().MemberWrites.Total != 0 {
		t.Fatalf("check: exit %d, %d writes; want 3 and 0\n%s", code, srv.Stats().MemberWrites.Total, out)
	}
	if !strings.Contains(out, hand.Name) || !strings.Contains(out, "-retrieveAccounts") {
		t.Errorf("check output does not name %s and the flag to remove:\n%s", hand.Name, out)
	}
	var drifted []string
	for _, r := range reportRows(t, checkRep) {
		if r["status"] == "drift" {
			drifted = append(drifted, fmt.Sprint(r["safe"], "/", r["member"], "/", r["rule"]))
		}
	}
	if !containsPrefix(drifted, hand.Name+"/"+pamtest.HelpDesk+"/helpdesk-no-retrieve") {
		t.Errorf("drift rows %v lack %s/HelpDesk", drifted, hand.Name)
	}

	// Rollback of the first run: every Safe as before it, except the
	// hand-changed member, reported conflict and left alone.
	srv.ResetStats()
	rbRep := filepath.Join(dir, "rollback.jsonl")
	code, out, _ = plannerRun(t, srv, data, "rollback", "pol-1", "--run-id", "pol-undo", "--report", rbRep)
	if code != cliconf.ExitFailed {
		t.Fatalf("rollback exit %d, want 1 (a conflict)\n%s", code, out)
	}
	var conflicts []string
	for _, r := range reportRows(t, rbRep) {
		if r["status"] == "conflict" {
			conflicts = append(conflicts, fmt.Sprint(r["safe"], "/", r["member"]))
		}
	}
	if len(conflicts) != 1 || conflicts[0] != hand.Name+"/"+pamtest.HelpDesk {
		t.Errorf("rollback conflicts %v, want only %s/%s", conflicts, hand.Name, pamtest.HelpDesk)
	}
	for i := range v.Len() {
		now := srv.SafeStateAt(i)
		want := byName(before[i].Members)
		if now.Name == hand.Name {
			hm, _ := handState.Member(pamtest.HelpDesk)
			want[memberKey(pamtest.HelpDesk)] = hm
		}
		if err := sameAsMap(now.Members, want); err != nil {
			t.Errorf("%s after rollback: %v", now.Name, err)
		}
	}
}

func byName(ms []pamtest.MemberState) map[string]pamtest.MemberState {
	out := map[string]pamtest.MemberState{}
	for _, m := range ms {
		out[memberKey(m.Name)] = m
	}
	return out
}

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// TestRunPolicyRefusals: planner run refuses, with exit 2 and the exact
// message, before anything is published or written: a policy that
// removes members without --allow-removals, --policy together with
// --member, every problem of a bad file at FILE:LINE:COL, and a rule
// naming a CPM user that only the Vault's managingCPM reveals.
func TestRunPolicyRefusals(t *testing.T) {
	srv := sim(t, pamtest.Options{Safes: 300, Seed: 53})
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", examplePolicy)
	bad := write("bad.yaml", `version: 1
rules:
  - name: typo-key
    safe: ["*"]
    member: A
    grant: [listAccounts]
  - name: typo-flag
    safes: ["*"]
    member: B
    grant: [unlockAccount]
  - name: no-action
    safes: ["*"]
    member: C
  - name: two-actions
    safes: ["*"]
    member: D
    grant: [listAccounts]
    revoke: [useAccounts]
  - name: empty-safes
    safes: []
    member: E
    absent: true
  - name: remove-alone
    safes: ["*"]
    member: F
    revoke: [useAccounts]
    removeSource: true
  - name: api-user
    safes: ["*"]
    member: administrator
    grant: [listAccounts]
  - name: builtin
    safes: ["*"]
    member: Backup Users
    grant: [listAccounts]
  - name: cpm
    safes: ["*"]
    member: PasswordManager
    revoke: [useAccounts]
  - name: cpm-flag
    safes: ["*"]
    member: CPM2
    revoke: [useAccounts]
  - name: managed
    safes: ["Linux*"]
    managedBy: [PasswordManager_Linux]
    member: PasswordManager_Linux
    revoke: [useAccounts]
`)
	cpmMember := write("cpm.yaml", `version: 1
rules:
  - name: connector
    safes: ["*"]
    member: cyberark-connec
    memberType: User
    revoke: [deleteAccounts]
`)
	tests := []struct {
		name string
		args []string
		want []string // every line of the error, in order
	}{
		{"removals need the opt-in", []string{"--policy", good}, []string{
			`planner: --policy "` + good + `": rules "domain-move", "offboard-jdoe" remove members from Safes (absent, removeSource); run with --allow-removals to let them`}},
		{"policy and member flags", []string{"--policy", good, "--allow-removals", "--member", "X", "--permissions", "listAccounts"}, []string{
			"planner: 2 configuration problems:",
			"  - --member: not with --policy: the policy file names its members and flags",
			"  - --permissions: not with --policy: the policy file names its members and flags"}},
		{"every problem of the file", []string{"--policy", bad, "--cpm", "CPM2"}, []string{
			"planner: 11 configuration problems:",
			`  - ` + bad + `:4:5: unknown key "safe" in rule "typo-key"; did you mean "safes"?`,
			`  - ` + bad + `:10:13: unknown permission "unlockAccount"; did you mean "unlockAccounts"?`,
			`  - ` + bad + `:11:5: rule "no-action" has no action; give one of grant, revoke, exactly, copyFrom or absent`,
			`  - ` + bad + `:18:5: rule "two-actions" has two actions, "grant" and "revoke"; give only one`,
			`  - ` + bad + `:20:12: "safes" in rule "empty-safes" is empty; name the Safes it applies to (["*"] for every Safe)`,
			`  - ` + bad + `:27:5: "removeSource" in rule "remove-alone" needs "copyFrom"`,
			`  - ` + bad + `:30:13: member "administrator" in rule "api-user" is the API user safeperm logs on as; a run must not change its own access`,
			`  - ` + bad + `:34:13: member "Backup Users" in rule "builtin" is a built-in Vault user; safeperm does not change built-in users`,
			`  - ` + bad + `:38:13: member "PasswordManager" in rule "cpm" is a CPM user; safeperm does not change CPM users`,
			`  - ` + bad + `:42:13: member "CPM2" in rule "cpm-flag" is a CPM user; safeperm does not change CPM users`,
			`  - ` + bad + `:47:13: member "PasswordManager_Linux" in rule "managed" is a CPM user; safeperm does not change CPM users`}},
		{"a CPM user the Vault reveals", []string{"--policy", cpmMember}, []string{
			`planner: policy refused: rule "connector" names "cyberark-connec", a CPM user (it manages Safes, as their managingCPM shows); safeperm does not change CPM users`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.ResetStats()
			code, out, _ := plannerRun(t, srv, filepath.Join(dir, "data-"+strings.ReplaceAll(tt.name, " ", "-")), append([]string{"run"}, tt.args...)...)
			if code != cliconf.ExitUsage {
				t.Fatalf("exit %d, want 2\n%s", code, out)
			}
			got := strings.TrimSpace(strings.Replace(out, "error: ", "planner: ", 1))
			if want := strings.Join(tt.want, "\n"); !strings.HasSuffix(got, want) {
				t.Errorf("error:\n%s\nwant:\n%s", got, want)
			}
			if st := srv.Stats(); st.MemberWrites.Total != 0 || st.Count(pamtest.RouteMember, 200)+st.Count(pamtest.RouteMembers, 200) != 0 {
				t.Errorf("a refused policy reached the members: %v", st.Requests)
			}
		})
	}
}
