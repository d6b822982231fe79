package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/safeperm/safeperm/internal/pam"
)

// State is a member of one Safe as read: its flags and membership expiry
// (Unix seconds, nil for none). A nil *State means "not a member".
type State struct {
	Permissions pam.PermSet
	Expiration  *int64
}

// Equal reports whether s and o are the same state (both nil counts).
func (s *State) Equal(o *State) bool {
	if s == nil || o == nil {
		return s == o
	}
	if s.Permissions != o.Permissions || (s.Expiration == nil) != (o.Expiration == nil) {
		return false
	}
	return s.Expiration == nil || *s.Expiration == *o.Expiration
}

// Target is what the directives of one Safe ask of one member: the state it
// is in (Current) and the state it must be in (Want, nil: not a member).
type Target struct {
	// Member is the member; Type and SearchIn come from the first rule
	// that manages it (empty for a member only removed as a copy source).
	Member Member
	// Rules are the names of the rules that concern the member, in
	// directive order.
	Rules []string
	// Current is the state read; Want the state the rules ask for.
	Current, Want *State
	// Note explains a Want equal to Current that a reader might not
	// expect, e.g. a copyFrom whose source is not a member.
	Note string
	// After names members whose write must succeed before this one is
	// made (a copyFrom source is removed only after its target's write).
	After []string
}

// Changed reports whether the member must be written.
func (t Target) Changed() bool { return !t.Current.Equal(t.Want) }

// SafeConflict is two rules that set the same flag (or the membership) of the
// same member to different values on one Safe.
type SafeConflict struct {
	// RuleA and RuleB are the two rules' names, in directive order.
	RuleA, RuleB string
	// Member is the member they disagree about.
	Member string
	// What is the flag name, or "membership" when one rule removes the
	// member and the other gives it flags.
	What string
}

// Error says what the rules disagree about, e.g. `rules "a" and "b" set
// retrieveAccounts of "HelpDesk" to different values`.
func (c *SafeConflict) Error() string {
	if c.What == "membership" {
		return fmt.Sprintf("rules %q and %q disagree on whether %q is a member", c.RuleA, c.RuleB, c.Member)
	}
	return fmt.Sprintf("rules %q and %q set %s of %q to different values", c.RuleA, c.RuleB, c.What, c.Member)
}

// Members returns the names of the members the directives concern: their
// members and copy sources, each once (compared ignoring case), in
// directive order. These are what a worker must read.
func Members(ds []Directive) []string {
	var out []string
	add := func(n string) {
		for _, o := range out {
			if SameMember(o, n) {
				return
			}
		}
		out = append(out, n)
	}
	for _, d := range ds {
		add(d.Member.Name)
		if d.Action == ActionCopy {
			add(d.Source)
		}
	}
	return out
}

// Evaluate works out, for one Safe, what its directives ask of each member
// they concern, given each member's state as read (read returns nil for a
// non-member; it is called with the names Members returns). Directives
// that do not clash commute, so the order of the rules does not matter; a
// copyFrom takes the source's state as read. It returns one Target per
// member that a directive manages or removes (in the order of Members,
// copy sources that are only read left out), or the first SafeConflict: then
// nothing on the Safe may be written.
func Evaluate(ds []Directive, read func(name string) *State) ([]Target, *SafeConflict) {
	type effect struct {
		rule string
		e    Effect
	}
	byMember := map[string]*Target{}
	effects := map[string][]effect{}
	var order []string
	key := func(n string) string { return strings.ToLower(strings.TrimSpace(n)) }
	target := func(m Member, rule string) *Target {
		k := key(m.Name)
		t, ok := byMember[k]
		if !ok {
			cur := read(m.Name)
			t = &Target{Member: m, Current: cur, Want: cloneState(cur)}
			byMember[k] = t
			order = append(order, k)
		}
		if t.Member.Type == "" && m.Type != "" {
			t.Member.Type, t.Member.SearchIn = m.Type, m.SearchIn
		}
		if !slices.Contains(t.Rules, rule) {
			t.Rules = append(t.Rules, rule)
		}
		return t
	}
	for _, d := range ds {
		effs := d.Effects()
		if d.Action == ActionCopy {
			src := read(d.Source)
			if src == nil {
				t := target(d.Member, d.Rule)
				t.Note = fmt.Sprintf("copyFrom %q: the source is not a member of this Safe", d.Source)
				continue // nothing to copy, nothing to remove
			}
			effs[0].Copy = false
			effs[0].Set = src.Permissions
			effs[0].Clear = allPerms &^ src.Permissions
		}
		for i, e := range effs {
			m := d.Member
			if i > 0 { // the copy source, removed
				m = Member{Name: d.Source}
			}
			t := target(m, d.Rule)
			k := key(m.Name)
			for _, prev := range effects[k] {
				if clash, what := Clash(prev.e, e); clash {
					return nil, &SafeConflict{RuleA: prev.rule, RuleB: d.Rule, Member: t.Member.Name, What: what}
				}
			}
			effects[k] = append(effects[k], effect{rule: d.Rule, e: e})
			apply(t, d, e, read)
			if i > 0 {
				t.After = append(t.After, d.Member.Name)
			}
		}
	}
	out := make([]Target, 0, len(order))
	for _, k := range order {
		out = append(out, *byMember[k])
	}
	return out, nil
}

// apply folds one effect into t.Want.
func apply(t *Target, d Directive, e Effect, read func(string) *State) {
	switch {
	case e.Absent:
		t.Want = nil
	case d.Action == ActionCopy:
		src := read(d.Source)
		t.Want = &State{Permissions: src.Permissions, Expiration: src.Expiration}
	case t.Want == nil && e.Adds:
		t.Want = &State{Permissions: e.Set}
	case t.Want != nil:
		t.Want.Permissions = (t.Want.Permissions | e.Set) &^ e.Clear
	}
}

func cloneState(s *State) *State {
	if s == nil {
		return nil
	}
	c := *s
	return &c
}
