package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"

	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/scope"
)

// Options are what a policy is checked against besides its own text.
type Options struct {
	// APIUser is the user safeperm logs on as; no rule may name it (as
	// member or copyFrom), since a run must not change its own access.
	// Empty skips that check (planner policy check without --user).
	APIUser string
	// CPMs are CPM user names besides PasswordManager (planner run's
	// --cpm). No rule may name a CPM user, nor a name any rule's
	// managedBy lists.
	CPMs []string
}

// MaxFileSize is the largest policy file accepted, in bytes. A policy is
// a few rules; a larger file is not a policy.
const MaxFileSize = 4 << 20

// Load reads and checks the policy file at path; see Parse. A file that
// cannot be read is reported like a problem in it (an Errors naming the
// file), so every refusal prints the same way.
func Load(path string, opt Options) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileError(path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fileError(path, err)
	}
	return Parse(data, path, opt)
}

func fileError(path string, err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		err = pe.Err // the path is in Pos already
	}
	return Errors{{Pos: Pos{File: path}, Msg: "cannot read the policy file: " + err.Error()}}
}

// Parse reads a policy from data; file names it in positions (usually the
// path). It returns the policy, or an Errors holding every problem found
// (errors.Is(err, ErrInvalid)), each with its file, line and column. A YAML
// syntax error stops the reading, so it is reported alone.
//
// The file must be exactly as docs/policy.md describes: unknown keys,
// wrong types, duplicate keys and names, rules with no or two actions,
// unknown permissions, impossible patterns and members that must never be
// changed (opt.APIUser, built-in Vault users, CPM users) are all refused.
func Parse(data []byte, file string, opt Options) (*Policy, error) {
	d := &decoder{file: file}
	p := d.parse(data)
	checkRules(p.Rules, opt, d.add)
	if len(d.errs) > 0 {
		return nil, d.errs.sorted()
	}
	return p, nil
}

// decoder turns the YAML syntax tree into a Policy, collecting problems.
type decoder struct {
	file    string
	lines   []string // the source, for positions (see pos)
	anchors []anchor
	errs    Errors
}

type anchor struct {
	name  string
	pos   Pos
	value ast.Node
}

func (d *decoder) add(pos Pos, format string, args ...any) {
	d.errs = append(d.errs, &Error{Pos: pos, Msg: message(format, args...)})
}

func (d *decoder) at(line, col int) Pos { return Pos{File: d.file, Line: line, Col: col} }

// The keys of the file, in the order the documentation gives them.
var (
	topKeys  = []string{"version", "rules"}
	ruleKeys = []string{"name", "safes", "except", "managedBy", "member", "memberType", "searchIn",
		"grant", "revoke", "exactly", "copyFrom", "removeSource", "absent"}
	// actionKeys are the rule keys that are actions; exactly one per rule.
	actionKeys = []string{"grant", "revoke", "exactly", "copyFrom", "absent"}
)

func (d *decoder) parse(data []byte) *Policy {
	p := &Policy{File: d.file}
	if !d.checkBytes(data) {
		return p
	}
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	d.lines = strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	f, err := parser.ParseBytes(data, 0, parser.AllowDuplicateMapKey())
	if err != nil {
		d.syntaxError(err)
		return p
	}
	var body ast.Node
	for _, doc := range f.Docs {
		if doc == nil || doc.Body == nil {
			continue
		}
		if body != nil {
			d.add(d.pos(doc.Body), "a second YAML document is not allowed; a policy file holds one policy")
			continue
		}
		body = doc.Body
		ast.Walk(anchorCollector{d}, doc.Body)
	}
	if body == nil {
		d.add(d.at(1, 1), `the policy file is empty; it needs "version: 1" and "rules"`)
		return p
	}
	d.top(p, body)
	return p
}

// checkBytes refuses what is not UTF-8 text before the YAML parser sees
// it, with the advice that fixes it.
func (d *decoder) checkBytes(data []byte) bool {
	if len(data) > MaxFileSize {
		d.add(Pos{File: d.file}, "the file is larger than %d MiB; a policy is a few rules", MaxFileSize>>20)
		return false
	}
	if bytes.HasPrefix(data, []byte{0xFF, 0xFE}) || bytes.HasPrefix(data, []byte{0xFE, 0xFF}) {
		d.add(d.at(1, 1), "the file is UTF-16; save it as UTF-8")
		return false
	}
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			d.add(d.at(line, col), "invalid UTF-8 (byte 0x%02X); save the file as UTF-8", data[i])
			return false
		case r == 0:
			d.add(d.at(line, col), "NUL byte; is the file UTF-16, or not a text file?")
			return false
		case r == '\n':
			line, col = line+1, 0
		}
		i += size
		col++
	}
	return true
}

func (d *decoder) syntaxError(err error) {
	var se *yaml.SyntaxError
	if !errors.As(err, &se) || se.Token == nil || se.Token.Position == nil {
		d.add(d.at(1, 1), "YAML syntax error: %v", err)
		return
	}
	msg := se.Message
	pos := d.tokenPos(se.Token)
	switch {
	case strings.Contains(msg, "'\t'"):
		msg += "; indent with spaces, not tabs"
	case pos.Line <= len(d.lines) && unquotedStar.MatchString(d.lines[pos.Line-1]):
		msg += `; a Safe name pattern starting with * must be quoted: "*"`
	}
	d.add(pos, "YAML syntax error: %s", msg)
}

// unquotedStar finds a plain scalar starting with '*' where a list item or
// value starts: YAML reads it as an alias.
var unquotedStar = regexp.MustCompile(`(^|[\[,:]|-)\s*\*`)

// anchorCollector records every anchor (&name) in document order, so that
// an alias (*name) resolves to the last anchor of that name before it.
type anchorCollector struct{ d *decoder }

func (c anchorCollector) Visit(n ast.Node) ast.Visitor {
	if a, ok := n.(*ast.AnchorNode); ok && a.Name != nil {
		c.d.anchors = append(c.d.anchors, anchor{name: a.Name.GetToken().Value, pos: c.d.pos(a), value: a.Value})
	}
	return c
}

// pos is where n starts. goccy/go-yaml places a plain scalar followed by
// blanks at the end of the line too far right (by the number of blanks),
// so the column is checked against the source and moved back to where the
// token's text really starts.
func (d *decoder) pos(n ast.Node) Pos {
	if n == nil {
		return d.at(1, 1)
	}
	switch v := n.(type) {
	case *ast.MappingNode:
		if len(v.Values) > 0 {
			return d.pos(v.Values[0])
		}
	case *ast.MappingValueNode:
		return d.pos(v.Key)
	}
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return d.at(1, 1)
	}
	return d.tokenPos(tk)
}

func (d *decoder) tokenPos(tk *token.Token) Pos {
	line, col := tk.Position.Line, tk.Position.Column
	if line < 1 || line > len(d.lines) {
		return d.at(max(line, 1), max(col, 1))
	}
	want := tk.Value
	switch tk.Type {
	case token.SingleQuoteType:
		want = "'"
	case token.DoubleQuoteType:
		want = `"`
	}
	if i := strings.IndexAny(want, " \t\n"); i > 0 {
		want = want[:i]
	}
	rs := []rune(d.lines[line-1])
	if want == "" || col < 1 || col > len(rs)+1 {
		return d.at(line, max(col, 1))
	}
	for c := min(col, len(rs)); c >= 1; c-- {
		if strings.HasPrefix(string(rs[c-1:]), want) {
			return d.at(line, c)
		}
	}
	return d.at(line, col)
}

// resolve returns the node n stands for: the value of an anchor, of the
// anchor an alias names, or of a tag. ok is false (and the problem
// reported) for an alias that names no anchor or an unsupported tag.
func (d *decoder) resolve(n ast.Node) (ast.Node, bool) {
	for range 32 { // aliases of aliases, bounded
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.TagNode:
			switch tag := v.Start.Value; tag {
			case "!!str", "!!int", "!!bool", "!!seq", "!!map", "!!null", "!!float":
				if tag == "!!str" {
					if s, ok := v.Value.(ast.ScalarNode); ok && v.Value.Type() != ast.StringType {
						return ast.String(&token.Token{Type: token.StringType, Value: fmt.Sprint(s.GetValue()),
							Position: v.Value.GetToken().Position}), true
					}
				}
				n = v.Value
			default:
				d.add(d.pos(v), "YAML tag %s is not supported", tag)
				return nil, false
			}
		case *ast.AliasNode:
			name := v.Value.GetToken().Value
			at := d.pos(v)
			var target ast.Node
			for _, a := range d.anchors {
				if a.name == name && (a.pos.Line < at.Line || (a.pos.Line == at.Line && a.pos.Col < at.Col)) {
					target = a.value
				}
			}
			if target == nil {
				d.add(at, "alias *%s names no anchor (&%s) before it; a Safe name pattern starting with * must be quoted: %q",
					name, name, "*"+name)
				return nil, false
			}
			n = target
		default:
			return n, n != nil
		}
	}
	d.add(d.pos(n), "aliases nested too deep")
	return nil, false
}

// entry is one key of a mapping, with merged keys (<<) resolved.
type entry struct {
	key    string
	keyPos Pos
	value  ast.Node
	// dupOf is the position of the earlier entry with the same key, for
	// a key written twice in the same mapping.
	dupOf *Pos
}

// mapping returns the entries of a mapping node, or ok false when n is
// not a mapping. Entries merged in with "<<" come after the mapping's own
// and never replace them, as YAML specifies.
func (d *decoder) mapping(n ast.Node) (entries []entry, ok bool) {
	var values []*ast.MappingValueNode
	switch v := n.(type) {
	case *ast.MappingNode:
		values = v.Values
	case *ast.MappingValueNode:
		values = []*ast.MappingValueNode{v}
	default:
		return nil, false
	}
	seen := map[string]Pos{}
	var merged []entry
	for _, mv := range values {
		if mv.Key == nil {
			continue
		}
		if _, isMerge := mv.Key.(*ast.MergeKeyNode); isMerge {
			merged = append(merged, d.merge(mv)...)
			continue
		}
		e := entry{key: keyText(mv.Key), keyPos: d.pos(mv.Key), value: mv.Value}
		if first, dup := seen[e.key]; dup {
			e.dupOf = &first
		} else {
			seen[e.key] = e.keyPos
		}
		entries = append(entries, e)
	}
	for _, e := range merged {
		if _, own := seen[e.key]; !own && e.dupOf == nil {
			seen[e.key] = e.keyPos
			entries = append(entries, e)
		}
	}
	return entries, true
}

// merge returns the entries a merge key ("<<: *defaults") brings in.
func (d *decoder) merge(mv *ast.MappingValueNode) []entry {
	v, ok := d.resolve(mv.Value)
	if !ok {
		return nil
	}
	var sources []ast.Node
	if seq, isSeq := v.(*ast.SequenceNode); isSeq {
		sources = seq.Values
	} else {
		sources = []ast.Node{v}
	}
	var out []entry
	for _, s := range sources {
		s, ok := d.resolve(s)
		if !ok {
			continue
		}
		es, isMap := d.mapping(s)
		if !isMap {
			d.add(d.pos(s), `"<<" merges a mapping or a list of mappings, got %s`, kind(s))
			continue
		}
		for _, e := range es {
			if e.dupOf == nil {
				out = append(out, e)
			}
		}
	}
	return out
}

func keyText(k ast.Node) string {
	if tk := k.GetToken(); tk != nil {
		if _, scalar := k.(ast.ScalarNode); scalar {
			return tk.Value
		}
	}
	return strings.TrimSpace(k.String())
}

// kind names the type of a YAML value for messages.
func kind(n ast.Node) string {
	switch n.Type() {
	case ast.StringType, ast.LiteralType:
		return "a string"
	case ast.IntegerType:
		return "an integer"
	case ast.FloatType, ast.InfinityType, ast.NanType:
		return "a number"
	case ast.BoolType:
		return "true/false"
	case ast.NullType:
		return "nothing"
	case ast.SequenceType:
		return "a list"
	case ast.MappingType, ast.MappingValueType:
		return "a mapping"
	}
	return "a " + n.Type().String()
}

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
	var got string
	switch v := n.GetValue().(type) {
	case int64:
		if v == Version {
			p.Version = Version
			return
		}
		got = fmt.Sprint(v)
	case uint64:
		if v == Version {
			p.Version = Version
			return
		}
		got = fmt.Sprint(v)
	default:
		got = n.GetToken().Value
	}
	d.add(d.pos(v), "unsupported version %s; this safeperm reads version %d", got, Version)
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
			r.Name, label = name, fmt.Sprintf("rule %q", name)
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
	noAction := !slices.ContainsFunc(actionKeys, func(k string) bool { return misspelt[k] })
	switch len(actions) {
	case 0:
		if !noAction {
			break
		}
		d.add(r.Pos, "%s has no action; give one of grant, revoke, exactly, copyFrom or absent", label)
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
