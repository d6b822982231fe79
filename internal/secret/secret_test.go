package secret

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

const pw = "Sup3r-S3cret-pw!"

// Holders of a secret in every position fmt treats differently.
type (
	exported struct {
		User     string
		Password Value
	}
	unexported struct {
		user     string
		password Value
	}
	nested struct {
		name  string
		inner unexported
		ptr   *unexported
		list  []Value
		byKey map[string]Value
		any   any
	}
)

// hexOf is the secret as %x and %X would print it.
var hexOf = []string{fmt.Sprintf("%x", pw), fmt.Sprintf("%X", pw)}

// leaks reports whether out shows the secret in plain text or hex.
func leaks(out string) bool {
	if strings.Contains(out, pw) {
		return true
	}
	for _, h := range hexOf {
		if strings.Contains(out, h) {
			return true
		}
	}
	return false
}

// TestValueNeverPrints guards the trap fmt sets for secrets in unexported
// fields: it prints them by reflection, without calling String or Format,
// and its bad-verb message ("%!s(T=...)") prints what a pointer to a struct
// points to. The %s and %q cases of the unexported holders catch the
// latter.
func TestValueNeverPrints(t *testing.T) {
	t.Parallel()
	v := New(pw)
	un := unexported{user: "admin", password: v}
	// Every holder shows the redaction: a Value reached through its
	// methods prints Redacted, one reached by reflection (an unexported
	// field) prints its shown field with the verb asked for, e.g. hex
	// for %x.
	values := []struct {
		name string
		v    any
	}{
		{"Value", v},
		{"*Value", &v},
		{"exported field", exported{User: "admin", Password: v}},
		{"*exported field", &exported{User: "admin", Password: v}},
		{"unexported field", un},
		{"*unexported field", &un},
		{"nested unexported", nested{name: "n", inner: un, ptr: &un, list: []Value{v, v}, byKey: map[string]Value{"k": v}, any: v}},
		{"slice", []Value{v}},
		{"map", map[string]Value{"pw": v}},
		{"[]any", []any{un, v}},
	}
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3s", "%p", "%T"}
	for _, tt := range values {
		for _, verb := range verbs {
			t.Run(tt.name+" "+verb, func(t *testing.T) {
				t.Parallel()
				out := fmt.Sprintf(verb, tt.v)
				if leaks(out) {
					t.Fatalf("Sprintf(%q) leaked the secret: %s", verb, out)
				}
				marker := fmt.Sprintf(verb, Redacted)
				if verb != "%T" && verb != "%p" && !strings.Contains(out, Redacted) && !strings.Contains(out, marker) {
					t.Errorf("Sprintf(%q) = %s, want it to show %s or %s", verb, out, Redacted, marker)
				}
			})
		}
	}
}

func TestValueNeverEncodes(t *testing.T) {
	t.Parallel()
	v := New(pw)
	h := exported{User: "admin", Password: v}
	encode := []struct {
		name string
		out  func(t *testing.T) string
	}{
		{"json.Marshal Value", func(t *testing.T) string { return mustJSON(t, v) }},
		{"json.Marshal struct", func(t *testing.T) string { return mustJSON(t, h) }},
		{"json.Marshal map", func(t *testing.T) string { return mustJSON(t, map[string]any{"p": v, "h": &h}) }},
		{"zerolog Interface", func(t *testing.T) string {
			var b bytes.Buffer
			log := zerolog.New(&b)
			log.Info().Interface("cfg", h).Interface("pw", v).Msg("x")
			return b.String()
		}},
		{"zerolog Any and Stringer", func(t *testing.T) string {
			var b bytes.Buffer
			log := zerolog.New(&b)
			log.Info().Any("cfg", &h).Stringer("pw", v).Msg("x")
			return b.String()
		}},
		{"zerolog Fields", func(t *testing.T) string {
			var b bytes.Buffer
			log := zerolog.New(&b)
			log.Info().Fields(map[string]any{"pw": v}).Msg("x")
			return b.String()
		}},
		{"slog JSON", func(t *testing.T) string {
			var b bytes.Buffer
			slog.New(slog.NewJSONHandler(&b, nil)).Info("x", "pw", v, "cfg", h)
			return b.String()
		}},
		{"slog text", func(t *testing.T) string {
			var b bytes.Buffer
			slog.New(slog.NewTextHandler(&b, nil)).Info("x", "pw", v)
			return b.String()
		}},
		{"fmt.Errorf %v of unexported holder", func(t *testing.T) string {
			return fmt.Errorf("logon %v: %w", unexported{"u", v}, errors.New("boom")).Error()
		}},
		{"fmt.Errorf %+v, wrapped twice", func(t *testing.T) string {
			inner := fmt.Errorf("cfg %+v", nested{inner: unexported{"u", v}})
			return fmt.Errorf("start: %w", inner).Error()
		}},
		{"errors.Join", func(t *testing.T) string {
			return errors.Join(fmt.Errorf("%#v", h), fmt.Errorf("%s", v)).Error()
		}},
	}
	for _, tt := range encode {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := tt.out(t)
			if leaks(out) {
				t.Fatalf("secret leaked: %s", out)
			}
			if !strings.Contains(out, Redacted) {
				t.Errorf("output %s does not show %s", out, Redacted)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestValueAccessors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		v          Value
		reveal     string
		zero       bool
		str, gostr string
	}{
		{"zero value", Value{}, "", true, "", "secret.Value(" + Redacted + ")"},
		{"New empty", New(""), "", true, "", "secret.Value(" + Redacted + ")"},
		{"secret", New(pw), pw, false, Redacted, "secret.Value(" + Redacted + ")"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.v.Reveal(); got != tt.reveal {
				t.Errorf("Reveal() = %q, want %q", got, tt.reveal)
			}
			if got := tt.v.IsZero(); got != tt.zero {
				t.Errorf("IsZero() = %v, want %v", got, tt.zero)
			}
			if got := fmt.Sprint(tt.v); got != tt.str {
				t.Errorf("Sprint = %q, want %q", got, tt.str)
			}
			if got := fmt.Sprintf("%#v", tt.v); got != tt.gostr {
				t.Errorf("%%#v = %q, want %q", got, tt.gostr)
			}
		})
	}
	if !New(pw).Equal(New(pw)) || New(pw).Equal(New("other")) || !New("").Equal(Value{}) {
		t.Error("Equal does not compare contents")
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
