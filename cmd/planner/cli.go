package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/safeperm/safeperm/internal/buildinfo"
	"github.com/safeperm/safeperm/internal/cliconf"
)

// command is one planner subcommand. Each lives in its own file; adding one
// is adding a line to subcommands.
type command struct {
	name string
	args string // the synopsis after the name
	help string
	run  func(ctx context.Context, args []string, getenv cliconf.Getenv, stdout, stderr io.Writer) error
}

// subcommands are the planner's commands, in the order usage lists them.
var subcommands = []command{
	{"run", "[flags]", "plan a run: page every Safe, publish one job per Safe, follow it (--watch)", runCmd},
	{"watch", "RUN", "follow a run to its end from any machine that reaches NATS", watchCmd},
	{"status", "[flags]", "list recent runs, with the causes of their failures", statusCmd},
	{"report", "RUN", "rebuild the per-Safe report of a run", reportCmd},
	{"rollback", "RUN", "restore what a run changed, where nothing changed since", rollbackCmd},
	{"version", "[--json]", "print the version, VCS revision and Go version", versionCmd},
}

// usage lists the subcommands.
func usage() string {
	var b strings.Builder
	b.WriteString("Usage:\n")
	for _, c := range subcommands {
		fmt.Fprintf(&b, "  planner %-9s %-9s %s\n", c.name, c.args, c.help)
	}
	b.WriteString(`
Run 'planner COMMAND -h' for the flags of a command. Every flag can also be set
by a SAFEPERM_* variable (--nats-url: SAFEPERM_NATS_URL). With --json, standard
output carries only JSON objects, one per line, and logs go to standard error.
`)
	return b.String()
}

func lookup(name string) (command, bool) {
	for _, c := range subcommands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func run(ctx context.Context, args []string, getenv cliconf.Getenv, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return cliconf.Usagef("no command given")
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage())
		return nil
	case "--version", "-version":
		return versionCmd(ctx, args[1:], getenv, stdout, stderr)
	}
	cmd, ok := lookup(args[0])
	if !ok {
		fmt.Fprint(stderr, usage())
		return cliconf.Usagef("unknown command %q", args[0])
	}
	return cmd.run(ctx, args[1:], getenv, stdout, stderr)
}

// versionCmd prints the build: one line, or one JSON object with --json.
func versionCmd(_ context.Context, args []string, getenv cliconf.Getenv, stdout, stderr io.Writer) error {
	fs := cliconf.NewFlagSet("planner version", "planner version [--json]", stderr)
	asJSON := fs.Bool("json", false, "one JSON object: program, version, revision, time, modified, go, platform")
	if err := fs.Parse(args, getenv); err != nil {
		return helpOK(err)
	}
	if fs.NArg() > 0 {
		return cliconf.Usagef("unexpected arguments: %v", fs.Args())
	}
	return printVersion(stdout, buildinfo.Read("planner"), *asJSON)
}

func printVersion(w io.Writer, in buildinfo.Info, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(in)
	}
	_, err := fmt.Fprintln(w, in.String())
	return err
}

// isSilent reports whether err carries only an exit code: the command has
// already printed what there was to say (a summary, a report).
func isSilent(err error) bool {
	var ee *cliconf.ExitError
	return errors.As(err, &ee) && ee.Err == nil
}
