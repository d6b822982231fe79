// Command pvwasim serves the simulated CyberArk PVWA of package
// internal/pam/pamtest on a real listener, for demos, benchmarks and tests
// run from other processes.
//
// The first line of standard output is the API base URL, e.g.
// "http://127.0.0.1:41234/PasswordVault"; logs go to standard error. It runs
// until SIGINT or SIGTERM, then shuts down gracefully (a second signal
// exits at once). Every flag can also be set from the environment as
// SAFEPERM_SIM_<FLAG> (upper case, "-" as "_"), e.g.
// SAFEPERM_SIM_MAX_IN_FLIGHT=50; flags win over the environment. The admin
// password comes from SAFEPERM_SIM_ADMIN_PASSWORD or --admin-password-file,
// never from the command line.
//
//	pvwasim --safes 1000000 --seed 7 --latency 50ms --p429 0.05
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, stop)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "pvwasim:", err)
		os.Exit(1)
	}
}
