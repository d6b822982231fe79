package policy

import (
	"strings"
	"testing"

	"github.com/safeperm/safeperm/internal/pam"
)

func st(perms pam.PermSet, exp ...int64) *State {
	s := &State{Permissions: perms}
	if len(exp) > 0 {
		s.Expiration = &exp[0]
	}
	return s
}

var (
	grp = func(n string) Member { return Member{Name: n, Type: "Group", SearchIn: "Vault"} }
	L   = pam.ListAccounts
	U   = pam.UseAccounts
	R   = pam.RetrieveAccounts
	K   = pam.UnlockAccounts
	V   = pam.ViewAuditLog
)

func TestEvaluate(t *testing.T) {
	t.Parallel()
	grant := Directive{Rule: "g", Member: grp("PSMAppUsers"), Action: ActionGrant, Permissions: pam.Perms(L, K)}
	revoke := Directive{Rule: "r", Member: grp("HelpDesk"), Action: ActionRevoke, Permissions: pam.Perms(R)}
	exactly := Directive{Rule: "x", Member: grp("LinuxAdmins"), Action: ActionExactly, Permissions: pam.Perms(L, U)}
	copyMove := Directive{Rule: "c", Member: grp("New"), Action: ActionCopy, Source: "Old", RemoveSource: true}
	copyKeep := Directive{Rule: "k", Member: grp("New"), Action: ActionCopy, Source: "Old"}
	absent := Directive{Rule: "a", Member: Member{Name: "jdoe", Type: "User"}, Action: ActionAbsent}
	tests := []struct {
		name  string
		ds    []Directive
		state map[string]*State
		want  map[string]*State // Want by member; members not listed must not be targets
		notes map[string]string
		after map[string]string
	}{
		{"grant adds to a member, keeping flags and expiry", []Directive{grant},
			map[string]*State{"psmappusers": st(pam.Perms(L, V), 2000000000)},
			map[string]*State{"PSMAppUsers": st(pam.Perms(L, K, V), 2000000000)}, nil, nil},
		{"grant adds an absent member with just its flags", []Directive{grant}, nil,
			map[string]*State{"PSMAppUsers": st(pam.Perms(L, K))}, nil, nil},
		{"revoke clears, keeps the rest", []Directive{revoke},
			map[string]*State{"helpdesk": st(pam.Perms(L, U, R), 7)},
			map[string]*State{"HelpDesk": st(pam.Perms(L, U), 7)}, nil, nil},
		{"revoke leaves an absent member absent", []Directive{revoke}, nil,
			map[string]*State{"HelpDesk": nil}, nil, nil},
		{"exactly sets the set, keeps expiry", []Directive{exactly},
			map[string]*State{"linuxadmins": st(pam.Perms(L, R, V), 9)},
			map[string]*State{"LinuxAdmins": st(pam.Perms(L, U), 9)}, nil, nil},
		{"exactly adds an absent member", []Directive{exactly}, nil,
			map[string]*State{"LinuxAdmins": st(pam.Perms(L, U))}, nil, nil},
		{"copy with removal: target gets the source's flags and expiry, source goes after it", []Directive{copyMove},
			map[string]*State{"old": st(pam.Perms(L, U, V), 5), "new": st(pam.Perms(R))},
			map[string]*State{"New": st(pam.Perms(L, U, V), 5), "Old": nil}, nil, map[string]string{"Old": "New"}},
		{"copy without removal keeps the source untouched", []Directive{copyKeep},
			map[string]*State{"old": st(pam.Perms(L))},
			map[string]*State{"New": st(pam.Perms(L))}, nil, nil},
		{"copy of an absent source does nothing", []Directive{copyMove},
			map[string]*State{"new": st(pam.Perms(R))},
			map[string]*State{"New": st(pam.Perms(R))}, map[string]string{"New": "not a member"}, nil},
		{"absent removes; absent of an absent member is nothing", []Directive{absent},
			map[string]*State{"jdoe": st(pam.Perms(L))}, map[string]*State{"jdoe": nil}, nil, nil},
		{"rules on several members", []Directive{grant, revoke, absent},
			map[string]*State{"helpdesk": st(pam.Perms(R, L)), "jdoe": st(pam.Perms(U))},
			map[string]*State{"PSMAppUsers": st(pam.Perms(L, K)), "HelpDesk": st(pam.Perms(L)), "jdoe": nil}, nil, nil},
		{"grant and revoke of other flags of one member commute", []Directive{
			{Rule: "g2", Member: grp("HelpDesk"), Action: ActionGrant, Permissions: pam.Perms(V)}, revoke},
			map[string]*State{"helpdesk": st(pam.Perms(L, R))},
			map[string]*State{"HelpDesk": st(pam.Perms(L, V))}, nil, nil},
		{"names compare ignoring case", []Directive{grant, {Rule: "g3", Member: grp("psmappusers"), Action: ActionGrant, Permissions: pam.Perms(V)}},
			nil, map[string]*State{"PSMAppUsers": st(pam.Perms(L, K, V))}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			read := func(n string) *State { return tt.state[strings.ToLower(n)] }
			got, c := Evaluate(tt.ds, read)
			if c != nil {
				t.Fatalf("conflict %v", c)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("targets %+v, want %d", got, len(tt.want))
			}
			for _, tg := range got {
				w, ok := tt.want[tg.Member.Name]
				if !ok {
					t.Errorf("unexpected target %s", tg.Member.Name)
					continue
				}
				if !tg.Want.Equal(w) {
					t.Errorf("%s: want %+v, got %+v", tg.Member.Name, w, tg.Want)
				}
				if !tg.Current.Equal(read(tg.Member.Name)) {
					t.Errorf("%s: current %+v", tg.Member.Name, tg.Current)
				}
				if n := tt.notes[tg.Member.Name]; n != "" && !strings.Contains(tg.Note, n) {
					t.Errorf("%s: note %q, want it to say %q", tg.Member.Name, tg.Note, n)
				}
				if a := tt.after[tg.Member.Name]; a != "" && (len(tg.After) != 1 || tg.After[0] != a) {
					t.Errorf("%s: after %v, want %s", tg.Member.Name, tg.After, a)
				}
			}
		})
	}
}

func TestEvaluateConflicts(t *testing.T) {
	t.Parallel()
	hd := grp("HelpDesk")
	tests := []struct {
		name       string
		ds         []Directive
		state      map[string]*State
		a, b, what string
	}{
		{"grant and revoke of one flag", []Directive{
			{Rule: "give", Member: hd, Action: ActionGrant, Permissions: pam.Perms(R)},
			{Rule: "take", Member: hd, Action: ActionRevoke, Permissions: pam.Perms(R, V)}}, nil, "give", "take", "retrieveAccounts"},
		{"exactly and grant outside it", []Directive{
			{Rule: "x", Member: hd, Action: ActionExactly, Permissions: pam.Perms(L)},
			{Rule: "g", Member: hd, Action: ActionGrant, Permissions: pam.Perms(V)}}, nil, "x", "g", "viewAuditLog"},
		{"absent and grant", []Directive{
			{Rule: "off", Member: hd, Action: ActionAbsent},
			{Rule: "g", Member: grp("helpdesk"), Action: ActionGrant, Permissions: pam.Perms(L)}}, nil, "off", "g", "membership"},
		{"copy source removed and granted", []Directive{
			{Rule: "move", Member: grp("New"), Action: ActionCopy, Source: "HelpDesk", RemoveSource: true},
			{Rule: "g", Member: hd, Action: ActionGrant, Permissions: pam.Perms(L)}},
			map[string]*State{"helpdesk": st(pam.Perms(L))}, "move", "g", "membership"},
		{"copy target granted a flag the source lacks", []Directive{
			{Rule: "move", Member: grp("New"), Action: ActionCopy, Source: "Old"},
			{Rule: "g", Member: grp("New"), Action: ActionGrant, Permissions: pam.Perms(K)}},
			map[string]*State{"old": st(pam.Perms(L))}, "move", "g", "unlockAccounts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, c := Evaluate(tt.ds, func(n string) *State { return tt.state[strings.ToLower(n)] })
			if c == nil {
				t.Fatal("no conflict found")
			}
			if c.RuleA != tt.a || c.RuleB != tt.b || c.What != tt.what {
				t.Errorf("conflict %+v, want %s/%s on %s", c, tt.a, tt.b, tt.what)
			}
			if msg := c.Error(); !strings.Contains(msg, `"`+tt.a+`"`) || !strings.Contains(msg, `"`+tt.b+`"`) {
				t.Errorf("message %q does not name both rules", msg)
			}
		})
	}
	// The same copy with a source that has the flag is no conflict.
	ok := []Directive{
		{Rule: "move", Member: grp("New"), Action: ActionCopy, Source: "Old"},
		{Rule: "g", Member: grp("New"), Action: ActionGrant, Permissions: pam.Perms(K)},
	}
	if _, c := Evaluate(ok, func(n string) *State {
		if strings.EqualFold(n, "Old") {
			return st(pam.Perms(L, K))
		}
		return nil
	}); c != nil {
		t.Errorf("conflict %v where the source has the flag", c)
	}
}

func TestMembers(t *testing.T) {
	t.Parallel()
	ds := []Directive{
		{Member: grp("A")}, {Member: grp("B"), Action: ActionCopy, Source: "C"}, {Member: grp("a")}, {Member: grp("C")},
	}
	if got := strings.Join(Members(ds), ","); got != "A,B,C" {
		t.Errorf("Members = %s, want A,B,C", got)
	}
}
