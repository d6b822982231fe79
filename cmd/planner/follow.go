package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/cliconf"
	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/planner"
	"github.com/safeperm/safeperm/internal/report"
	"github.com/safeperm/safeperm/internal/watch"
)

// readConfig is the configuration of the commands that only read NATS:
// watch, status and report.
type readConfig struct {
	NATS    cliconf.NATS
	Log     cliconf.Log
	DataDir string
	JSON    bool
	Format  string
	Limit   int
	// Failures: planner status groups each run's failures by cause.
	Failures bool
}

func newReadFlags(cfg *readConfig, name, synopsis string, out io.Writer) *cliconf.FlagSet {
	fs := cliconf.NewFlagSet(name, synopsis, out)
	cfg.NATS.Register(fs, "empty = open the embedded server's --data-dir (only while no planner is using it)")
	cfg.Log.Register(fs)
	fs.StringVar(&cfg.DataDir, "data-dir", "safeperm-data", "embedded server's storage directory")
	return fs
}

// parseRead parses the flags and wants exactly nargs arguments.
func parseRead(fs *cliconf.FlagSet, args []string, getenv cliconf.Getenv, nargs int, what string) ([]string, error) {
	if err := fs.Parse(args, getenv); err != nil {
		return nil, err
	}
	if fs.NArg() != nargs {
		if nargs == 0 {
			return nil, cliconf.Usagef("unexpected arguments: %v", fs.Args())
		}
		return nil, cliconf.Usagef("want %s", what)
	}
	for _, a := range fs.Args() {
		if err := jobs.CheckRunID(a); err != nil {
			return nil, &cliconf.UsageError{Err: err}
		}
	}
	return fs.Args(), nil
}

// openRead resolves the NATS flags and connects.
// The logger is JSON when the command writes JSON (--json, --format
// json) and --log-format is auto.
func (cfg *readConfig) open(ctx context.Context, getenv cliconf.Getenv, stderr io.Writer) (*natsEnv, zerolog.Logger, error) {
	ns, err := cfg.NATS.Resolve(getenv)
	if err != nil {
		return nil, zerolog.Nop(), err
	}
	cfg.Log.MachineOutput = cfg.JSON
	log, err := cfg.Log.Logger(stderr)
	if err != nil {
		return nil, zerolog.Nop(), &cliconf.UsageError{Err: err}
	}
	host, _ := os.Hostname()
	env, err := openNATS(ctx, ns, embeddedOptions{DataDir: cfg.DataDir}, fmt.Sprintf("safeperm-planner-read %s/%d", host, os.Getpid()), log)
	return env, log, err
}

func watchCmd(ctx context.Context, args []string, getenv cliconf.Getenv, stdout, stderr io.Writer) error {
	var cfg readConfig
	fs := newReadFlags(&cfg, "planner watch", "planner watch RUN [--nats-url URL] [--json]", stderr)
	fs.BoolVar(&cfg.JSON, "json", false, "one JSON object per line every few seconds and at the end, for machines")
	ids, err := parseRead(fs, args, getenv, 1, "one run id: planner watch RUN")
	if err != nil {
		return helpOK(err)
	}
	env, log, err := cfg.open(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer env.Close()
	stopRecording := recordProgress(ctx, env.js, env.streams, ids[0], 2*time.Second)
	out, err := watch.Watch(ctx, env.js, ids[0], watch.Options{Out: stdout, Mode: viewMode(cfg.JSON), Logger: log, Runs: env.streams.Runs})
	stopRecording()
	where := natsArgs(cfg.NATS, cfg.DataDir)
	if err != nil {
		code := cliconf.ExitFailed
		if errors.Is(err, jobs.ErrRunNotFound) {
			code = cliconf.ExitUsage
		}
		if cfg.JSON && !errors.Is(err, jobs.ErrRunNotFound) {
			f := watch.NewFinal(out, watch.Ending{Next: nextSteps(out.Run, where, "")}, err, time.Now())
			f.ExitCode = code
			_ = f.Write(stdout)
		}
		return &cliconf.ExitError{Code: code, Err: err}
	}
	if out.Run.State == jobs.RunRunning {
		if fin, err := planner.Finish(ctx, env.streams.Runs, ids[0]); err != nil {
			log.Warn().Err(err).Msg("marking the run done")
		} else {
			out.Run = fin
		}
	}
	ending := watch.Ending{Next: nextSteps(out.Run, where, "")}
	if cfg.JSON {
		if err := watch.NewFinal(out, ending, nil, time.Now()).Write(stdout); err != nil {
			return err
		}
	} else {
		watch.Summary(stdout, out, ending)
	}
	if code := out.ExitCode(); code != cliconf.ExitOK {
		return &cliconf.ExitError{Code: code}
	}
	return nil
}

func statusCmd(ctx context.Context, args []string, getenv cliconf.Getenv, stdout, stderr io.Writer) error {
	var cfg readConfig
	fs := newReadFlags(&cfg, "planner status", "planner status [--nats-url URL] [--limit N]", stderr)
	fs.IntVar(&cfg.Limit, "limit", 20, "show the N most recent runs")
	fs.BoolVar(&cfg.JSON, "json", false, "one JSON object per line and run (JSON Lines), with its failures grouped by cause")
	fs.BoolVar(&cfg.Failures, "failures", true, "group the failed and conflict Safes of each listed run by cause (reads those results)")
	if _, err := parseRead(fs, args, getenv, 0, ""); err != nil {
		return helpOK(err)
	}
	env, _, err := cfg.open(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer env.Close()
	runs, err := env.streams.Runs.List(ctx)
	if err != nil {
		return err
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].Started.After(runs[j].Started) })
	if cfg.Limit > 0 && len(runs) > cfg.Limit {
		runs = runs[:cfg.Limit]
	}
	count := watch.StreamCounts(ctx, env.js)
	var failures watch.FailureFunc
	if cfg.Failures {
		failures = watch.StreamFailures(ctx, env.js)
	}
	if cfg.JSON {
		return watch.StatusJSON(stdout, runs, count, failures)
	}
	return watch.Status(stdout, runs, count, failures)
}

func reportCmd(ctx context.Context, args []string, getenv cliconf.Getenv, stdout, stderr io.Writer) error {
	var cfg readConfig
	fs := newReadFlags(&cfg, "planner report", "planner report RUN [--format csv|json] [--nats-url URL]", stderr)
	fs.StringVar(&cfg.Format, "format", "csv", "csv, or json (JSON Lines)")
	fs.BoolVar(&cfg.JSON, "json", false, "same as --format json: one JSON object per Safe and line")
	ids, err := parseRead(fs, args, getenv, 1, "one run id: planner report RUN")
	if err != nil {
		return helpOK(err)
	}
	if cfg.JSON {
		cfg.Format = "json"
	}
	f, err := report.ParseFormat(cfg.Format)
	if err != nil {
		return &cliconf.UsageError{Err: fmt.Errorf("--format %q: %w", cfg.Format, err)}
	}
	cfg.JSON = f == report.FormatJSONL
	env, _, err := cfg.open(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer env.Close()
	if _, _, err := env.streams.Runs.Get(ctx, ids[0]); err != nil {
		return &cliconf.ExitError{Code: cliconf.ExitUsage, Err: err}
	}
	w := report.NewWriter(stdout, f)
	if err := jobs.Replay(ctx, env.js, ids[0], func(r jobs.Result) error { return w.Write(r) }); err != nil {
		return err
	}
	return w.Flush()
}

func rollbackCmd(ctx context.Context, args []string, getenv cliconf.Getenv, stdout, stderr io.Writer) error {
	var cfg runConfig
	fs := cliconf.NewFlagSet("planner rollback", "planner rollback RUN --pvwa-url URL --user NAME [--nats-url URL] [flags]", stderr)
	registerExec(fs, &cfg)
	if err := fs.Parse(args, getenv); err != nil {
		return helpOK(err)
	}
	if fs.NArg() != 1 {
		return cliconf.Usagef("want one run id: planner rollback RUN")
	}
	cfg.rollbackOf = fs.Arg(0)
	return planRun(ctx, &cfg, setFlags(fs), getenv, stdout, stderr)
}

// helpOK turns -h into success.
func helpOK(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

// recordProgress copies the run's result counts into its run record every
// interval until ctx ends, and once more at the end, so that anyone reading
// the KV bucket (the nats CLI included) sees the progress.
func recordProgress(ctx context.Context, js jetstream.JetStream, st *jobs.Streams, run string, interval time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	update := func(ctx context.Context) {
		counts, err := watch.StreamCounts(ctx, js)(run)
		if err != nil {
			return
		}
		n := 0
		for _, c := range counts {
			n += c
		}
		_, _ = st.Runs.Update(ctx, run, func(r *jobs.Run) error {
			r.Done, r.Counts = n, counts
			return nil
		})
	}
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				update(fctx)
				fcancel()
				return
			case <-t.C:
				update(ctx)
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
