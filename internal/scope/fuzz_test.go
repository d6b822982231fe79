package scope

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"unicode"
	"unicode/utf8"
)

// FuzzParseList checks that any input either fails with a *ListError naming
// the file, or yields trimmed, valid, findable names; and that parsing
// depends on nothing but the input. Seeds: testdata/fuzz/FuzzParseList. Run
// it with
//
//	go test -run='^$' -fuzz=FuzzParseList -fuzztime=30s -fuzzminimizetime=2s ./internal/scope/
//
// (with the default minimize time of 60 s the fuzzer spends most of a short
// run minimizing new inputs and reports 0 execs/sec meanwhile).
func FuzzParseList(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := ParseList(bytes.NewReader(data), "fuzz.txt")
		l2, err2 := ParseList(iotest.HalfReader(bytes.NewReader(data)), "fuzz.txt")
		if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("parsing twice disagrees: %v / %v", err, err2)
		}
		if err != nil {
			le, ok := errors.AsType[*ListError](err)
			if !ok || le.File != "fuzz.txt" || !strings.HasPrefix(err.Error(), "fuzz.txt") {
				t.Fatalf("error %q (%T) is not a *ListError for fuzz.txt", err, err)
			}
			return
		}
		names := l.Names()
		if !slices.Equal(names, l2.Names()) || !slices.Equal(l.Warnings(), l2.Warnings()) {
			t.Fatalf("parsing twice disagrees: %q / %q", names, l2.Names())
		}
		if l.Len() != len(names) {
			t.Fatalf("Len() = %d, len(Names()) = %d", l.Len(), len(names))
		}
		keys := make(map[string]bool)
		for _, n := range names {
			switch {
			case n == "" || n != strings.TrimSpace(n):
				t.Fatalf("name %q is empty or not trimmed", n)
			case !utf8.ValidString(n):
				t.Fatalf("name %q is not valid UTF-8", n)
			case n[0] == '#':
				t.Fatalf("comment %q accepted as a name", n)
			case utf8.RuneCountInString(n) > MaxNameLength:
				t.Fatalf("name %q is too long", n)
			case strings.ContainsFunc(n, func(r rune) bool { return forbidden(r) != "" }):
				t.Fatalf("name %q has a forbidden character", n)
			case !l.Contains(n) || !l.Contains(swapCase(n)):
				t.Fatalf("Contains(%q) or Contains(%q) is false", n, swapCase(n))
			case keys[fold(n)]:
				t.Fatalf("name %q is listed twice", n)
			}
			keys[fold(n)] = true
		}
		if got := l.Unmatched(); !slices.Equal(got, names) {
			t.Fatalf("Unmatched() = %q before any Seen, want all names", got)
		}
	})
}

// swapCase replaces every rune by the next one of its case orbit, e.g.
// "Kß" by "kẞ" — strings.ToUpper is no good here: it maps İ to i, which
// strings.EqualFold does not consider equal.
func swapCase(s string) string {
	return strings.Map(func(r rune) rune { return unicode.SimpleFold(r) }, s)
}
