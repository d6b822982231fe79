package scope

import (
	"strings"
	"unicode/utf8"
)

// Pattern is a Safe name or a pattern of one: '*' matches any run of
// characters (none included) and '?' exactly one; every other character
// matches itself, ignoring case as Safe names are compared. Neither '*' nor
// '?' can occur in a Safe name, so a plain name is a pattern that matches
// only itself. The zero value matches only the empty name.
type Pattern struct {
	raw    string
	folded string // fold(raw): what Match compares with
	glob   bool   // holds '*' or '?'
}

// NewPattern returns the pattern s (blanks around it are trimmed).
func NewPattern(s string) Pattern {
	s = strings.TrimSpace(s)
	return Pattern{raw: s, folded: fold(s), glob: strings.ContainsAny(s, "*?")}
}

// String returns the pattern as written.
func (p Pattern) String() string { return p.raw }

// IsGlob reports whether the pattern holds '*' or '?', i.e. may match more
// than one name.
func (p Pattern) IsGlob() bool { return p.glob }

// Match reports whether the Safe name matches the pattern, ignoring case.
func (p Pattern) Match(name string) bool {
	n := fold(name)
	if !p.glob {
		return n == p.folded
	}
	return globMatch(p.folded, n)
}

// globMatch matches name against pattern rune by rune, with the classic
// linear backtracking on the last '*' (no exponential blow-up).
func globMatch(pattern, name string) bool {
	px, nx := 0, 0
	starPx, starNx := -1, -1
	for nx < len(name) {
		if px < len(pattern) {
			pr, psize := utf8.DecodeRuneInString(pattern[px:])
			_, nsize := utf8.DecodeRuneInString(name[nx:])
			switch {
			case pr == '*':
				starPx, starNx = px, nx
				px += psize
				continue
			case pr == '?':
				px += psize
				nx += nsize
				continue
			case pattern[px:px+psize] == name[nx:nx+nsize]:
				px += psize
				nx += nsize
				continue
			}
		}
		if starPx < 0 {
			return false
		}
		// Let the last '*' take one more rune and try again.
		_, nsize := utf8.DecodeRuneInString(name[starNx:])
		starNx += nsize
		px, nx = starPx+1, starNx
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}
