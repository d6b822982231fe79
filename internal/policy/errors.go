package policy

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// ErrInvalid is matched (errors.Is) by every Errors that Parse, Load and
// Validate return: the policy was refused, nothing may run.
var ErrInvalid = errors.New("invalid policy")

// Error is one problem of a policy, at the place in the file it concerns.
type Error struct {
	// Pos is where the problem is: the key or value concerned, or the
	// start of the rule or file when something is missing.
	Pos Pos
	// Msg says what is wrong, and often how to fix it. It does not repeat
	// the position.
	Msg string
}

// Error returns "FILE:LINE:COL: message" (just the message when the
// position is unknown, as for a policy made from flags).
func (e *Error) Error() string {
	if p := e.Pos.String(); p != "" {
		return p + ": " + e.Msg
	}
	return e.Msg
}

// Errors is every problem found in a policy, in file order. Its Error
// method puts one problem on each line, so the list can be printed as it
// is (editors and CI systems jump to FILE:LINE:COL).
type Errors []*Error

// Error returns the problems, one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Is makes errors.Is(err, ErrInvalid) true.
func (es Errors) Is(target error) bool { return target == ErrInvalid }

// Unwrap returns each problem.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sorted returns the problems in file order, each once.
func (es Errors) sorted() Errors {
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Pos.Line, b.Pos.Line), cmp.Compare(a.Pos.Col, b.Pos.Col))
	})
	return slices.CompactFunc(es, func(a, b *Error) bool { return *a == *b })
}

// message formats a problem. Strings quoted with %q are quoted for
// people, not for Go: "DOM\ops" rather than "DOM\\ops"; only a string
// holding a double quote or a character that does not print is escaped.
func message(format string, args ...any) string {
	for i, a := range args {
		if s, ok := a.(string); ok {
			args[i] = text(s)
		}
	}
	// One problem, one line, whatever the file holds.
	return strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(fmt.Sprintf(format, args...))
}

// text is a string that %q quotes for people (see message).
type text string

// Format implements fmt.Formatter.
func (t text) Format(f fmt.State, verb rune) {
	s := string(t)
	if verb != 'q' {
		fmt.Fprint(f, s)
		return
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r == '"' || !unicode.IsPrint(r) && r != ' ' }) {
		fmt.Fprint(f, strconv.Quote(s))
		return
	}
	fmt.Fprint(f, `"`+s+`"`)
}
