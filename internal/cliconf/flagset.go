// Package cliconf is the command-line configuration shared by safeperm's
// commands: a flag set whose every flag can also come from a SAFEPERM_*
// environment variable, the PVWA, NATS and logging option groups, secrets
// read from the environment or files (never from argv), and the exit codes.
//
// Precedence is defaults, then environment, then flags: a flag given on the
// command line wins over its variable.
package cliconf

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// EnvPrefix starts every environment variable safeperm reads.
const EnvPrefix = "SAFEPERM_"

// EnvName returns the variable for a flag: SAFEPERM_ plus the flag name in
// upper case with dashes as underscores ("nats-url" -> "SAFEPERM_NATS_URL").
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Getenv looks up an environment variable; os.Getenv fits. Tests pass a map's
// lookup so they never touch the process environment.
type Getenv func(string) string

// envDoc documents a variable that has no flag (a secret).
type envDoc struct{ name, help string }

// forbidden flags are secrets someone may try to pass on the command line.
// They are refused with a message saying where the secret goes instead,
// because argv is visible to every user of the machine.
var forbidden = map[string]string{
	"password":      "SAFEPERM_PASSWORD or --password-file",
	"client-secret": "SAFEPERM_CLIENT_SECRET or --client-secret-file",
	"nats-password": "SAFEPERM_NATS_PASSWORD or --nats-password-file",
	"secret":        "SAFEPERM_CLIENT_SECRET or --client-secret-file",
}

// FlagSet is a flag.FlagSet whose flags also read SAFEPERM_* variables.
type FlagSet struct {
	*flag.FlagSet
	synopsis  string
	secretEnv []envDoc
}

// NewFlagSet returns a flag set for the command name that writes usage and
// errors to out. synopsis is the first usage line after "Usage:".
func NewFlagSet(name, synopsis string, out io.Writer) *FlagSet {
	fs := &FlagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), synopsis: synopsis}
	fs.SetOutput(out)
	fs.Usage = fs.usage
	return fs
}

// SecretEnv documents a variable read for a secret (it has no flag).
func (fs *FlagSet) SecretEnv(name, help string) {
	fs.secretEnv = append(fs.secretEnv, envDoc{name: name, help: help})
}

// EnvNames returns every variable the flag set reads, sorted: one per flag
// plus the documented secret variables.
func (fs *FlagSet) EnvNames() []string {
	var out []string
	fs.VisitAll(func(f *flag.Flag) { out = append(out, EnvName(f.Name)) })
	for _, e := range fs.secretEnv {
		out = append(out, e.name)
	}
	sort.Strings(out)
	return out
}

func (fs *FlagSet) usage() {
	w := fs.Output()
	fmt.Fprintf(w, "Usage:\n  %s\n\nFlags:\n", fs.synopsis)
	fs.PrintDefaults()
	fmt.Fprintf(w, "\nEnvironment variables:\n")
	fs.VisitAll(func(f *flag.Flag) { fmt.Fprintf(w, "  %s\n", EnvName(f.Name)) })
	for _, e := range fs.secretEnv {
		fmt.Fprintf(w, "  %s\n    \t%s\n", e.name, e.help)
	}
	fmt.Fprintf(w, "\nEvery flag can be set by its variable; a flag on the command line wins.\n")
}

// Parse fills the flags from getenv, then from args. A secret passed as a
// flag, a malformed variable or a malformed flag is a *UsageError naming it.
// -h and --help return flag.ErrHelp after printing usage.
func (fs *FlagSet) Parse(args []string, getenv Getenv) error {
	for _, a := range args {
		if a == "--" {
			break
		}
		name := strings.TrimLeft(a, "-")
		if name == a { // not a flag
			continue
		}
		name, _, _ = strings.Cut(name, "=")
		if where, bad := forbidden[name]; bad {
			return Usagef("--%s is not accepted: secrets on the command line are visible in the process list; use %s", name, where)
		}
	}
	if getenv != nil {
		var errs []error
		fs.VisitAll(func(f *flag.Flag) {
			v := getenv(EnvName(f.Name))
			if v == "" {
				return
			}
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %v", EnvName(f.Name), v, err))
			}
		})
		if len(errs) > 0 {
			return &UsageError{Err: errors.Join(errs...)}
		}
	}
	if err := fs.FlagSet.Parse(fs.flagsFirst(args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &UsageError{Err: err}
	}
	return nil
}

// flagsFirst moves the positional arguments after the flags, so that
// "planner watch RUN --json" works like "planner watch --json RUN". A flag
// that takes a value keeps the argument after it; "--" ends the flags.
func (fs *FlagSet) flagsFirst(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			return append(append(flags, "--"), pos...)
		case len(a) < 2 || a[0] != '-':
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // Parse reports it
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	if len(pos) == 0 {
		return flags
	}
	return append(append(flags, "--"), pos...)
}

// StringList is a flag that may be repeated and also accepts comma-separated
// values ("--cpm A --cpm B,C").
type StringList []string

// String joins the values with commas.
func (s *StringList) String() string { return strings.Join(*s, ",") }

// Set appends the comma-separated values of v.
func (s *StringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}
