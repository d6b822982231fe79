package policy

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/safeperm/safeperm/internal/scope"
)

// Conflict is a pair of rules that provably set the same flag of the same
// member to different values on some Safe (see Clash). A run reports every
// Safe where both apply as failed, so planner policy check refuses a policy
// with a proven conflict.
type Conflict struct {
	// A and B are the rules, A first in the file. They point into the
	// policy's Rules.
	A, B *Rule
	// Member is the member both rules set, as rule A spells it.
	Member string
	// Flag is the permission set differently, or "membership" when one
	// rule removes the member and the other gives it flags.
	Flag string
	// Example is a Safe name both rules apply to (a proof, not
	// necessarily a Safe that exists).
	Example string
	// ManagingCPM is, when either rule has managedBy, a CPM user the
	// example Safe must be managed by for both rules to apply.
	ManagingCPM string
}

// String returns `conflict: rules "a" (file:1:3) and "b" (file:9:3) set
// unlockAccounts of PSMAppUsers differently on Safes such as "Linux"`.
func (c Conflict) String() string {
	where := func(r *Rule) string {
		if p := r.Pos.String(); p != "" {
			return message("%q (%s)", r.Name, p)
		}
		return message("%q", r.Name)
	}
	s := message("conflict: rules %s and %s set %s of %s differently on Safes such as %q",
		where(c.A), where(c.B), c.Flag, c.Member, c.Example)
	if c.ManagingCPM != "" {
		s += message(" managed by %s", c.ManagingCPM)
	}
	return s
}

// Conflicts returns the pairs of rules it can prove conflict from the
// rules alone, in file order of the first rule, then the second: both
// name the same member (SameMember), their effects clash (Clash), their
// managedBy lists are compatible (either empty, or both name a common CPM
// user), and some Safe name matches both rules' safes and neither rule's
// except (it is found by an exact search over the patterns and given as
// Conflict.Example).
//
// copyFrom targets cannot be proven in conflict here, since their flags
// come from the source at run time: the worker finds those conflicts on
// the Safes where they happen.
func (p *Policy) Conflicts() []Conflict {
	var out []Conflict
	effects := make([][]Effect, len(p.Rules))
	for i := range p.Rules {
		effects[i] = p.Rules[i].Directive().Effects()
	}
	for i := range p.Rules {
		for j := i + 1; j < len(p.Rules); j++ {
			a, b := &p.Rules[i], &p.Rules[j]
			cpm, ok := commonCPM(a.ManagedBy, b.ManagedBy)
			if !ok {
				continue
			}
			var example string
			var searched, found bool
			for _, ea := range effects[i] {
				for _, eb := range effects[j] {
					clash, flag := Clash(ea, eb)
					if !clash {
						continue
					}
					if !searched {
						searched = true
						example, found = Witness([][]scope.Pattern{a.Safes, b.Safes}, slices.Concat(a.Except, b.Except))
						// The search is exact; checking its answer the way a
						// run will keeps a bug in it from claiming a proof.
						found = found && a.AppliesTo(example, cpm) && b.AppliesTo(example, cpm)
					}
					if !found {
						continue
					}
					out = append(out, Conflict{A: a, B: b, Member: ea.Member, Flag: flag, Example: example, ManagingCPM: cpm})
				}
			}
		}
	}
	return out
}

// commonCPM reports whether two managedBy lists can both hold for one
// Safe, and names a CPM user that makes them (the first of a, when a
// names one; "" when neither restricts).
func commonCPM(a, b []string) (string, bool) {
	switch {
	case len(a) == 0 && len(b) == 0:
		return "", true
	case len(a) == 0:
		return b[0], true
	case len(b) == 0:
		return a[0], true
	}
	for _, x := range a {
		if containsFold(b, x) {
			return x, true
		}
	}
	return "", false
}

// maxWitnessWork bounds the search of Witness: pattern positions visited,
// summed over the transitions tried. Real patterns need a few thousand; a
// pathological set (dozens of long patterns full of '*' and '?') gives up
// after a few milliseconds rather than stall a check, and its conflicts
// are left to the worker.
const maxWitnessWork = 1_000_000

// Witness returns a shortest non-empty Safe name that matches at least one
// pattern of every group and no pattern of except, or false when there is
// none (or the patterns are too many to decide within a bounded search).
//
// It searches the product of the patterns' automata breadth-first. A
// pattern at position k of its runes is a state; '*' loops on any rune and
// may be skipped, '?' takes any rune, a literal rune takes itself (after
// case folding). Runes that occur in no pattern behave alike, so the
// alphabet is the patterns' literal runes plus one other rune, and the
// search is exact. The name is spelt with the patterns' own case where it
// uses their runes, and with 'x' (or another rune none of them holds)
// elsewhere.
func Witness(groups [][]scope.Pattern, except []scope.Pattern) (string, bool) {
	var pats [][]rune
	var group []int          // group of pats[i]; -1 for except
	spell := map[rune]rune{} // how the name spells a rune no pattern places
	addPat := func(p scope.Pattern, g int) {
		folded, raw := []rune(p.Folded()), []rune(p.String())
		if len(folded) == len(raw) {
			for i, r := range folded {
				if _, ok := spell[r]; !ok && r != '*' && r != '?' {
					spell[r] = raw[i]
				}
			}
		}
		pats = append(pats, folded)
		group = append(group, g)
	}
	for g, ps := range groups {
		if len(ps) == 0 {
			return "", false
		}
		for _, p := range ps {
			addPat(p, g)
		}
	}
	for _, p := range except {
		addPat(p, -1)
	}
	// The alphabet: every literal rune, then one rune none holds.
	var alphabet []rune
	for _, p := range pats {
		for _, r := range p {
			if r != '*' && r != '?' && !slices.Contains(alphabet, r) {
				alphabet = append(alphabet, r)
			}
		}
	}
	slices.Sort(alphabet)
	// The other rune goes first: "DB-x" reads better than "DB--".
	other := rune(-1)
	for _, r := range "xyzqjkvw0123456789" {
		if f := foldRune(r); !slices.Contains(alphabet, f) {
			other, spell[f] = f, r
			break
		}
	}
	for r := rune(0xC0); other < 0; r++ { // every ASCII letter and digit is a literal
		if foldRune(r) == r && unicode.IsLetter(r) && !slices.Contains(alphabet, r) {
			other = r
		}
	}
	alphabet = slices.Insert(alphabet, 0, other)

	// State numbering: pattern i position k is bit base[i]+k.
	base := make([]int, len(pats)+1)
	for i, p := range pats {
		base[i+1] = base[i] + len(p) + 1
	}
	words := (base[len(pats)] + 63) / 64
	type state []uint64
	set := func(s state, i, k int) {
		// Setting k also sets the positions after a run of '*'.
		for {
			b := base[i] + k
			s[b/64] |= 1 << (b % 64)
			if k < len(pats[i]) && pats[i][k] == '*' {
				k++
				continue
			}
			return
		}
	}
	has := func(s state, b int) bool { return s[b/64]&(1<<(b%64)) != 0 }
	start := make(state, words)
	for i := range pats {
		set(start, i, 0)
	}
	step := func(s state, c rune) state {
		next := make(state, words)
		for i, p := range pats {
			for k := 0; k < len(p); k++ {
				if !has(s, base[i]+k) {
					continue
				}
				switch p[k] {
				case '*':
					set(next, i, k)
				case '?':
					set(next, i, k+1)
				case c:
					set(next, i, k+1)
				}
			}
		}
		return next
	}
	accepts := func(s state) bool {
		ok := make([]bool, len(groups))
		for i, p := range pats {
			if !has(s, base[i]+len(p)) {
				continue
			}
			if group[i] < 0 {
				return false
			}
			ok[group[i]] = true
		}
		return !slices.Contains(ok, false)
	}
	// alive: every group still has a pattern that may match.
	alive := func(s state) bool {
		live := make([]bool, len(groups))
		for i := range pats {
			if group[i] < 0 {
				continue
			}
			lo, hi := base[i], base[i+1]
			for b := lo; b < hi; b++ {
				if has(s, b) {
					live[group[i]] = true
					break
				}
			}
		}
		return !slices.Contains(live, false)
	}
	key := func(s state) string {
		var b strings.Builder
		for _, w := range s {
			for range 8 {
				b.WriteByte(byte(w))
				w >>= 8
			}
		}
		return b.String()
	}
	type node struct {
		s      state
		parent int
		r      rune
	}
	nodes := []node{{s: start, parent: -1}}
	// The start is not marked seen: it differs from a node with the same
	// state in that a name may not begin with a blank.
	seen := map[string]bool{}
	work := 0
	for head := 0; head < len(nodes); head++ {
		cur := nodes[head]
		for _, c := range alphabet {
			if work += base[len(pats)]; work > maxWitnessWork {
				return "", false
			}
			// Safe names are trimmed: no blank first or last.
			blank := unicode.IsSpace(c)
			if head == 0 && blank {
				continue
			}
			next := step(cur.s, c)
			if !alive(next) {
				continue
			}
			if !blank && accepts(next) {
				runes := []rune{c}
				for n := head; nodes[n].parent >= 0; n = nodes[n].parent {
					runes = append(runes, nodes[n].r)
				}
				slices.Reverse(runes)
				b := spellWitness(runes, groups, spell)
				return b, true
			}
			k := key(next)
			if seen[k] {
				continue
			}
			seen[k] = true
			nodes = append(nodes, node{s: next, parent: head, r: c})
		}
	}
	return "", false
}

// foldRune returns r as scope.Fold spells it.
func foldRune(r rune) rune {
	f, _ := utf8.DecodeRuneInString(scope.Fold(string(r)))
	return f
}

// spellWitness spells the folded name w for people: where a pattern of the
// groups places a literal rune, as that pattern writes it (the first
// pattern that matches w wins, group by group); elsewhere as spell says.
func spellWitness(w []rune, groups [][]scope.Pattern, spell map[rune]rune) string {
	out := make([]rune, len(w))
	for _, g := range groups {
		for _, p := range g {
			folded, raw := []rune(p.Folded()), []rune(p.String())
			if len(folded) != len(raw) {
				continue
			}
			lit, ok := alignGlob(folded, w)
			if !ok {
				continue
			}
			for j, k := range lit {
				if k >= 0 && out[j] == 0 {
					out[j] = raw[k]
				}
			}
			break
		}
	}
	for j, r := range w {
		if out[j] == 0 {
			out[j] = r
			if s, ok := spell[r]; ok {
				out[j] = s
			}
		}
	}
	return string(out)
}

// alignGlob matches the folded name w against the folded pattern p and
// returns, for each rune of w, the index in p of the literal that matched
// it, or -1 where a wildcard did.
func alignGlob(p, w []rune) ([]int, bool) {
	// can[i][j]: p[i:] matches w[j:].
	can := make([][]bool, len(p)+1)
	for i := range can {
		can[i] = make([]bool, len(w)+1)
	}
	can[len(p)][len(w)] = true
	for i := len(p) - 1; i >= 0; i-- {
		for j := len(w); j >= 0; j-- {
			switch {
			case p[i] == '*':
				can[i][j] = can[i+1][j] || (j < len(w) && can[i][j+1])
			case j == len(w):
			case p[i] == '?' || p[i] == w[j]:
				can[i][j] = can[i+1][j+1]
			}
		}
	}
	if !can[0][0] {
		return nil, false
	}
	lit := make([]int, len(w))
	for i, j := 0, 0; j < len(w); {
		switch {
		case p[i] == '*' && can[i+1][j]:
			i++ // let the star take nothing more, so literals come early
		case p[i] == '*':
			lit[j] = -1
			j++
		case p[i] == '?':
			lit[j] = -1
			i, j = i+1, j+1
		default:
			lit[j] = i
			i, j = i+1, j+1
		}
	}
	return lit, true
}
