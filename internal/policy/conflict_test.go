package policy

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/safeperm/safeperm/internal/scope"
)

func pats(ss ...string) []scope.Pattern {
	out := make([]scope.Pattern, len(ss))
	for i, s := range ss {
		out[i] = scope.NewPattern(s)
	}
	return out
}

func TestWitness(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		a, b   []string
		except []string
		want   string // "" = no witness
	}{
		{"star and star", []string{"*"}, []string{"*"}, nil, "x"},
		{"prefix and star", []string{"*"}, []string{"Linux*"}, nil, "Linux"},
		{"keeps the pattern's case", []string{"db.*"}, []string{"*"}, nil, "db."},
		{"two prefixes, one longer", []string{"DB-*"}, []string{"db-prod*"}, nil, "DB-prod"},
		{"disjoint prefixes", []string{"DB-*"}, []string{"Linux*"}, nil, ""},
		{"prefix and suffix", []string{"DB-*"}, []string{"*-test"}, nil, "DB-test"},
		{"overlapping prefix and suffix", []string{"ab*"}, []string{"*ba"}, nil, "aba"},
		{"question marks count runes", []string{"??"}, []string{"é*"}, nil, "éx"},
		{"question vs literal length", []string{"Linux?"}, []string{"Linux"}, nil, ""},
		{"question vs star", []string{"Linux?"}, []string{"*x"}, nil, "Linuxx"},
		{"multi-byte literal", []string{"Zürich*"}, []string{"ZÜRICH Ops"}, nil, "Zürich Ops"},
		{"Kelvin sign", []string{"\u212Aelvin"}, []string{"k*"}, nil, "\u212Aelvin"},
		{"plain names equal ignoring case", []string{"Finance"}, []string{"FINANCE"}, nil, "Finance"},
		{"plain names differ", []string{"Finance"}, []string{"HR"}, nil, ""},
		{"except removes the shortest", []string{"DB-*"}, []string{"*"}, []string{"DB-"}, "DB-x"},
		{"except removes all", []string{"DB-*"}, []string{"*"}, []string{"db*"}, ""},
		{"except star", []string{"*"}, []string{"*"}, []string{"*"}, ""},
		{"except a class", []string{"db.*"}, []string{"*"}, []string{"db.test.*", "db.?"}, "db."},
		{"except a class, longer", []string{"db.*"}, []string{"*"}, []string{"db.", "db.?"}, "db.xx"},
		{"excepts that cover nothing", []string{"a*"}, []string{"*b"}, []string{"c*"}, "ab"},
		{"one of several patterns", []string{"DB-*", "db.*"}, []string{"*.prod"}, nil, "db.prod"},
		{"no blank at the ends", []string{"* Ops"}, []string{"*"}, nil, "x Ops"},
		{"a blank is no name", []string{"?"}, []string{"* *"}, nil, ""},
		{"a blank inside is", []string{"???"}, []string{"* *"}, nil, "x x"},
		{"every literal rune used", []string{"*"}, []string{"xyzqjkvw0123456789*"}, nil, "xyzqjkvw0123456789"},
		{"empty group", nil, []string{"*"}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := Witness([][]scope.Pattern{pats(tt.a...), pats(tt.b...)}, pats(tt.except...))
			if ok != (tt.want != "") || got != tt.want {
				t.Fatalf("Witness(%q, %q, except %q) = %q, %v; want %q", tt.a, tt.b, tt.except, got, ok, tt.want)
			}
			if ok && !witnessHolds(got, [][]scope.Pattern{pats(tt.a...), pats(tt.b...)}, pats(tt.except...)) {
				t.Errorf("witness %q does not match", got)
			}
		})
	}
}

func witnessHolds(w string, groups [][]scope.Pattern, except []scope.Pattern) bool {
	if w == "" || strings.TrimSpace(w) != w {
		return false
	}
	for _, g := range groups {
		hit := false
		for _, p := range g {
			hit = hit || p.Match(w)
		}
		if !hit {
			return false
		}
	}
	for _, p := range except {
		if p.Match(w) {
			return false
		}
	}
	return true
}

// TestWitnessExhaustive compares Witness with a brute-force search over
// every name up to a length, for random patterns over a small alphabet
// (with a multi-byte rune and case variants): whenever a name exists,
// Witness finds one at most as long, and what it finds always holds.
func TestWitnessExhaustive(t *testing.T) {
	t.Parallel()
	const maxLen = 5
	patRunes := []string{"a", "A", "b", "é", "É", "*", "?", "*"}
	nameRunes := []string{"a", "b", "é", "c"} // c stands for every other rune
	rng := rand.New(rand.NewPCG(1, 2))
	randPat := func() scope.Pattern {
		var b strings.Builder
		for range 1 + rng.IntN(4) {
			b.WriteString(patRunes[rng.IntN(len(patRunes))])
		}
		return scope.NewPattern(b.String())
	}
	var names []string
	var gen func(prefix string, n int)
	gen = func(prefix string, n int) {
		if prefix != "" {
			names = append(names, prefix)
		}
		if n == 0 {
			return
		}
		for _, r := range nameRunes {
			gen(prefix+r, n-1)
		}
	}
	gen("", maxLen)
	n := 2000
	if testing.Short() {
		n = 200
	}
	var withWitness int
	for range n {
		groups := [][]scope.Pattern{{randPat()}, {randPat(), randPat()}}
		var except []scope.Pattern
		for range rng.IntN(3) {
			except = append(except, randPat())
		}
		got, ok := Witness(groups, except)
		if ok {
			withWitness++
		}
		if ok && !witnessHolds(got, groups, except) {
			t.Fatalf("Witness(%v, except %v) = %q, which does not hold", groups, except, got)
		}
		shortest := ""
		for _, name := range names {
			if witnessHolds(name, groups, except) {
				shortest = name
				break
			}
		}
		switch {
		case shortest != "" && !ok:
			t.Fatalf("Witness(%v, except %v) found nothing; %q holds", groups, except, shortest)
		case shortest != "" && utf8.RuneCountInString(got) > utf8.RuneCountInString(shortest):
			t.Fatalf("Witness(%v, except %v) = %q, longer than %q", groups, except, got, shortest)
		case shortest == "" && ok && utf8.RuneCountInString(got) <= maxLen:
			t.Fatalf("Witness(%v, except %v) = %q, but brute force found nothing", groups, except, got)
		}
	}
	// The random cases must exercise both answers to prove anything.
	if withWitness < n/10 || withWitness > n-n/10 {
		t.Errorf("%d of %d random cases have a witness; the generator needs rebalancing", withWitness, n)
	}
}

// A pathological policy (long patterns full of '*' and '?') is checked in
// bounded work: Conflicts returns, and what it reports holds.
func TestConflictsPathological(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("version: 1\nrules:\n")
	for i := range 10 {
		act := "grant"
		if i%2 == 1 {
			act = "revoke"
		}
		pat := strings.Repeat(string([]rune{'*', 'a' + rune(i%7), '?'}), 30)
		exc := strings.Repeat(string([]rune{'?', 'a' + rune(i%5), '*'}), 30)
		fmt.Fprintf(&b, "  - name: r%d\n    safes: [%q, %q]\n    except: [%q]\n    member: m\n    %s: [listAccounts]\n",
			i, pat, pat[:40], exc, act)
	}
	p := mustParse(t, b.String())
	for _, c := range p.Conflicts() {
		if !c.A.AppliesTo(c.Example, "") || !c.B.AppliesTo(c.Example, "") {
			t.Errorf("%s: the example does not apply to both rules", c)
		}
	}
}
