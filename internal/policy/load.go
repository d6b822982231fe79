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
	"unicode/utf8"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
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
	rs, ws := []rune(d.lines[line-1]), []rune(want)
	if len(ws) == 0 || col < 1 || col > len(rs)+1 {
		return d.at(line, max(col, 1))
	}
	for c := min(col, len(rs)-len(ws)+1); c >= 1; c-- {
		if slices.Equal(rs[c-1:c-1+len(ws)], ws) {
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
