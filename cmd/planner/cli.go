package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/rs/zerolog"

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
	{"policy", "check FILE", "check a policy file offline: its rules as understood, proven conflicts", policyCmd},
	{"version", "[--json]", "print the version, VCS revision and Go version", versionCmd},
}

// usage lists the subcommands.
func usage() string {
	var b strings.Builder
	b.WriteString("Usage:\n")
	for _, c := range subcommands {
		fmt.Fprintf(&b, "  planner %-9s %-10s %s\n", c.name, c.args, c.help)
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

// printError writes a command's error to stderr: "planner: <error>", or,
// when the command was asked for JSON (--json, report --format json) and its
// logs are JSON, one JSON log record, so every line on stderr parses.
func printError(stderr io.Writer, args []string, getenv cliconf.Getenv, err error) {
	if jsonLogs(args, getenv) {
		log := cliconf.NewLogger(stderr, zerolog.ErrorLevel, false)
		log.Error().Str("error", err.Error()).Msg("planner failed")
		return
	}
	fmt.Fprintln(stderr, "planner:", err.Error())
}

// jsonLogs reports whether args (or the SAFEPERM_* variables) ask for JSON
// output without asking for console logs.
func jsonLogs(args []string, getenv cliconf.Getenv) bool {
	asJSON, format := false, ""
	if getenv != nil {
		asJSON, _ = strconv.ParseBool(getenv(cliconf.EnvName("json")))
		format = getenv(cliconf.EnvName("log-format"))
		if strings.EqualFold(getenv(cliconf.EnvName("format")), "json") {
			asJSON = true
		}
	}
	for i, a := range args {
		if a == "--" {
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") {
			continue
		}
		if !hasVal && i+1 < len(args) {
			val = args[i+1]
		}
		switch name {
		case "json":
			b, err := strconv.ParseBool(val)
			asJSON = !hasVal || (err == nil && b)
		case "format":
			asJSON = asJSON || strings.EqualFold(val, "json")
		case "log-format":
			format = val
		}
	}
	switch strings.ToLower(format) {
	case "json":
		return true
	case "console":
		return false
	}
	return asJSON
}

// isSilent reports whether err carries only an exit code: the command has
// already printed what there was to say (a summary, a report).
func isSilent(err error) bool {
	var ee *cliconf.ExitError
	return errors.As(err, &ee) && ee.Err == nil
}
