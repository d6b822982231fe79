package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/safeperm/safeperm/internal/buildinfo"
	"github.com/safeperm/safeperm/internal/cliconf"
	"github.com/safeperm/safeperm/internal/worker"
)

// config is everything the worker is told, from defaults, SAFEPERM_*
// variables and flags, in that order.
type config struct {
	PVWA            cliconf.PVWA
	NATS            cliconf.NATS
	Log             cliconf.Log
	Concurrency     int
	Rate            float64
	MetricsAddr     string
	ShutdownTimeout time.Duration
}

func newFlagSet(cfg *config, out io.Writer) *cliconf.FlagSet {
	fs := cliconf.NewFlagSet("worker", "worker --nats-url URL --pvwa-url URL --user NAME [flags]", out)
	cfg.PVWA.Register(fs)
	cfg.NATS.Register(fs, "required for a standalone worker (the planner runs in-process workers for its embedded server)")
	cfg.Log.Register(fs)
	fs.IntVar(&cfg.Concurrency, "concurrency", worker.DefaultConcurrency, "most jobs worked on at once; the adaptive limit of PVWA requests decides how many the worker holds")
	fs.Float64Var(&cfg.Rate, "rate", 0, "cap on PVWA requests per second for this worker, on top of the run's --rate (0 = none)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "address for /metrics, /healthz and /readyz (e.g. :9090); empty = off")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 60*time.Second, "on SIGTERM, how long jobs in flight may take before they are handed back")
	return fs
}

// validate checks the worker's own flags; the PVWA and NATS groups check
// theirs in Resolve.
func (c *config) validate(probs *cliconf.Problems) {
	if c.Concurrency < 1 || c.Concurrency > 1024 {
		probs.Addf("concurrency", fmt.Sprint(c.Concurrency), "want 1 to 1024")
	}
	if c.Rate < 0 {
		probs.Addf("rate", fmt.Sprint(c.Rate), "must not be negative")
	}
	if c.ShutdownTimeout <= 0 {
		probs.Addf("shutdown-timeout", c.ShutdownTimeout.String(), "must be positive")
	}
}

func run(ctx context.Context, args []string, getenv cliconf.Getenv, stdout, stderr io.Writer) error {
	if buildinfo.WantsVersion(args) {
		_, err := fmt.Fprintln(stdout, buildinfo.Read("worker"))
		return err
	}
	var cfg config
	fs := newFlagSet(&cfg, stderr)
	if err := fs.Parse(args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return cliconf.Usagef("unexpected arguments: %v", fs.Args())
	}
	return serve(ctx, &cfg, getenv, stderr)
}
