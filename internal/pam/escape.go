package pam

import (
	"net/url"
	"strings"
)

const upperhex = "0123456789ABCDEF"

// EscapeSafeName percent-encodes a Safe name the way the PVWA builds
// safeUrlId and JavaScript's encodeURIComponent does: letters, digits and
// -_.!~*'() stay, every other byte of the UTF-8 encoding becomes %XX. A space
// becomes %20, never "+", which the PVWA does not accept in URLs.
func EscapeSafeName(name string) string {
	return escapeBytes(name, func(c byte) bool {
		return isUnreserved(c) || strings.IndexByte("!*'()", c) >= 0
	})
}

// escapeMemberName escapes a member name for use as one path segment:
// url.PathEscape semantics (space as %20, "/", "?", "#", "%" escaped) and, in
// addition, "+" and "&", which the PVWA rejects unescaped (pam-api.md §0).
func escapeMemberName(name string) string {
	return escapeBytes(name, func(c byte) bool {
		return isUnreserved(c) || strings.IndexByte(":@=$", c) >= 0
	})
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '~'
}

func escapeBytes(s string, keep func(byte) bool) string {
	return escapeWhere(s, func(i int) bool { return keep(s[i]) })
}

// escapeWhere returns s with every byte i for which keep(i) is false
// written as %XX.
func escapeWhere(s string, keep func(i int) bool) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !keep(i) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		if keep(i) {
			b.WriteByte(s[i])
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperhex[s[i]>>4])
		b.WriteByte(upperhex[s[i]&15])
	}
	return b.String()
}

// Where an already-encoded string goes, for cleanEncoded.
type encMode int

const (
	encSegment encMode = iota // one path segment: "/" and "?" escaped
	encPath                   // a path: "?" escaped
	encQuery                  // a query
)

// cleanEncoded returns s, which should already be percent-encoded, with only
// the bytes that cannot appear literally where it goes escaped: controls,
// space, non-ASCII, '#', characters URLs never carry raw, '?' outside a
// query, '/' in a segment, and a '%' that does not start a valid escape. A
// valid encoding passes through byte for byte, so a safeUrlId or a nextLink
// goes on the wire verbatim.
func cleanEncoded(s string, mode encMode) string {
	return escapeWhere(s, func(i int) bool { return encodedSafe(s, i, mode) })
}

// encodedSafe reports whether byte i of s may stay as it is.
func encodedSafe(s string, i int, mode encMode) bool {
	c := s[i]
	switch {
	case c <= ' ' || c >= 0x7f || c == '#' || c == '"' || c == '<' || c == '>' || c == '\\' ||
		c == '^' || c == '`' || c == '{' || c == '|' || c == '}':
		return false
	case c == '?':
		return mode == encQuery
	case c == '/':
		return mode != encSegment
	case c == '%':
		return i+2 < len(s) && ishex(s[i+1]) && ishex(s[i+2])
	}
	return true
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// unescapePath decodes an escaped path produced by cleanEncoded, which
// never fails because every '%' starts a valid escape.
func unescapePath(escaped string) string {
	p, err := url.PathUnescape(escaped)
	if err != nil {
		return escaped
	}
	return p
}
