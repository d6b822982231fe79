package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/safeperm/safeperm/internal/cliconf"
	"github.com/safeperm/safeperm/internal/policy"
)

const policyUsage = `Usage:
  planner policy check FILE [--user NAME] [--cpm NAME]... [--json]

  check   read a policy file offline, print its rules as understood and the
          conflicts between them that the patterns prove; exit 2 when the
          file is refused or a conflict is proven

Run 'planner policy check -h' for the flags. docs/policy.md describes the format.
`

// policyCmd is `planner policy SUBCOMMAND`.
func policyCmd(ctx context.Context, args []string, getenv cliconf.Getenv, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, policyUsage)
		return cliconf.Usagef("no policy command given")
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, policyUsage)
		return nil
	case "check":
		return policyCheckCmd(ctx, args[1:], getenv, stdout, stderr)
	}
	fmt.Fprint(stderr, policyUsage)
	return cliconf.Usagef("unknown policy command %q", args[0])
}

// policyCheckConfig is everything `planner policy check` is told.
type policyCheckConfig struct {
	User string
	CPM  cliconf.StringList
	JSON bool
}

// policyCheckCmd validates a policy file without connecting to anything:
// problems go to stderr as FILE:LINE:COL lines, the rules as understood
// and the proven conflicts to stdout.
func policyCheckCmd(_ context.Context, args []string, getenv cliconf.Getenv, stdout, stderr io.Writer) error {
	var cfg policyCheckConfig
	fs := cliconf.NewFlagSet("planner policy check", "planner policy check FILE [--user NAME] [--cpm NAME]... [--json]", stderr)
	fs.StringVar(&cfg.User, "user", "", "the PVWA user planner run logs on as: a rule naming it is refused")
	fs.Var(&cfg.CPM, "cpm", "CPM user names besides PasswordManager (repeatable, comma-separated): a rule naming one is refused")
	fs.BoolVar(&cfg.JSON, "json", false, "print the result as one JSON object on stdout (problems included)")
	if err := fs.Parse(args, getenv); err != nil {
		return helpOK(err)
	}
	if fs.NArg() != 1 {
		return cliconf.Usagef("want one policy file: planner policy check FILE")
	}
	file := fs.Arg(0)
	p, err := policy.Load(file, policy.Options{APIUser: strings.TrimSpace(cfg.User), CPMs: cfg.CPM})
	if err != nil {
		var problems policy.Errors
		if !errors.As(err, &problems) {
			return &cliconf.UsageError{Err: err}
		}
		if cfg.JSON {
			if err := writeJSON(stdout, checkJSON{File: file, Problems: problemsJSON(problems)}); err != nil {
				return err
			}
		} else {
			fmt.Fprintln(stderr, problems.Error())
		}
		return &cliconf.ExitError{Code: cliconf.ExitUsage,
			Err: fmt.Errorf("%s: %s; the policy is refused", file, count(len(problems), "problem"))}
	}
	conflicts := p.Conflicts()
	if cfg.JSON {
		if err := writeJSON(stdout, policyJSON(p, conflicts)); err != nil {
			return err
		}
	} else {
		printPolicy(stdout, p, conflicts)
	}
	if len(conflicts) > 0 {
		return &cliconf.ExitError{Code: cliconf.ExitUsage, Err: fmt.Errorf(
			"%s: %s; planner run would report every Safe where both rules apply as failed", file, count(len(conflicts), "proven conflict"))}
	}
	return nil
}

func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// printPolicy lists the rules as understood, then the conflicts.
func printPolicy(w io.Writer, p *policy.Policy, conflicts []policy.Conflict) {
	fmt.Fprintf(w, "%s: version %d, %s\n", p.File, p.Version, count(len(p.Rules), "rule"))
	copies := false
	for i := range p.Rules {
		r := &p.Rules[i]
		fmt.Fprintf(w, "\nrule %q (%s)\n", r.Name, r.Pos)
		fmt.Fprintf(w, "  safes:      %s\n", quoteList(patternStrings(r.Safes), "(none)"))
		fmt.Fprintf(w, "  except:     %s\n", quoteList(patternStrings(r.Except), "(none)"))
		fmt.Fprintf(w, "  managedBy:  %s\n", quoteList(r.ManagedBy, "any CPM"))
		fmt.Fprintf(w, "  member:     %q (%s, searchIn %s)\n", r.Member.Name, r.Member.Type, r.Member.SearchIn)
		fmt.Fprintf(w, "  action:     %s\n", describeAction(r))
		if r.Directive().Removes() {
			fmt.Fprintf(w, "  removes:    yes (planner run needs --allow-removals)\n")
		} else {
			fmt.Fprintf(w, "  removes:    no\n")
		}
		copies = copies || r.Action == policy.ActionCopy
	}
	fmt.Fprintln(w)
	if rm := p.Removals(); len(rm) > 0 {
		fmt.Fprintf(w, "rules that remove members: %s; planner run refuses them without --allow-removals\n", quoteList(rm, ""))
	}
	for _, c := range conflicts {
		fmt.Fprintln(w, c)
	}
	if len(conflicts) == 0 {
		fmt.Fprintln(w, "no proven conflicts")
	} else {
		fmt.Fprintf(w, "%s: a run reports every Safe where both rules of a conflict apply as failed; make the rules agree, or keep them apart with except\n",
			count(len(conflicts), "proven conflict"))
	}
	if copies {
		fmt.Fprintln(w, "copyFrom rules are checked against the others at run time, on each Safe, once the source's flags are known")
	}
}

func describeAction(r *policy.Rule) string {
	flags := strings.Join(r.Permissions.Names(), ", ")
	switch r.Action {
	case policy.ActionGrant:
		return "grant " + flags + " (other flags and the expiry kept; the member is added where absent)"
	case policy.ActionRevoke:
		return "revoke " + flags + " (other flags kept; nothing where the member is absent)"
	case policy.ActionExactly:
		return "exactly " + flags + " (every other flag cleared, the expiry kept; the member is added where absent)"
	case policy.ActionCopy:
		s := fmt.Sprintf("copyFrom %q (its flags and expiry; nothing where it is not a member)", r.Source)
		if r.RemoveSource {
			s += fmt.Sprintf(", then remove %q", r.Source)
		}
		return s
	case policy.ActionAbsent:
		return "absent (the member is removed where present)"
	}
	return string(r.Action)
}

func patternStrings[T fmt.Stringer](ps []T) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

func quoteList(ss []string, none string) string {
	if len(ss) == 0 {
		return none
	}
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// checkJSON is the --json output of planner policy check.
type checkJSON struct {
	File      string         `json:"file"`
	Valid     bool           `json:"valid"`
	Version   int            `json:"version,omitempty"`
	Rules     []ruleJSON     `json:"rules,omitempty"`
	Removals  []string       `json:"removals,omitempty"`
	Conflicts []conflictJSON `json:"conflicts,omitempty"`
	Problems  []problemJSON  `json:"problems,omitempty"`
}

type ruleJSON struct {
	Name         string        `json:"name"`
	Line         int           `json:"line"`
	Column       int           `json:"column"`
	Safes        []string      `json:"safes"`
	Except       []string      `json:"except,omitempty"`
	ManagedBy    []string      `json:"managedBy,omitempty"`
	Member       policy.Member `json:"member"`
	Action       policy.Action `json:"action"`
	Permissions  []string      `json:"permissions,omitempty"`
	Source       string        `json:"source,omitempty"`
	RemoveSource bool          `json:"removeSource,omitempty"`
	Removes      bool          `json:"removes"`
}

type conflictJSON struct {
	Rules       [2]string `json:"rules"`
	Member      string    `json:"member"`
	Flag        string    `json:"flag"`
	Example     string    `json:"example"`
	ManagingCPM string    `json:"managingCPM,omitempty"`
	Message     string    `json:"message"`
}

type problemJSON struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Message string `json:"message"`
}

func problemsJSON(es policy.Errors) []problemJSON {
	out := make([]problemJSON, len(es))
	for i, e := range es {
		out[i] = problemJSON{File: e.Pos.File, Line: e.Pos.Line, Column: e.Pos.Col, Message: e.Msg}
	}
	return out
}

func policyJSON(p *policy.Policy, conflicts []policy.Conflict) checkJSON {
	out := checkJSON{File: p.File, Valid: len(conflicts) == 0, Version: p.Version, Removals: p.Removals()}
	for i := range p.Rules {
		r := &p.Rules[i]
		out.Rules = append(out.Rules, ruleJSON{
			Name: r.Name, Line: r.Pos.Line, Column: r.Pos.Col,
			Safes: patternStrings(r.Safes), Except: patternStrings(r.Except), ManagedBy: r.ManagedBy,
			Member: r.Member, Action: r.Action, Permissions: r.Permissions.Names(),
			Source: r.Source, RemoveSource: r.RemoveSource, Removes: r.Directive().Removes(),
		})
	}
	for _, c := range conflicts {
		out.Conflicts = append(out.Conflicts, conflictJSON{Rules: [2]string{c.A.Name, c.B.Name},
			Member: c.Member, Flag: c.Flag, Example: c.Example, ManagingCPM: c.ManagingCPM, Message: c.String()})
	}
	return out
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
