package scope

import (
	"errors"
	"fmt"
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

// ErrEmptyPattern: a pattern is empty or only blanks.
var ErrEmptyPattern = errors.New("empty Safe name pattern")

// ParsePattern returns the pattern s (blanks around it trimmed) after
// checking that it can match a Safe name: it is not empty, not longer than
// MaxNameLength characters, and holds no character that no Safe name can
// hold (see Forbidden). Errors wrap ErrEmptyPattern, ErrNameTooLong or
// ErrInvalidChar.
func ParsePattern(s string) (Pattern, error) {
	p := NewPattern(s)
	if p.raw == "" {
		return Pattern{}, ErrEmptyPattern
	}
	if n := utf8.RuneCountInString(p.raw); n > MaxNameLength {
		return Pattern{}, fmt.Errorf("%q: %w (%d characters, at most %d)", p.raw, ErrNameTooLong, n, MaxNameLength)
	}
	if what, col := Forbidden(p.raw); what != "" {
		return Pattern{}, fmt.Errorf("%q: %w: %s at column %d", p.raw, ErrInvalidChar, what, col)
	}
	return p, nil
}

// Forbidden describes the first character of s that no Safe name can hold
// (one of \ / : " < > |, a tab or another control character, or a byte
// order mark), and returns its 1-based column in characters; "" and 0 when
// there is none. '*' and '?' are not forbidden: they make a pattern.
func Forbidden(s string) (what string, col int) {
	for _, r := range s {
		col++
		if what := forbidden(r); what != "" {
			return what, col
		}
	}
	return "", 0
}

// Fold returns the key under which Safe names are compared: two names are
// the same Safe exactly when their keys are equal (strings.EqualFold).
// Pattern.MatchFolded takes such a key, so that a name matched against many
// patterns is folded once.
func Fold(name string) string { return fold(name) }

// String returns the pattern as written.
func (p Pattern) String() string { return p.raw }

// IsGlob reports whether the pattern holds '*' or '?', i.e. may match more
// than one name.
func (p Pattern) IsGlob() bool { return p.glob }

// Folded returns the pattern as Match compares it: Fold of the pattern.
func (p Pattern) Folded() string { return p.folded }

// IsZero reports whether p is the zero Pattern (or the empty pattern).
func (p Pattern) IsZero() bool { return p.raw == "" }

// Match reports whether the Safe name matches the pattern, ignoring case.
func (p Pattern) Match(name string) bool { return p.MatchFolded(fold(name)) }

// MatchFolded is Match for a name already folded with Fold.
func (p Pattern) MatchFolded(key string) bool {
	if !p.glob {
		return key == p.folded
	}
	return globMatch(p.folded, key)
}

// MatchesAll reports whether the pattern matches every name: it is made
// of '*' only.
func (p Pattern) MatchesAll() bool {
	return p.raw != "" && strings.Trim(p.raw, "*") == ""
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
