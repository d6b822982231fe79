package scope

import (
	"errors"
	"strings"
	"testing"
)

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"*", "", true},
		{"*", "Linux Root", true},
		{"DB-*", "db-orders", true},
		{"DB-*", "DB-", true},
		{"DB-*", "XDB-1", false},
		{"db.*", "DB.Prod", true},
		{"db.test.*", "db.TEST.x", true},
		{"Help Desk*", "help desk tier 2", true},
		{"Linux?", "linux1", true},
		{"Linux?", "linux", false},
		{"Linux?", "linux12", false},
		{"*a*b*c", "xaybzc", true},
		{"*a*b*c", "xaybzcd", false},
		{"?", "é", true},
		{"Kelvin", "\u212Aelvin", true},
		{"Plain", "plain", true},
		{"Plain", "plains", false},
		{"a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
	}
	for _, tt := range tests {
		if got := NewPattern(tt.pattern).Match(tt.name); got != tt.want {
			t.Errorf("NewPattern(%q).Match(%q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestParsePattern(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		wantErr error
		wantMsg string
	}{
		{"DB-*", nil, ""},
		{"  Linux?  ", nil, ""},
		{"", ErrEmptyPattern, "empty Safe name pattern"},
		{" \t ", ErrEmptyPattern, "empty Safe name pattern"},
		{"a/b*", ErrInvalidChar, `"a/b*": character not allowed in a Safe name: '/' at column 2`},
		{"x\x01", ErrInvalidChar, `"x\x01": character not allowed in a Safe name: control character U+0001 at column 2`},
		{strings.Repeat("é", MaxNameLength+1), ErrNameTooLong, "name too long (257 characters, at most 256)"},
	}
	for _, tt := range tests {
		p, err := ParsePattern(tt.in)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("ParsePattern(%q) error %v, want %v", tt.in, err, tt.wantErr)
			continue
		}
		if err != nil {
			if !strings.HasSuffix(err.Error(), tt.wantMsg) {
				t.Errorf("ParsePattern(%q) error %q, want it to end in %q", tt.in, err, tt.wantMsg)
			}
			continue
		}
		if p.String() != strings.TrimSpace(tt.in) {
			t.Errorf("ParsePattern(%q) = %q", tt.in, p)
		}
	}
}

func TestPatternMatchFolded(t *testing.T) {
	t.Parallel()
	p := NewPattern("Zü*")
	if !p.MatchFolded(Fold("ZÜRICH")) || p.MatchFolded(Fold("Zurich")) {
		t.Error("MatchFolded disagrees with Match")
	}
	if !NewPattern("***").MatchesAll() || NewPattern("*a").MatchesAll() || NewPattern("").MatchesAll() {
		t.Error("MatchesAll wrong")
	}
}
