// Package secret holds credentials so that they cannot leak by accident.
//
// A Value prints as "[REDACTED]" through fmt (every verb), encoding/json,
// encoding.TextMarshaler, log/slog and zerolog, so a secret placed in a
// struct that is logged, wrapped into an error or published in a message
// shows nothing. That holds for unexported struct fields too, which fmt
// prints by reflection without calling any method: the secret sits behind a
// pointer, and fmt prints a pointer nested in a value as its address, never
// what it points to. Reveal returns the real string and is the only way to
// get it.
package secret

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// Redacted is what a Value shows instead of its contents.
const Redacted = "[REDACTED]"

// Value is a secret string. The zero value is the empty secret. Values are
// immutable and safe to copy and to share between goroutines. Compare them
// with Equal: == compares identity, not contents.
type Value struct {
	// shown is Redacted for a non-empty secret. It is never read: it is
	// what fmt shows when it prints a Value by reflection (see p).
	shown string
	// p is nil for the empty secret. A pointer to the string, not the
	// string itself: fmt prints a Value held in an unexported struct field
	// by reflection, without calling String or Format, but prints a
	// pointer reached that way as its address, so such a Value shows as
	// {shown:[REDACTED] p:0xc000012345}. The pointer must not point to a
	// struct, array, slice or map: fmt's message for a bad verb
	// ("%!s(...)") prints those pointees.
	p *string
}

// New wraps s.
func New(s string) Value {
	if s == "" {
		return Value{}
	}
	return Value{shown: Redacted, p: &s}
}

// Reveal returns the secret itself. Call it only where the secret is sent to
// the party that needs it.
func (v Value) Reveal() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

// IsZero reports whether the secret is empty.
func (v Value) IsZero() bool { return v.p == nil || *v.p == "" }

// Equal reports whether v and w hold the same secret, in constant time for
// secrets of equal length.
func (v Value) Equal(w Value) bool {
	return subtle.ConstantTimeCompare([]byte(v.Reveal()), []byte(w.Reveal())) == 1
}

// String returns Redacted (or "" for the empty secret).
func (v Value) String() string {
	if v.IsZero() {
		return ""
	}
	return Redacted
}

// GoString returns Redacted so that %#v hides the secret too.
func (v Value) GoString() string { return "secret.Value(" + Redacted + ")" }

// Format implements fmt.Formatter: every verb prints String, %#v GoString.
func (v Value) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(v.GoString()))
		return
	}
	_, _ = f.Write([]byte(v.String()))
}

// MarshalText implements encoding.TextMarshaler (and so JSON) with Redacted.
func (v Value) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// LogValue implements slog.LogValuer with Redacted.
func (v Value) LogValue() slog.Value { return slog.StringValue(v.String()) }

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
	return New(s), nil
}
