package policy

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/scope"
)

func mustParse(t *testing.T, src string) *Policy {
	t.Helper()
	p, err := Parse([]byte(src), "p.yaml", testOptions)
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return p
}

func patternList(ps []scope.Pattern) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

// The policy of issue 12, accepted exactly as written.
func TestLoadIssueExample(t *testing.T) {
	t.Parallel()
	path := filepath.Join("testdata", "valid", "issue12.yaml")
	p, err := Load(path, Options{APIUser: "svc_safeperm"})
	if err != nil {
		t.Fatal(err)
	}
	if p.File != path || p.Version != 1 {
		t.Errorf("File, Version = %q, %d", p.File, p.Version)
	}
	type want struct {
		name          string
		line, col     int
		safes, except []string
		managedBy     []string
		member        Member
		action        Action
		perms         pam.PermSet
		source        string
		removeSource  bool
	}
	group := func(n string) Member { return Member{Name: n, Type: "Group", SearchIn: "Vault"} }
	wants := []want{
		{"psm-unlock", 3, 5, []string{"*"}, nil, nil, group("PSMAppUsers"), ActionGrant,
			pam.Perms(pam.ListAccounts, pam.UnlockAccounts), "", false},
		{"auditors-read-db", 8, 5, []string{"DB-*", "db.*"}, []string{"db.test.*"}, nil, group("Security Auditors"), ActionGrant,
			pam.Perms(pam.ListAccounts, pam.ViewAuditLog, pam.ViewSafeMembers), "", false},
		{"helpdesk-no-retrieve", 15, 5, []string{"Help Desk*"}, nil, nil, group("HelpDesk"), ActionRevoke,
			pam.Perms(pam.RetrieveAccounts), "", false},
		{"linux-exact", 19, 5, []string{"Linux*"}, nil, []string{"PasswordManager_Linux"}, group("LinuxAdmins"), ActionExactly,
			pam.Perms(pam.ListAccounts, pam.UseAccounts, pam.RetrieveAccounts), "", false},
		{"domain-move", 24, 5, []string{"*"}, nil, nil, group("NEWCORP Ops Admins"), ActionCopy, 0, "Domain Ops Admins", true},
		{"offboard-jdoe", 30, 5, []string{"*"}, nil, nil, Member{Name: "jdoe", Type: "User", SearchIn: "Vault"}, ActionAbsent, 0, "", false},
	}
	if len(p.Rules) != len(wants) {
		t.Fatalf("%d rules, want %d", len(p.Rules), len(wants))
	}
	for i, w := range wants {
		r := p.Rules[i]
		if r.Name != w.name || r.Pos != (Pos{File: path, Line: w.line, Col: w.col}) {
			t.Errorf("rule %d: name %q at %v, want %q at %d:%d", i, r.Name, r.Pos, w.name, w.line, w.col)
		}
		if got := patternList(r.Safes); !slices.Equal(got, w.safes) {
			t.Errorf("rule %q: safes %q, want %q", w.name, got, w.safes)
		}
		if got := patternList(r.Except); !slices.Equal(got, w.except) {
			t.Errorf("rule %q: except %q, want %q", w.name, got, w.except)
		}
		if !slices.Equal(r.ManagedBy, w.managedBy) {
			t.Errorf("rule %q: managedBy %q, want %q", w.name, r.ManagedBy, w.managedBy)
		}
		if r.Member != w.member || r.Action != w.action || r.Permissions != w.perms ||
			r.Source != w.source || r.RemoveSource != w.removeSource {
			t.Errorf("rule %q: %+v %s %s %q %v\nwant %+v %s %s %q %v", w.name,
				r.Member, r.Action, r.Permissions, r.Source, r.RemoveSource,
				w.member, w.action, w.perms, w.source, w.removeSource)
		}
		if err := r.Directive().Validate(); err != nil {
			t.Errorf("rule %q: Directive().Validate() = %v", w.name, err)
		}
	}
	if got, want := p.Removals(), []string{"domain-move", "offboard-jdoe"}; !slices.Equal(got, want) {
		t.Errorf("Removals() = %q, want %q", got, want)
	}
	if c := p.Conflicts(); len(c) != 0 {
		t.Errorf("Conflicts() = %v, want none", c)
	}
	if err := p.Validate(Options{APIUser: "svc_safeperm"}); err != nil {
		t.Errorf("Validate() of a parsed policy = %v", err)
	}
}

// TestParseAccepts covers the YAML a person may write for the same policy.
func TestParseAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  string
		// check inspects the one rule (or the first).
		check func(t *testing.T, r Rule)
	}{
		{"flow mapping rule", `version: 1
rules: [{name: a, safes: ["*"], member: m, grant: [listAccounts]}]
`, func(t *testing.T, r Rule) {
			if r.Name != "a" || r.Pos.Line != 2 || r.Pos.Col != 10 {
				t.Errorf("rule %q at %v", r.Name, r.Pos)
			}
		}},
		{"block lists, quoted and plain scalars", `version: 1
rules:
  - name: 'a'
    safes:
      - Finance*
      - "HR ?"
    member: "Ops Admins"
    revoke:
      - retrieveAccounts
`, func(t *testing.T, r Rule) {
			if got := patternList(r.Safes); !slices.Equal(got, []string{"Finance*", "HR ?"}) || r.Member.Name != "Ops Admins" {
				t.Errorf("safes %q, member %q", got, r.Member.Name)
			}
		}},
		{"memberType in any case, searchIn", `version: 1
rules:
  - name: a
    safes: ["*"]
    member: jdoe
    memberType: uSeR
    searchIn: corp.example.com
    grant: [listAccounts]
`, func(t *testing.T, r Rule) {
			if r.Member != (Member{Name: "jdoe", Type: "User", SearchIn: "corp.example.com"}) {
				t.Errorf("member %+v", r.Member)
			}
		}},
		{"CRLF and BOM", "\uFEFFversion: 1\r\nrules:\r\n  - name: a\r\n    safes: [\"*\"]\r\n    member: m\r\n    absent: true\r\n",
			func(t *testing.T, r Rule) {
				if r.Pos.Line != 3 || r.Pos.Col != 5 || r.Action != ActionAbsent {
					t.Errorf("rule at %v, action %s", r.Pos, r.Action)
				}
			}},
		{"comments everywhere", `# policy
version: 1 # the format
rules: # the list
  # first rule
  - name: a # its name
    safes: ["*"] # all
    member: m
    copyFrom: n
    removeSource: false
`, func(t *testing.T, r Rule) {
			if r.Action != ActionCopy || r.Source != "n" || r.RemoveSource {
				t.Errorf("action %s source %q removeSource %v", r.Action, r.Source, r.RemoveSource)
			}
		}},
		{"!!str tag and block scalar", `version: 1
rules:
  - name: !!str 2024
    safes: [!!str 2024]
    member: |
      Ops
    exactly: [listAccounts]
`, func(t *testing.T, r Rule) {
			if r.Name != "2024" || patternList(r.Safes)[0] != "2024" || r.Member.Name != "Ops" {
				t.Errorf("name %q safes %q member %q", r.Name, patternList(r.Safes), r.Member.Name)
			}
		}},
		{"empty except", `version: 1
rules:
  - {name: a, safes: ["*"], except: [], member: m, grant: [listAccounts]}
`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := mustParse(t, tt.src)
			if tt.check != nil {
				tt.check(t, p.Rules[0])
			}
		})
	}
}

func TestParseAnchorsMerge(t *testing.T) {
	t.Parallel()
	p := mustParse(t, `version: 1
x-dbs: &dbs ["DB-*", "db.*"]
rules:
  - &auditors
    name: a
    safes: *dbs
    member: Auditors
    memberType: Role
    grant: &read [listAccounts, viewAuditLog]
  - <<: *auditors
    name: b
    member: Readers
`)
	b := p.Rules[1]
	if b.Name != "b" || b.Member != (Member{Name: "Readers", Type: "Role", SearchIn: "Vault"}) ||
		!slices.Equal(patternList(b.Safes), []string{"DB-*", "db.*"}) || b.Action != ActionGrant ||
		b.Permissions != pam.Perms(pam.ListAccounts, pam.ViewAuditLog) {
		t.Errorf("merged rule: %+v", b)
	}
	if b.Pos.Line != 10 || b.Pos.Col != 5 {
		t.Errorf("merged rule at %v, want where its mapping starts, 10:5", b.Pos)
	}
}

// Positions must be where the text is, also where goccy/go-yaml reports a
// plain scalar followed by blanks too far right.
func TestParsePositions(t *testing.T) {
	t.Parallel()
	src := "version: 1   \nrules:\n  - name: a   \n    safes: [\"*\"]\n    member: Mästér  \n    grant: [listAccount]  \n    grant: [x]\n"
	_, err := Parse([]byte(src), "p.yaml", Options{})
	want := "p.yaml:6:13: unknown permission \"listAccount\"; did you mean \"listAccounts\"?\n" +
		"p.yaml:7:5: duplicate key \"grant\" in rule \"a\" (first at line 6)"
	if err == nil || err.Error() != want {
		t.Fatalf("got:\n%v\nwant:\n%s", err, want)
	}
	_, err = Parse([]byte("version: 1\nrules:\n  - name: a\n    safes: [x]\n    member: Ops/1   \n    absent: true\n"), "p.yaml", Options{})
	if want := `p.yaml:5:13: member "Ops/1" in rule "a" holds '/', which the PVWA does not accept in member names`; err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.yaml")
	_, err := Load(missing, Options{})
	if want := missing + ": cannot read the policy file: no such file or directory"; err == nil || err.Error() != want || !errors.Is(err, ErrInvalid) {
		t.Errorf("Load(missing) = %v, want %s", err, want)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("#"+strings.Repeat("x", MaxFileSize)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(big, Options{})
	if want := big + ": the file is larger than 4 MiB; a policy is a few rules"; err == nil || err.Error() != want {
		t.Errorf("Load(big) = %v, want %s", err, want)
	}
}

func TestApplies(t *testing.T) {
	t.Parallel()
	p, err := Load(filepath.Join("testdata", "valid", "issue12.yaml"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	everywhere := []string{"psm-unlock", "domain-move", "offboard-jdoe"}
	tests := []struct {
		safe, cpm string
		want      []string
	}{
		{"Finance", "PasswordManager", everywhere},
		{"DB-Orders", "", []string{"psm-unlock", "auditors-read-db", "domain-move", "offboard-jdoe"}},
		{"db.prod", "PasswordManager", []string{"psm-unlock", "auditors-read-db", "domain-move", "offboard-jdoe"}},
		{"DB.TEST.x", "PasswordManager", everywhere},
		{"db.test", "", []string{"psm-unlock", "auditors-read-db", "domain-move", "offboard-jdoe"}},
		{"help desk EU", "", []string{"psm-unlock", "helpdesk-no-retrieve", "domain-move", "offboard-jdoe"}},
		{"Linux-Root", "PasswordManager", everywhere},
		{"Linux-Root", "passwordmanager_linux", []string{"psm-unlock", "linux-exact", "domain-move", "offboard-jdoe"}},
		{"linux", "PasswordManager, PasswordManager_Linux ", []string{"psm-unlock", "linux-exact", "domain-move", "offboard-jdoe"}},
		{"Linux", ",,PasswordManager_Linux2", everywhere},
	}
	for _, tt := range tests {
		ds := p.Applies(tt.safe, tt.cpm)
		var got []string
		for _, d := range ds {
			got = append(got, d.Rule)
			if r := p.Rule(d.Rule); r == nil || d != r.Directive() {
				t.Errorf("Applies(%q) gave directive %+v, not its rule's", tt.safe, d)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Applies(%q, %q) = %q, want %q", tt.safe, tt.cpm, got, tt.want)
		}
	}
	if ds := (&Policy{}).Applies("x", ""); ds != nil {
		t.Errorf("empty policy applies %v", ds)
	}
}

func TestFromFlags(t *testing.T) {
	t.Parallel()
	perms := pam.Perms(pam.ListAccounts, pam.UnlockAccounts)
	p := FromFlags(Member{Name: " PSMAppUsers "}, perms)
	if err := p.Validate(Options{APIUser: "admin"}); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	want := Directive{Rule: "flags", Member: Member{Name: "PSMAppUsers", Type: "Group", SearchIn: "Vault"},
		Action: ActionGrant, Permissions: perms}
	for _, safe := range []string{"Finance", "x", "Linux Root"} {
		ds := p.Applies(safe, "PasswordManager")
		if len(ds) != 1 || ds[0] != want {
			t.Errorf("Applies(%q) = %+v, want [%+v]", safe, ds, want)
		}
	}
	if p.Removals() != nil || p.Conflicts() != nil {
		t.Error("the flags policy removes or conflicts")
	}
	u := FromFlags(Member{Name: "jdoe", Type: "user", SearchIn: "LDAP"}, perms)
	if got := u.Rules[0].Member; got != (Member{Name: "jdoe", Type: "User", SearchIn: "LDAP"}) {
		t.Errorf("member %+v", got)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	perms := pam.Perms(pam.ListAccounts)
	tests := []struct {
		name string
		p    *Policy
		opt  Options
		want string
	}{
		{"API user", FromFlags(Member{Name: "Admin"}, perms), Options{APIUser: "admin"},
			`member "Admin" in rule "flags" is the API user safeperm logs on as; a run must not change its own access`},
		{"CPM", FromFlags(Member{Name: "CPM_EU"}, perms), Options{CPMs: []string{"cpm_eu"}},
			`member "CPM_EU" in rule "flags" is a CPM user; safeperm does not change CPM users`},
		{"built-in", FromFlags(Member{Name: "Operators"}, perms), Options{},
			`member "Operators" in rule "flags" is a built-in Vault user; safeperm does not change built-in users`},
		{"no permissions", FromFlags(Member{Name: "Ops"}, 0), Options{},
			`rule "flags": grant without permissions`},
		{"bad member type", FromFlags(Member{Name: "Ops", Type: "Team"}, perms), Options{},
			`rule "flags": member.type "Team": want User, Group or Role`},
		{"no rules", &Policy{Version: 1}, Options{}, "a policy needs at least one rule"},
		{"hand-made rules", &Policy{Version: 1, Rules: []Rule{
			{Name: "a", Member: Member{Name: "m", Type: "Group"}, Action: ActionAbsent},
			{Name: "A", Safes: []scope.Pattern{scope.NewPattern("*")}, Member: Member{Name: "n", Type: "Group"}, Action: ActionAbsent},
		}}, Options{}, `rule "a" has no "safes"` + "\n" +
			`duplicate rule name "A" (first as rule 1); rule names are compared ignoring case`},
	}
	for _, tt := range tests {
		err := tt.p.Validate(tt.opt)
		if err == nil || err.Error() != tt.want || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate() = %v, want %s", tt.name, err, tt.want)
		}
	}
}

func TestConflicts(t *testing.T) {
	t.Parallel()
	p := mustParse(t, `version: 1
rules:
  - name: psm
    safes: ["*"]
    member: PSMAppUsers
    grant: [listAccounts, unlockAccounts]
  - name: linux-exact
    safes: ["Linux*"]
    member: psmappusers
    exactly: [listAccounts]
  - name: no-unlock-on-test
    safes: ["*-test"]
    member: PSMAppUsers
    revoke: [unlockAccounts]
    except: ["Linux*"]
  - name: other-member
    safes: ["*"]
    member: Auditors
    revoke: [unlockAccounts]
  - name: db-only
    safes: ["DB-*"]
    except: ["DB-*"]
    member: PSMAppUsers
    revoke: [unlockAccounts]
  - name: cpm-a
    safes: ["Win*"]
    managedBy: [CPM_A]
    member: WinAdmins
    grant: [useAccounts]
  - name: cpm-b
    safes: ["*"]
    managedBy: [CPM_B]
    member: WinAdmins
    revoke: [useAccounts]
  - name: cpm-ab
    safes: ["*"]
    managedBy: [cpm_b, CPM_A]
    member: WinAdmins
    absent: true
  - name: move
    safes: ["*"]
    member: NewOps
    copyFrom: OldOps
    removeSource: true
  - name: keep-old
    safes: ["Finance"]
    member: OldOps
    grant: [listAccounts]
  - name: copy-vs-grant
    safes: ["*"]
    member: NewOps
    grant: [listAccounts]
`)
	want := []string{
		`conflict: rules "psm" (p.yaml:3:5) and "linux-exact" (p.yaml:7:5) set unlockAccounts of PSMAppUsers differently on Safes such as "Linux"`,
		`conflict: rules "psm" (p.yaml:3:5) and "no-unlock-on-test" (p.yaml:11:5) set unlockAccounts of PSMAppUsers differently on Safes such as "-test"`,
		`conflict: rules "cpm-a" (p.yaml:25:5) and "cpm-ab" (p.yaml:35:5) set membership of WinAdmins differently on Safes such as "Win" managed by CPM_A`,
		`conflict: rules "move" (p.yaml:40:5) and "keep-old" (p.yaml:45:5) set membership of OldOps differently on Safes such as "Finance"`,
	}
	var got []string
	for _, c := range p.Conflicts() {
		got = append(got, c.String())
		if !c.A.AppliesTo(c.Example, c.ManagingCPM) || !c.B.AppliesTo(c.Example, c.ManagingCPM) {
			t.Errorf("%s: the example is not a Safe both rules apply to", c)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("Conflicts():\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// BenchmarkApplies is the per-Safe cost of matching the issue 12 policy
// (the planner runs it for each of up to 100,000 Safes).
func BenchmarkApplies(b *testing.B) {
	p, err := Load(filepath.Join("testdata", "valid", "issue12.yaml"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	names := []string{"Finance", "DB-Orders", "db.test.x", "Help Desk EU", "Linux-Root-042", "Zürich Ops"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p.Applies(names[i%len(names)], "PasswordManager,PasswordManager_Linux")
	}
}
