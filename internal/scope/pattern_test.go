package scope

import "testing"

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
