package policy

import (
	"fmt"
	"strings"

	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/scope"
)

// Version is the only policy file format version this build reads.
const Version = 1

// Action is what a rule does to its member on every Safe it applies to.
// Exactly one per rule.
type Action string

// The actions, named as their keys in the policy file.
const (
	// ActionGrant sets Rule.Permissions true and keeps every other flag and
	// the expiry; an absent member is added with just these flags.
	ActionGrant Action = "grant"
	// ActionRevoke sets Rule.Permissions false and keeps everything else;
	// an absent member stays absent.
	ActionRevoke Action = "revoke"
	// ActionExactly sets Rule.Permissions true and every other flag false,
	// keeping the expiry; an absent member is added with these flags.
	ActionExactly Action = "exactly"
	// ActionCopy gives the member exactly the flags and expiry of
	// Rule.Source where the source is a member (added or updated), and
	// does nothing where it is not. With RemoveSource the source is removed
	// after the member's write succeeded.
	ActionCopy Action = "copyFrom"
	// ActionAbsent removes the member where it is present.
	ActionAbsent Action = "absent"
)

// Actions lists every action in the order the documentation gives them.
func Actions() []Action {
	return []Action{ActionGrant, ActionRevoke, ActionExactly, ActionCopy, ActionAbsent}
}

// Valid reports whether a is one of the defined actions.
func (a Action) Valid() bool {
	switch a {
	case ActionGrant, ActionRevoke, ActionExactly, ActionCopy, ActionAbsent:
		return true
	}
	return false
}

// Removes reports whether a directive with this action (and removeSource)
// can remove a member from a Safe: such policies run only when the user
// allows removals.
func (d Directive) Removes() bool {
	return d.Action == ActionAbsent || (d.Action == ActionCopy && d.RemoveSource)
}

// Defaults of a rule's member, as for planner run's --member-type and
// --search-in.
const (
	DefaultMemberType = "Group"
	DefaultSearchIn   = "Vault"
)

// Member names a Safe member and says how to add it.
type Member struct {
	// Name is the memberName, compared ignoring case.
	Name string `json:"name"`
	// Type is the memberType used when the member is added: User, Group
	// or Role.
	Type string `json:"type"`
	// SearchIn is where the PVWA looks the member up when it is added:
	// "Vault" or a directory name ("" lets the PVWA default apply).
	SearchIn string `json:"searchIn,omitempty"`
}

// Pos is a place in a policy file, 1-based. A zero Line means the whole
// file (or a policy that came from flags, not a file).
type Pos struct {
	File string
	Line int
	Col  int
}

// String returns "file:line:col", "file" or "" as far as known.
func (p Pos) String() string {
	switch {
	case p.Line > 0 && p.File != "":
		return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
	case p.Line > 0:
		return fmt.Sprintf("%d:%d", p.Line, p.Col)
	}
	return p.File
}

// Rule is one rule of a policy: which Safes, which member, one action.
type Rule struct {
	// Name identifies the rule in reports, summaries and errors; unique
	// within a policy.
	Name string
	// Safes are the Safe name patterns the rule applies to (at least one);
	// Except the patterns it never applies to. Compared ignoring case.
	Safes, Except []scope.Pattern
	// ManagedBy, when not empty, limits the rule to Safes whose
	// managingCPM names one of these CPM users (ignoring case).
	ManagedBy []string
	// Member is the member the rule manages.
	Member Member
	// Action is what the rule does.
	Action Action
	// Permissions are the flags of ActionGrant, ActionRevoke and
	// ActionExactly.
	Permissions pam.PermSet
	// Source is, for ActionCopy, the member whose flags and expiry are
	// copied.
	Source string
	// RemoveSource is, for ActionCopy, whether the source is removed once
	// the member's write succeeded.
	RemoveSource bool
	// Pos is where the rule starts in its file.
	Pos Pos

	// index is the rule's place in the file (0-based), for messages about
	// a rule without a usable name.
	index int
	// keyAt and valAt are where each key and its value are in the file
	// (nil for rules not read from a file).
	keyAt, valAt map[string]Pos
}

// label names the i-th rule of a policy in messages: `rule "name"`, or
// `rule 3` when it has no name (counting the rules of the file, when it
// was read from one).
func (r *Rule) label(i int) string {
	switch {
	case r.Name != "":
		return message("rule %q", r.Name)
	case r.keyAt != nil:
		i = r.index
	}
	return fmt.Sprintf("rule %d", i+1)
}

// at returns where the value of key is, or the rule's start.
func (r *Rule) at(key string) Pos {
	if p, ok := r.valAt[key]; ok {
		return p
	}
	return r.Pos
}

// AppliesTo reports whether the rule applies to a Safe: one of Safes
// matches its name, none of Except does, and ManagedBy is empty or names
// one of the CPM users in managingCPM (a comma-separated list, as the
// PVWA gives it). Names are compared ignoring case.
func (r *Rule) AppliesTo(safeName, managingCPM string) bool {
	return r.appliesFolded(scope.Fold(safeName), managingCPM)
}

func (r *Rule) appliesFolded(key, managingCPM string) bool {
	if !matchAny(r.Safes, key) || matchAny(r.Except, key) {
		return false
	}
	return len(r.ManagedBy) == 0 || managedBy(r.ManagedBy, managingCPM)
}

func matchAny(ps []scope.Pattern, key string) bool {
	for _, p := range ps {
		if p.MatchFolded(key) {
			return true
		}
	}
	return false
}

// managedBy reports whether the comma-separated managingCPM names one of
// cpms, ignoring case.
func managedBy(cpms []string, managingCPM string) bool {
	for rest := managingCPM; rest != ""; {
		var name string
		name, rest, _ = strings.Cut(rest, ",")
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		for _, c := range cpms {
			if strings.EqualFold(c, name) {
				return true
			}
		}
	}
	return false
}

// Policy is a checked set of rules, as Load, Parse or FromFlags return it.
// It is not changed after that, so its methods are safe for concurrent
// use.
type Policy struct {
	// File is where the policy was read from ("" for FromFlags).
	File string
	// Version is the format version, Version.
	Version int
	// Rules are the rules in file order.
	Rules []Rule
}

// FlagsRule is the name of the one rule FromFlags makes.
const FlagsRule = "flags"

// FromFlags returns the policy that planner run's --member and
// --permissions flags have always meant: one rule, named "flags", granting
// perms to member on every Safe. An empty member Type or SearchIn gets
// DefaultMemberType or DefaultSearchIn. Run Validate on it to refuse a
// member that must never be changed.
func FromFlags(member Member, perms pam.PermSet) *Policy {
	member.Name = strings.TrimSpace(member.Name)
	if member.Type == "" {
		member.Type = DefaultMemberType
	} else if t, ok := memberType(member.Type); ok {
		member.Type = t
	}
	if member.SearchIn == "" {
		member.SearchIn = DefaultSearchIn
	}
	return &Policy{Version: Version, Rules: []Rule{{
		Name: FlagsRule, Safes: []scope.Pattern{scope.NewPattern("*")},
		Member: member, Action: ActionGrant, Permissions: perms,
	}}}
}

// Applies returns what the policy does on one Safe: the directives of
// the rules that apply to it (see Rule.AppliesTo), in file order; nil when
// none does. It folds the name once and allocates only the result, since
// the planner calls it for every Safe of the Vault.
func (p *Policy) Applies(safeName, managingCPM string) []Directive {
	key := scope.Fold(safeName)
	var out []Directive
	for i := range p.Rules {
		if r := &p.Rules[i]; r.appliesFolded(key, managingCPM) {
			out = append(out, r.Directive())
		}
	}
	return out
}

// Removals returns the names of the rules that can remove a member from a
// Safe (absent, or copyFrom with removeSource), in file order. planner run
// refuses such a policy without --allow-removals.
func (p *Policy) Removals() []string {
	var out []string
	for i := range p.Rules {
		if p.Rules[i].Directive().Removes() {
			out = append(out, p.Rules[i].Name)
		}
	}
	return out
}

// Rule returns the rule named name (ignoring case), or nil.
func (p *Policy) Rule(name string) *Rule {
	for i := range p.Rules {
		if strings.EqualFold(p.Rules[i].Name, name) {
			return &p.Rules[i]
		}
	}
	return nil
}

// Validate checks a policy that was not read by Parse (one made by
// FromFlags or by hand) as Parse would: at least one rule, each complete
// and valid, unique names, and no rule naming a member that must never be
// changed (see Options). Version is not checked: it belongs to files. It
// returns an Errors (errors.Is(err, ErrInvalid)) or nil.
func (p *Policy) Validate(opt Options) error {
	var errs Errors
	add := func(pos Pos, format string, args ...any) {
		errs = append(errs, &Error{Pos: pos, Msg: message(format, args...)})
	}
	if len(p.Rules) == 0 {
		add(Pos{File: p.File}, "a policy needs at least one rule")
	}
	for i := range p.Rules {
		r := &p.Rules[i]
		if len(r.Safes) == 0 {
			add(r.Pos, `%s has no "safes"`, r.label(i))
		}
		if err := r.Directive().Validate(); err != nil {
			add(r.Pos, "%v", err)
		}
	}
	checkRules(p.Rules, opt, add)
	if len(errs) > 0 {
		return errs.sorted()
	}
	return nil
}

// Directive returns the rule as it applies to one Safe: what a job
// carries.
func (r *Rule) Directive() Directive {
	return Directive{Rule: r.Name, Member: r.Member, Action: r.Action, Permissions: r.Permissions,
		Source: r.Source, RemoveSource: r.RemoveSource}
}

// Directive is one rule as it applies to one Safe, without its patterns:
// the part of a rule a worker needs. It is part of the job message (JSON
// field names are stable).
type Directive struct {
	// Rule is the rule's name.
	Rule string `json:"rule"`
	// Member is the member the rule manages.
	Member Member `json:"member"`
	// Action is what to do.
	Action Action `json:"action"`
	// Permissions are the flags of grant, revoke and exactly.
	Permissions pam.PermSet `json:"permissions,omitzero"`
	// Source is, for copyFrom, the member to copy from.
	Source string `json:"source,omitempty"`
	// RemoveSource is, for copyFrom, whether to remove the source after
	// the member's write succeeded.
	RemoveSource bool `json:"removeSource,omitempty"`
}

// Validate checks the directive on its own (as a worker must before it
// acts on a job).
func (d Directive) Validate() error {
	var probs []string
	if d.Rule == "" {
		probs = append(probs, "missing rule")
	}
	if strings.TrimSpace(d.Member.Name) == "" {
		probs = append(probs, "missing member.name")
	}
	switch d.Member.Type {
	case "User", "Group", "Role":
	default:
		probs = append(probs, fmt.Sprintf("member.type %q: want User, Group or Role", d.Member.Type))
	}
	switch d.Action {
	case ActionGrant, ActionRevoke, ActionExactly:
		if d.Permissions == 0 {
			probs = append(probs, string(d.Action)+" without permissions")
		}
	case ActionCopy:
		if strings.TrimSpace(d.Source) == "" {
			probs = append(probs, "copyFrom without source")
		} else if SameMember(d.Source, d.Member.Name) {
			probs = append(probs, "copyFrom names the member itself")
		}
	case ActionAbsent:
	default:
		probs = append(probs, fmt.Sprintf("unknown action %q", d.Action))
	}
	if d.RemoveSource && d.Action != ActionCopy {
		probs = append(probs, "removeSource without copyFrom")
	}
	if len(probs) > 0 {
		return fmt.Errorf("rule %q: %s", d.Rule, strings.Join(probs, "; "))
	}
	return nil
}

// SameMember reports whether two member names are the same member: the
// Vault compares them ignoring case.
func SameMember(a, b string) bool {
	return strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(b))
}

// Effect is what one directive does to one member, as far as it is known
// without reading the Safe: the flags it sets true (Set), the flags it sets
// false (Clear), whether it removes the member (Absent), or whether the
// member takes the flags of another member (Copy: unknown until read).
type Effect struct {
	// Member is the member affected.
	Member string
	// Set and Clear are the flags set true and false.
	Set, Clear pam.PermSet
	// Absent is true when the member is removed.
	Absent bool
	// Copy is true when the member gets the flags of Source (a copyFrom
	// target); Set and Clear are then empty until the source is known.
	Copy bool
	// Adds is true when the directive adds the member where it is absent.
	Adds bool
}

// allPerms holds every Gen2 flag.
var allPerms = func() pam.PermSet {
	var s pam.PermSet
	for i := range pam.NumPermissions {
		s = s.With(pam.Permission(i))
	}
	return s
}()

// Effects returns what d does, member by member: one Effect for the
// rule's member, and for copyFrom with removeSource one more for the
// source (Absent).
func (d Directive) Effects() []Effect {
	e := Effect{Member: d.Member.Name}
	switch d.Action {
	case ActionGrant:
		e.Set, e.Adds = d.Permissions, true
	case ActionRevoke:
		e.Clear = d.Permissions
	case ActionExactly:
		e.Set, e.Clear, e.Adds = d.Permissions, allPerms&^d.Permissions, true
	case ActionCopy:
		e.Copy, e.Adds = true, true
	case ActionAbsent:
		e.Absent = true
	}
	out := []Effect{e}
	if d.Action == ActionCopy && d.RemoveSource {
		out = append(out, Effect{Member: d.Source, Absent: true})
	}
	return out
}

// Clash reports whether two effects on the same member set some flag to
// different values (a member removed by one and given flags by the other
// counts), and names the first such flag or "membership". Copy effects
// clash only once resolved (Set and Clear filled in, Copy false).
func Clash(a, b Effect) (bool, string) {
	if !SameMember(a.Member, b.Member) || a.Copy || b.Copy {
		return false, ""
	}
	if x := (a.Set & b.Clear) | (a.Clear & b.Set); x != 0 {
		return true, x.Names()[0]
	}
	if (a.Absent && b.Set != 0) || (b.Absent && a.Set != 0) {
		return true, "membership"
	}
	return false, ""
}
