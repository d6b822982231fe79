package scope

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// fold returns the key under which name is stored and looked up: two valid
// UTF-8 strings have the same key exactly when strings.EqualFold reports them
// equal (Unicode simple case folding). Each rune is replaced by the smallest
// rune of its case-folding orbit, so "K", "k" and the Kelvin sign U+212A all
// become "K". Bytes that are not valid UTF-8 are kept as they are, so they
// never collide with U+FFFD.
func fold(s string) string {
	upper := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return foldUnicode(s)
		}
		if 'a' <= c && c <= 'z' {
			upper = true
		}
	}
	if !upper {
		return s
	}
	// For ASCII letters the upper-case letter is the smallest of the orbit.
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func foldUnicode(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteByte(s[i])
		} else {
			b.WriteRune(foldRune(r))
		}
		i += size
	}
	return b.String()
}

// foldRune returns the smallest rune that is case-equivalent to r.
func foldRune(r rune) rune {
	m := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		m = min(m, f)
	}
	return m
}
