package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/safeperm/safeperm/internal/cliconf"
)

const usage = `Usage:
  planner run      [flags]   plan a run: page every Safe, publish one job per Safe, follow it (--watch)
  planner watch    RUN       follow a run to its end from any machine that reaches NATS
  planner status   [flags]   list recent runs
  planner report   RUN       rebuild the per-Safe report of a run
  planner rollback RUN       restore what a run changed, where nothing changed since
  planner policy check FILE  check a policy file offline: its rules as understood, proven conflicts

Run 'planner COMMAND -h' for the flags of a command. Every flag can also be set
by a SAFEPERM_* variable (--nats-url: SAFEPERM_NATS_URL).
`

// subcommands maps a name to its entry point. Each lives in its own file.
var subcommands = map[string]func(ctx context.Context, args []string, getenv cliconf.Getenv, stdout, stderr io.Writer) error{
	"run":      runCmd,
	"watch":    watchCmd,
	"status":   statusCmd,
	"report":   reportCmd,
	"rollback": rollbackCmd,
	"policy":   policyCmd,
}

func run(ctx context.Context, args []string, getenv cliconf.Getenv, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return cliconf.Usagef("no command given")
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	cmd, ok := subcommands[args[0]]
	if !ok {
		fmt.Fprint(stderr, usage)
		return cliconf.Usagef("unknown command %q", args[0])
	}
	return cmd(ctx, args[1:], getenv, stdout, stderr)
}

// isSilent reports whether err carries only an exit code: the command has
// already printed what there was to say (a summary, a report).
func isSilent(err error) bool {
	var ee *cliconf.ExitError
	return errors.As(err, &ee) && ee.Err == nil
}
