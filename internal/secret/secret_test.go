package secret

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValueNeverPrints(t *testing.T) {
	t.Parallel()
	const pw = "Sup3r-S3cret-pw!"
	v := New(pw)
	type holder struct {
		User     string
		Password Value
	}
	h := holder{User: "admin", Password: v}
	js, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	outs := []string{
		fmt.Sprint(v), fmt.Sprintf("%v %+v %#v %s %q %x", v, h, h, v, v, v),
		fmt.Errorf("logon %v: %w", h, errors.New("boom")).Error(),
		string(js),
	}
	for _, o := range outs {
		if strings.Contains(o, pw) {
			t.Errorf("secret leaked in %q", o)
		}
		if !strings.Contains(o, Redacted) {
			t.Errorf("output %q does not show %s", o, Redacted)
		}
	}
	if got := v.Reveal(); got != pw {
		t.Errorf("Reveal() = %q, want %q", got, pw)
	}
}

func TestFromFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name, content, want string
		wantErr             bool
	}{
		{"plain", "pw", "pw", false},
		{"lf", "pw\n", "pw", false},
		{"crlf", "pw\r\n", "pw", false},
		{"inner spaces kept", " p w ", " p w ", false},
		{"empty", "", "", true},
		{"only newline", "\n", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name)
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			v, err := FromFile(p)
			if (err != nil) != tt.wantErr {
				t.Fatalf("FromFile err = %v, wantErr %v", err, tt.wantErr)
			}
			if v.Reveal() != tt.want {
				t.Errorf("FromFile = %q, want %q", v.Reveal(), tt.want)
			}
		})
	}
	if _, err := FromFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("FromFile(missing) succeeded")
	}
}
