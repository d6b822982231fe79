// Command worker applies safeperm jobs: it consumes one job per Safe from
// NATS JetStream, reads the Safe member from the PVWA, writes only what is
// missing (keeping every other permission), and publishes one result per job.
// It is rate-limited, concurrent, retries idempotently and shuts down
// gracefully on SIGINT or SIGTERM (a second signal forces the exit).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/safeperm/safeperm/internal/cliconf"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// A second signal forces the exit: the first one only asked for a
		// graceful stop, which may wait for jobs in flight.
		<-ctx.Done()
		stop()
		c := make(chan os.Signal, 1)
		signal.Notify(c, os.Interrupt, syscall.SIGTERM)
		<-c
		fmt.Fprintln(os.Stderr, "worker: second signal, exiting now")
		os.Exit(cliconf.ExitFailed)
	}()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	code := cliconf.ExitCode(err)
	if err != nil && code != cliconf.ExitOK {
		fmt.Fprintln(os.Stderr, "worker:", err)
	}
	os.Exit(code)
}
