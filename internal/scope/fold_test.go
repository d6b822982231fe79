package scope

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestFoldAgreesWithEqualFold(t *testing.T) {
	t.Parallel()
	words := []string{
		"", "a", "A", "abc", "ABC", "aBc", "Zürich", "ZÜRICH", "zurich",
		"ÜNÏCØDÉ", "ünïcødé", "K", "k", "\u212A", "ß", "ẞ", "SS", "ſ", "s", "S",
		"Σ", "σ", "ς", "İ", "i", "I", "ı", "ǅ", "Ǆ", "ǆ", "東京", "\uFFFD",
	}
	for _, a := range words {
		for _, b := range words {
			if got, want := fold(a) == fold(b), strings.EqualFold(a, b); got != want {
				t.Errorf("fold(%q) == fold(%q) is %v, strings.EqualFold says %v", a, b, got, want)
			}
		}
	}
}

// Every rune folds to the same key as every member of its case orbit, and
// to a member of that orbit.
func TestFoldRuneEveryRune(t *testing.T) {
	t.Parallel()
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		f := foldRune(r)
		if g := foldRune(unicode.SimpleFold(r)); g != f {
			t.Fatalf("foldRune(%U) = %U but foldRune(SimpleFold) = %U", r, f, g)
		}
		if !strings.EqualFold(string(r), string(f)) {
			t.Fatalf("foldRune(%U) = %U, which EqualFold does not match", r, f)
		}
	}
}

func TestFoldInvalidUTF8(t *testing.T) {
	t.Parallel()
	if fold("a\xff") == fold("a\uFFFD") {
		t.Error(`fold("a\xff") collides with fold("a\uFFFD")`)
	}
	if got, want := fold("ü\xffB"), "Ü\xffB"; got != want {
		t.Errorf("fold = %q, want %q", got, want)
	}
}
