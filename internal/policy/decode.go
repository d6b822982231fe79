package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/goccy/go-yaml/ast"

	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/scope"
)

// This file turns the syntax tree into rules: the keys of the format, their
// types, and the problems of each key on its own. checkRules (check.go)
// does what needs several rules or the Options.

// top decodes the document: version and rules.
func (d *decoder) top(p *Policy, body ast.Node) {
	body, ok := d.resolve(body)
	if !ok {
		return
	}
	entries, isMap := d.mapping(body)
	if !isMap {
		d.add(d.pos(body), `the policy must be a mapping with the keys "version" and "rules", got %s`, kind(body))
		return
	}
	var haveVersion, haveRules bool
	for _, e := range entries {
		switch {
		case e.dupOf != nil:
			d.add(e.keyPos, "duplicate key %q (first at line %d)", e.key, e.dupOf.Line)
		case e.key == "version":
			haveVersion = true
			d.version(p, e)
		case e.key == "rules":
			haveRules = true
			d.rules(p, e)
		case strings.HasPrefix(e.key, "x-"):
			// An extension key: ignored, a place for anchors (&name) the
			// rules refer to.
		default:
			switch d.unknownKey(e, "", topKeys, "; keys starting with x- are ignored") {
			case "version":
				haveVersion = true
			case "rules":
				haveRules = true
			}
		}
	}
	// A missing key that an unknown key is a misspelling of has been
	// reported as that.
	start := d.pos(body)
	if !haveVersion {
		d.add(start, `missing "version"; add "version: 1"`)
	}
	if !haveRules {
		d.add(start, `missing "rules"; add the list of rules`)
	}
}

func (d *decoder) version(p *Policy, e entry) {
	v, ok := d.resolve(e.value)
	if !ok {
		return
	}
	n, isInt := v.(*ast.IntegerNode)
	if !isInt {
		d.add(d.pos(v), `"version": want the integer %d, got %s`, Version, kind(v))
		return
	}
	// 1, 0x1 and 0o1 are all the integer 1.
	if got := fmt.Sprint(n.GetValue()); got != fmt.Sprint(Version) {
		d.add(d.pos(v), "unsupported version %s; this safeperm reads version %d", got, Version)
		return
	}
	p.Version = Version
}

func (d *decoder) rules(p *Policy, e entry) {
	items, ok := d.list(e.value, `"rules"`, nil)
	if !ok {
		return
	}
	if len(items) == 0 {
		d.add(d.pos(e.value), `"rules" is empty; a policy needs at least one rule`)
		return
	}
	for i, item := range items {
		if r, ok := d.rule(item, i); ok {
			p.Rules = append(p.Rules, r)
		}
	}
}

// list returns the items of a list value; what names the value in
// messages. A string where a list belongs gets the hint "write [...]":
// hint(the string) says what to write, "" for no hint.
func (d *decoder) list(n ast.Node, what string, hint func(string) string) ([]ast.Node, bool) {
	v, ok := d.resolve(n)
	if !ok {
		return nil, false
	}
	seq, isSeq := v.(*ast.SequenceNode)
	if !isSeq {
		msg := message("%s: want a list, got %s", what, kind(v))
		if s, isStr := v.(*ast.StringNode); isStr && hint != nil {
			if h := hint(s.Value); h != "" {
				msg += "; write [" + h + "]"
			}
		}
		d.add(d.pos(v), "%s", msg)
		return nil, false
	}
	return seq.Values, true
}

// quoteHint is the hint of list for a list of names: the string quoted.
func quoteHint(s string) string { return message("%q", s) }

// str returns a string value. Numbers, booleans and null are refused with
// the advice to quote them, since a Safe called 2024 must be written
// "2024".
func (d *decoder) str(n ast.Node, what string) (string, Pos, bool) {
	v, ok := d.resolve(n)
	if !ok {
		return "", Pos{}, false
	}
	pos := d.pos(v)
	switch s := v.(type) {
	case *ast.StringNode:
		return strings.TrimSpace(s.Value), pos, true
	case *ast.LiteralNode:
		return strings.TrimSpace(s.Value.Value), pos, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		d.add(pos, `%s: want a string, got %s; quote it: "%s"`, what, kind(v), v.GetToken().Value)
	default:
		d.add(pos, "%s: want a string, got %s", what, kind(v))
	}
	return "", pos, false
}

func (d *decoder) boolean(n ast.Node, what string) (bool, Pos, bool) {
	v, ok := d.resolve(n)
	if !ok {
		return false, Pos{}, false
	}
	b, isBool := v.(*ast.BoolNode)
	if !isBool {
		d.add(d.pos(v), "%s: want true or false, got %s", what, kind(v))
		return false, d.pos(v), false
	}
	return b.Value, d.pos(v), true
}

// rule decodes the i-th rule (0-based). ok is false when the item is not
// a mapping; a rule with problems is still returned, so that checkRules
// can find more.
func (d *decoder) rule(n ast.Node, i int) (Rule, bool) {
	r := Rule{index: i, keyAt: map[string]Pos{}, valAt: map[string]Pos{}}
	label := fmt.Sprintf("rule %d", i+1)
	v, ok := d.resolve(n)
	if !ok {
		return r, false
	}
	r.Pos = d.pos(v)
	entries, isMap := d.mapping(v)
	if !isMap {
		d.add(r.Pos, "%s: want a mapping of keys (name, safes, member, an action...), got %s", label, kind(v))
		return r, false
	}
	// The name first: every other message names the rule by it.
	for _, e := range entries {
		if e.key != "name" || e.dupOf != nil {
			continue
		}
		name, pos, ok := d.str(e.value, `"name" in `+label)
		switch {
		case !ok:
		case name == "":
			d.add(pos, `"name" in %s is empty`, label)
		case strings.ContainsFunc(name, unicode.IsControl):
			d.add(pos, "rule name %q holds a control character", name)
		default:
			r.Name, label = name, message("rule %q", name)
		}
		r.keyAt["name"], r.valAt["name"] = e.keyPos, pos
	}
	var actions []entry
	misspelt := map[string]bool{} // keys an unknown key was taken for
	for _, e := range entries {
		if e.dupOf != nil {
			d.add(e.keyPos, "duplicate key %q in %s (first at line %d)", e.key, label, e.dupOf.Line)
			continue
		}
		r.keyAt[e.key], r.valAt[e.key] = e.keyPos, d.pos(e.value)
		in := fmt.Sprintf("%q in %s", e.key, label)
		switch e.key {
		case "name":
		case "safes":
			r.Safes = d.patterns(e, label)
		case "except":
			r.Except = d.patterns(e, label)
		case "managedBy":
			r.ManagedBy = d.managedBy(e, label)
		case "member":
			if s, pos, ok := d.str(e.value, in); ok {
				if s == "" {
					d.add(pos, "%s is empty", in)
				}
				r.Member.Name = s
			}
		case "memberType":
			if s, pos, ok := d.str(e.value, in); ok {
				if t, valid := memberType(s); valid {
					r.Member.Type = t
				} else {
					d.add(pos, "memberType %q in %s: want User, Group or Role", s, label)
				}
			}
		case "searchIn":
			if s, pos, ok := d.str(e.value, in); ok {
				if s == "" {
					d.add(pos, `%s is empty; leave it out to search the Vault`, in)
				}
				r.Member.SearchIn = s
			}
		case "grant", "revoke", "exactly":
			actions = append(actions, e)
			r.Action = Action(e.key)
			r.Permissions = d.permissions(e, label)
		case "copyFrom":
			actions = append(actions, e)
			r.Action = ActionCopy
			if s, pos, ok := d.str(e.value, in); ok {
				if s == "" {
					d.add(pos, "%s is empty", in)
				}
				r.Source = s
			}
		case "removeSource":
			if b, _, ok := d.boolean(e.value, in); ok {
				r.RemoveSource = b
			}
		case "absent":
			actions = append(actions, e)
			r.Action = ActionAbsent
			if b, pos, ok := d.boolean(e.value, in); ok && !b {
				d.add(pos, "%s must be true; leave it out otherwise", in)
			}
		default:
			misspelt[d.unknownKey(e, " in "+label, ruleKeys, "")] = true
		}
	}
	// A missing key that an unknown key is a misspelling of has been
	// reported as that.
	if _, ok := r.keyAt["name"]; !ok && !misspelt["name"] {
		d.add(r.Pos, `missing "name" in %s`, label)
	}
	if _, ok := r.keyAt["safes"]; !ok && !misspelt["safes"] {
		d.add(r.Pos, `missing "safes" in %s; name the Safes it applies to (["*"] for every Safe)`, label)
	}
	if _, ok := r.keyAt["member"]; !ok && !misspelt["member"] {
		d.add(r.Pos, `missing "member" in %s; name the user, group or role it manages`, label)
	}
	actionMisspelt := slices.ContainsFunc(actionKeys, func(k string) bool { return misspelt[k] })
	switch len(actions) {
	case 0:
		if !actionMisspelt {
			d.add(r.Pos, "%s has no action; give one of grant, revoke, exactly, copyFrom or absent", label)
		}
	case 1:
	default:
		names := make([]string, len(actions))
		for i, a := range actions {
			names[i] = fmt.Sprintf("%q", a.key)
		}
		count := fmt.Sprint(len(actions))
		if len(actions) == 2 {
			count = "two"
		}
		d.add(actions[1].keyPos, "%s has %s actions, %s and %s; give only one",
			label, count, strings.Join(names[:len(names)-1], ", "), names[len(names)-1])
	}
	if pos, ok := r.keyAt["removeSource"]; ok && r.Action != ActionCopy {
		d.add(pos, `"removeSource" in %s needs "copyFrom"`, label)
	}
	if r.Member.Type == "" {
		r.Member.Type = DefaultMemberType
	}
	if r.Member.SearchIn == "" {
		r.Member.SearchIn = DefaultSearchIn
	}
	return r, true
}

// unknownKey reports e as an unknown key (in names the mapping, e.g.
// ` in rule "x"`), with a suggestion, and returns the key suggested or "".
func (d *decoder) unknownKey(e entry, in string, valid []string, more string) string {
	if s := closest(e.key, valid); s != "" {
		d.add(e.keyPos, "unknown key %q%s; did you mean %q?", e.key, in, s)
		return s
	}
	d.add(e.keyPos, "unknown key %q%s; the keys are %s%s", e.key, in, strings.Join(valid, ", "), more)
	return ""
}

// memberType returns t spelt as the PVWA wants it, ignoring case.
func memberType(t string) (string, bool) {
	for _, v := range []string{"User", "Group", "Role"} {
		if strings.EqualFold(t, v) {
			return v, true
		}
	}
	return "", false
}

// patterns decodes safes or except: a list of Safe name patterns. It
// returns nil when the value is not a list, and a non-nil empty slice for
// an empty list.
func (d *decoder) patterns(e entry, label string) []scope.Pattern {
	in := fmt.Sprintf("%q in %s", e.key, label)
	of := fmt.Sprintf("%q of %s", e.key, label)
	items, ok := d.list(e.value, in, quoteHint)
	if !ok {
		return nil
	}
	if len(items) == 0 && e.key == "safes" {
		d.add(d.pos(e.value), `%s is empty; name the Safes it applies to (["*"] for every Safe)`, in)
	}
	out := make([]scope.Pattern, 0, len(items))
	for i, item := range items {
		s, pos, ok := d.str(item, fmt.Sprintf("item %d of %s", i+1, in))
		if !ok {
			continue
		}
		p, err := scope.ParsePattern(s)
		switch {
		case errors.Is(err, scope.ErrEmptyPattern):
			d.add(pos, "empty Safe name pattern in %s", of)
		case errors.Is(err, scope.ErrNameTooLong):
			d.add(pos, "Safe name pattern %q in %s is longer than %d characters", s, of, scope.MaxNameLength)
		case err != nil:
			what, _ := scope.Forbidden(s)
			d.add(pos, "Safe name pattern %q in %s holds %s, which no Safe name can hold", s, of, what)
		default:
			out = append(out, p)
		}
	}
	return out
}

func (d *decoder) managedBy(e entry, label string) []string {
	in := fmt.Sprintf("%q in %s", e.key, label)
	items, ok := d.list(e.value, in, quoteHint)
	if !ok {
		return nil
	}
	if len(items) == 0 {
		d.add(d.pos(e.value), "%s is empty; leave it out to apply the rule whatever the Safe's CPM", in)
	}
	var out []string
	for i, item := range items {
		s, pos, ok := d.str(item, fmt.Sprintf("item %d of %s", i+1, in))
		switch {
		case !ok:
		case s == "":
			d.add(pos, "empty CPM user name in %q of %s", e.key, label)
		case strings.Contains(s, ","):
			d.add(pos, "CPM user %q in %q of %s holds a comma; give one CPM user per item: [%s]", s, e.key, label,
				strings.Join(splitTrim(s), ", "))
		default:
			if what := memberNameForbidden(s); what != "" {
				d.add(pos, "CPM user %q in %q of %s holds %s, which no user name can hold", s, e.key, label, what)
				continue
			}
			out = append(out, s)
		}
	}
	return out
}

func splitTrim(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// permissions decodes the flag list of grant, revoke or exactly. Flag
// names must be spelt exactly as the PVWA does (the JSON Schema completes
// them so); a misspelt one gets a suggestion.
func (d *decoder) permissions(e entry, label string) pam.PermSet {
	in := fmt.Sprintf("%q in %s", e.key, label)
	hint := func(s string) string {
		h := strings.Join(splitTrim(s), ", ")
		if strings.ContainsFunc(h, unicode.IsControl) {
			return ""
		}
		return h
	}
	items, ok := d.list(e.value, in, hint)
	if !ok {
		return 0
	}
	if len(items) == 0 {
		msg := in + " is empty; name at least one permission"
		if e.key == string(ActionExactly) {
			msg += " (to remove the member, write absent: true)"
		}
		d.add(d.pos(e.value), "%s", msg)
		return 0
	}
	var set pam.PermSet
	for i, item := range items {
		s, pos, ok := d.str(item, fmt.Sprintf("item %d of %s", i+1, in))
		if !ok {
			continue
		}
		p, known := permissionByName[s]
		switch {
		case !known:
			d.add(pos, "unknown permission %q%s", s, suggestPermission(s))
		case set.Has(p):
			d.add(pos, "permission %q is listed twice in %q of %s", s, e.key, label)
		default:
			set = set.With(p)
		}
	}
	return set
}

// permissionByName maps the exact wire name to the flag.
var permissionByName = func() map[string]pam.Permission {
	m := make(map[string]pam.Permission, pam.NumPermissions)
	for i, n := range pam.PermissionNames() {
		m[n] = pam.Permission(i)
	}
	return m
}()
