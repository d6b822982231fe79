package cliconf

import (
	"errors"
	"fmt"
	"strings"
)

// Exit codes shared by the commands.
const (
	// ExitOK: everything done (or nothing to do).
	ExitOK = 0
	// ExitFailed: the run finished and some Safes failed.
	ExitFailed = 1
	// ExitUsage: usage, configuration or authentication error, reported
	// before anything was published or written.
	ExitUsage = 2
	// ExitDrift: check mode found Safes that are not compliant.
	ExitDrift = 3
)

// UsageError is a problem with flags, variables, files or credentials found
// before any work started. Commands exit with ExitUsage on it.
type UsageError struct{ Err error }

// Error returns the problem.
func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a *UsageError with a formatted message.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// FieldError names the flag (or variable) and the value that is wrong.
type FieldError struct {
	Field string
	Value string
	Err   error
}

// Error reads like: --auth "kerberos": want one of cyberark, ldap, ...
func (e *FieldError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("--%s: %v", e.Field, e.Err)
	}
	return fmt.Sprintf("--%s %q: %v", e.Field, e.Value, e.Err)
}

// Unwrap returns the cause.
func (e *FieldError) Unwrap() error { return e.Err }

// Problems collects every configuration problem so they are reported at once.
type Problems struct{ errs []error }

// Add records a problem with a field.
func (p *Problems) Add(field, value string, err error) {
	p.errs = append(p.errs, &FieldError{Field: field, Value: value, Err: err})
}

// Addf records a problem with a field with a formatted cause.
func (p *Problems) Addf(field, value, format string, args ...any) {
	p.Add(field, value, fmt.Errorf(format, args...))
}

// AddErr records a problem that is not about one field.
func (p *Problems) AddErr(err error) {
	if err != nil {
		p.errs = append(p.errs, err)
	}
}

// Err returns nil when there is no problem, else a *UsageError listing all.
func (p *Problems) Err() error {
	if len(p.errs) == 0 {
		return nil
	}
	return &UsageError{Err: problemList(p.errs)}
}

type problemList []error

func (l problemList) Error() string {
	if len(l) == 1 {
		return l[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d configuration problems:", len(l))
	for _, e := range l {
		b.WriteString("\n  - ")
		b.WriteString(e.Error())
	}
	return b.String()
}

func (l problemList) Unwrap() []error { return l }

// ExitError carries an exit code chosen by a command together with an
// optional error to print.
type ExitError struct {
	Code int
	Err  error
}

// Error returns the cause or the code.
func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

// Unwrap returns the cause.
func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode maps an error returned by a command to its exit code: nil is
// ExitOK, *ExitError its code, *UsageError ExitUsage, anything else
// ExitFailed.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	return ExitFailed
}
