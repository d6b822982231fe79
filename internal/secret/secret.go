// Package secret holds credentials so that they cannot leak by accident.
//
// A Value prints as "[REDACTED]" through fmt (every verb), encoding/json,
// encoding.TextMarshaler and zerolog, so a secret placed in a struct that is
// logged, wrapped into an error or published in a message shows nothing.
// Reveal returns the real string and is the only way to get it.
package secret

import (
	"fmt"
	"os"
	"strings"
)

// Redacted is what a Value shows instead of its contents.
const Redacted = "[REDACTED]"

// Value is a secret string. The zero value is the empty secret.
type Value struct{ s string }

// New wraps s.
func New(s string) Value { return Value{s: s} }

// Reveal returns the secret itself. Call it only where the secret is sent to
// the party that needs it.
func (v Value) Reveal() string { return v.s }

// IsZero reports whether the secret is empty.
func (v Value) IsZero() bool { return v.s == "" }

// String returns Redacted (or "" for the empty secret).
func (v Value) String() string {
	if v.s == "" {
		return ""
	}
	return Redacted
}

// GoString returns Redacted so that %#v hides the secret too.
func (v Value) GoString() string { return "secret.Value(" + Redacted + ")" }

// Format implements fmt.Formatter: every verb prints String.
func (v Value) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(v.String())) }

// MarshalText implements encoding.TextMarshaler (and so JSON) with Redacted.
func (v Value) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// FromFile reads a secret from path, dropping one trailing newline (CRLF or
// LF) as editors add one. An empty file is an error.
func FromFile(path string) (Value, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Value{}, fmt.Errorf("read secret file: %w", err)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return Value{}, fmt.Errorf("secret file %s is empty", path)
	}
	return Value{s: s}, nil
}
