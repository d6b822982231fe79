package testutil

import (
	"strings"
	"testing"
)

func TestDecodeObject(t *testing.T) {
	t.Parallel()
	tests := []struct {
		line string
		err  string // "" = valid
	}{
		{`{"level":"info","worker":"vm/1","time":"2026-11-23T09:45:12.000Z","message":"x"}`, ""},
		{`{"a":{"b":[{"c":1},{"c":2}]},"d":[1,[2,3]]}`, ""},
		{`{"level":"info","worker":"vm/1","component":"budget","worker":"vm/1"}`, `duplicate key "worker" in the top-level object`},
		{`{"a":{"b":1,"b":2}}`, `duplicate key "b" in .a`},
		{`{"a":[{"x":1,"x":1}]}`, `duplicate key "x" in .a[0]`},
		{`[1,2]`, "not a JSON object"},
		{`{"a":1} {"b":2}`, "data after the object"},
		{`{"a":`, "EOF"},
		{`run 1: done`, "invalid character"},
	}
	for _, tt := range tests {
		m, err := DecodeObject([]byte(tt.line))
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("DecodeObject(%s) = %v, want no error", tt.line, err)
		case tt.err == "" && m == nil:
			t.Errorf("DecodeObject(%s) returned no map", tt.line)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("DecodeObject(%s) = %v, want an error with %q", tt.line, err, tt.err)
		}
	}
}
