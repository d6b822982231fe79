// Command planner plans and follows safeperm runs: it logs on to the PVWA,
// pages through every Safe, drops internal and out-of-scope Safes, publishes
// one job per Safe to NATS JetStream and follows the results to the end.
//
//	planner run      plan a run (and, with --watch, follow it to the end)
//	planner watch    follow a run from any machine that reaches NATS
//	planner status   list recent runs
//	planner report   rebuild the per-Safe report of a run
//	planner rollback undo what a run changed
//	planner policy   check a policy file offline
//	planner version  print the build (also planner --version)
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/safeperm/safeperm/internal/cliconf"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	code := cliconf.ExitCode(err)
	if err != nil && code != cliconf.ExitOK && err.Error() != "" && !isSilent(err) {
		printError(os.Stderr, os.Args[1:], os.Getenv, err)
	}
	os.Exit(code)
}
