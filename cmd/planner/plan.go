package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/safeperm/safeperm/internal/cliconf"
	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/planner"
	"github.com/safeperm/safeperm/internal/report"
	"github.com/safeperm/safeperm/internal/scope"
	"github.com/safeperm/safeperm/internal/throttle"
	"github.com/safeperm/safeperm/internal/watch"
	"github.com/safeperm/safeperm/internal/worker"
)

// runSettings is a runConfig after validation, with files read and secrets
// loaded.
type runSettings struct {
	pvwa        cliconf.PVWASettings
	nats        cliconf.NATSSettings
	mode        jobs.Mode
	member      jobs.MemberRef
	perms       pam.PermSet
	filter      scope.Filter
	reportFmt   report.Format
	runID       string
	includeFile string
	excludeFile string
}

// resolve checks every flag and reads the scope files, reporting every
// problem at once as a usage error before anything connects.
func (cfg *runConfig) resolve(getenv cliconf.Getenv) (*runSettings, error) {
	var probs cliconf.Problems
	s := &runSettings{}
	var err error
	if s.pvwa, err = cfg.PVWA.Resolve(getenv); err != nil {
		probs.AddErr(err)
	}
	if s.nats, err = cfg.NATS.Resolve(getenv); err != nil {
		probs.AddErr(err)
	}
	if cfg.rollbackOf != "" {
		// Mode, member and permissions come from the run being undone.
		if err := jobs.CheckRunID(cfg.rollbackOf); err != nil {
			probs.Add("RUN", cfg.rollbackOf, err)
		}
		cfg.Mode, cfg.Member, cfg.MemberType, cfg.Permissions = string(jobs.ModeRollback), "-", "Group", "listAccounts"
	}
	switch m := jobs.Mode(strings.ToLower(cfg.Mode)); m {
	case jobs.ModeApply, jobs.ModeCheck:
		s.mode = m
	case jobs.ModeRollback:
		if cfg.rollbackOf != "" {
			s.mode = m
			break
		}
		fallthrough
	default:
		probs.Addf("mode", cfg.Mode, "want apply or check")
	}
	if strings.TrimSpace(cfg.Member) == "" {
		probs.Addf("member", cfg.Member, "must not be empty")
	}
	mt := ""
	for _, t := range []string{"User", "Group", "Role"} {
		if strings.EqualFold(cfg.MemberType, t) {
			mt = t
		}
	}
	if mt == "" {
		probs.Addf("member-type", cfg.MemberType, "want User, Group or Role")
	}
	s.member = jobs.MemberRef{Name: strings.TrimSpace(cfg.Member), Type: mt, SearchIn: cfg.SearchIn}
	if s.perms, err = pam.ParsePermSet(cfg.Permissions); err != nil {
		probs.Add("permissions", cfg.Permissions, err)
	} else if s.perms.Len() == 0 {
		probs.Addf("permissions", cfg.Permissions, "name at least one permission")
	}
	if cfg.Report != "" {
		if s.reportFmt, err = report.FormatFromPath(cfg.Report); err != nil {
			probs.Add("report", cfg.Report, err)
		}
	}
	s.runID = cfg.RunID
	if s.runID != "" {
		if err := jobs.CheckRunID(s.runID); err != nil {
			probs.Add("run-id", s.runID, err)
		}
	} else {
		s.runID = jobs.NewRunID(time.Now())
	}
	if cfg.Workers < 1 || cfg.Workers > 64 {
		probs.Addf("workers", fmt.Sprint(cfg.Workers), "want 1 to 64")
	}
	if cfg.Concurrency < 1 || cfg.Concurrency > 1024 {
		probs.Addf("concurrency", fmt.Sprint(cfg.Concurrency), "want 1 to 1024")
	}
	if cfg.Rate < 0 {
		probs.Addf("rate", fmt.Sprint(cfg.Rate), "must not be negative (0 = unlimited)")
	}

	if cfg.rollbackOf == "" {
		// Scope files: every problem with its line number.
		if cfg.Include != "" {
			l, err := scope.ReadListFile(cfg.Include)
			if err != nil {
				probs.Add("include", cfg.Include, err)
			}
			s.filter.Include, s.includeFile = l, cfg.Include
		}
		exclude := cfg.Exclude
		if exclude == "" {
			if _, err := os.Stat(defaultExcludeFile); err == nil {
				exclude = defaultExcludeFile
			}
		}
		if exclude != "" {
			l, err := scope.ReadListFile(exclude)
			if err != nil {
				probs.Add("exclude", exclude, err)
			}
			s.filter.Exclude, s.excludeFile = l, exclude
		}
	}
	s.filter.Internal = scope.NewInternal(nil, cfg.CPM)
	if err := probs.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

func planRun(ctx context.Context, cfg *runConfig, getenv cliconf.Getenv, stdout, stderr io.Writer) error {
	s, err := cfg.resolve(getenv)
	if err != nil {
		return err
	}
	log, err := cfg.Log.Logger(stderr)
	if err != nil {
		return &cliconf.UsageError{Err: err}
	}
	for _, l := range []*scope.List{s.filter.Include, s.filter.Exclude} {
		for _, w := range l.Warnings() {
			log.Warn().Str("file", l.File()).Msg(w)
		}
	}
	if s.filter.Exclude != nil && cfg.Exclude == "" {
		log.Info().Str("file", s.excludeFile).Int("safes", s.filter.Exclude.Len()).Msg("using the default exclude file")
	}
	host, _ := os.Hostname()
	holder := fmt.Sprintf("%s/%d", host, os.Getpid())

	// One PVWA client for the planner and the in-process workers: one
	// session, one connection pool, one rate budget.
	pc := s.pvwa.PAM()
	pc.Logger = log
	// Requests take a slot of the adaptive concurrency limit, which finds
	// the PVWA's capacity (queueing, refusals, Retry-After), then wait on
	// the run's --rate when one is given.
	var lim throttle.Limiter
	if cfg.Rate > 0 && s.nats.Embedded() {
		lim = rate.NewLimiter(rate.Limit(cfg.Rate), max(1, int(cfg.Rate/10)))
	}
	// The in-process workers are the only safeperm client of the PVWA, so
	// slow start may begin higher than a worker process's, which shares
	// the PVWA with others starting at the same time.
	// A Safe list page refused for load is sent again by the limiter after
	// a round trip, rather than by the listing's own backoff (half a
	// second, doubling): with workers holding every slot of a PVWA that
	// refuses above its capacity, that backoff would starve the listing.
	adaptive := throttle.NewAdaptive(throttle.AdaptiveOptions{Initial: embeddedInitialLimit, Limiter: lim, Logger: log,
		RetryRefused: plannerRetryRefused})
	pc.WrapTransport = adaptive.Wrap
	client, err := pam.New(pc)
	if err != nil {
		return &cliconf.UsageError{Err: err}
	}
	defer client.CloseIdleConnections()
	if err := worker.Logon(ctx, client, 3, log); err != nil {
		return &cliconf.ExitError{Code: cliconf.ExitUsage, Err: err}
	}
	defer func() {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := client.Logoff(lctx); err != nil {
			log.Warn().Err(err).Msg("PVWA logoff")
		}
	}()

	env, err := openNATS(ctx, s.nats, embeddedOptions{DataDir: cfg.DataDir, Listen: cfg.EmbeddedListen}, "safeperm-planner "+holder, log)
	if err != nil {
		return err
	}
	defer env.Close()
	if !s.nats.Embedded() {
		// The run's --rate is the total for all workers, wherever they run:
		// they share it through the budget bucket.
		if err := throttle.SetTotal(ctx, env.js, throttle.DefaultBudgetName, cfg.Rate, s.nats.Replicas); err != nil {
			return fmt.Errorf("set the workers' PVWA rate budget: %w", err)
		}
		log.Info().Float64("rate", cfg.Rate).Msg("PVWA rate budget for all workers set")
	}

	// In-process workers with the embedded server.
	var wg sync.WaitGroup
	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		stopWorkers()
		wg.Wait()
	}()
	if s.nats.Embedded() {
		go func() {
			<-ctx.Done()
			stopWorkers()
		}()
		if err := startWorkers(wctx, &wg, env, client, adaptive.Limit, cfg.Workers, cfg.Concurrency, holder, log); err != nil {
			return err
		}
	}

	params := jobs.RunParams{Member: s.member, Permissions: s.perms, Include: s.includeFile, Exclude: s.excludeFile,
		PVWAHost: hostOf(s.pvwa.URL), PlannerHost: holder, Rate: cfg.Rate}
	src := planner.SafesSource(client)
	if cfg.rollbackOf != "" {
		orig, _, err := env.streams.Runs.Get(ctx, cfg.rollbackOf)
		if err != nil {
			return &cliconf.ExitError{Code: cliconf.ExitUsage, Err: fmt.Errorf("rollback %s: %w", cfg.rollbackOf, err)}
		}
		switch {
		case orig.Mode != jobs.ModeApply:
			return &cliconf.ExitError{Code: cliconf.ExitUsage, Err: fmt.Errorf("rollback %s: a %s run changed nothing to undo", orig.ID, orig.Mode)}
		case !orig.State.Final():
			return &cliconf.ExitError{Code: cliconf.ExitUsage, Err: fmt.Errorf("rollback %s: the run is still %s; wait for it to end", orig.ID, orig.State)}
		}
		s.member, s.perms = orig.Params.Member, orig.Params.Permissions
		params.Member, params.Permissions, params.RollbackOf = s.member, s.perms, orig.ID
		params.Include, params.Exclude = "", ""
		src = planner.RollbackSource(env.js, orig.ID)
		fmt.Fprintf(stdout, "run %s: rollback of run %s (%s for %s), only where nothing changed since\n", s.runID, orig.ID, s.perms, s.member.Name)
	} else {
		fmt.Fprintf(stdout, "run %s: %s %s for %s on every Safe in scope\n", s.runID, s.mode, s.perms, s.member.Name)
	}
	p := planner.Plan{Run: s.runID, Mode: s.mode, Member: s.member, Permissions: s.perms, Filter: s.filter, Logger: log}

	watching := cfg.Watch.or(s.nats.Embedded()) || cfg.Report != ""
	var (
		out      watch.Outcome
		watchErr error
		watchWG  sync.WaitGroup
	)
	rep, err := newReportFile(cfg.Report, s.reportFmt)
	if err != nil {
		return err
	}
	defer rep.Abort()
	watchCtx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	if watching {
		stopRecording := recordProgress(watchCtx, env.js, env.streams, s.runID, 2*time.Second)
		defer stopRecording()
		// Follow while planning: results flow as soon as the first jobs
		// are published.
		watchWG.Add(1)
		go func() {
			defer watchWG.Done()
			out, watchErr = watch.Watch(watchCtx, env.js, s.runID, watch.Options{
				Out: stderr, Mode: viewMode(cfg.JSON), Logger: log, Runs: env.streams.Runs, OnResult: rep.Write,
			})
		}()
	}
	rec, sum, err := planner.Start(ctx, env.js, env.streams, src, p, params, holder)
	if err != nil {
		if errors.Is(err, jobs.ErrLeaseHeld) || errors.Is(err, planner.ErrRunFinished) {
			err = &cliconf.ExitError{Code: cliconf.ExitUsage, Err: err}
		}
		cancelWatch()
		watchWG.Wait()
		return err
	}
	for _, n := range sum.Unmatched {
		log.Warn().Str("file", s.includeFile).Str("safe", n).Msg("include list names a Safe the PVWA did not list")
	}
	fmt.Fprintf(stdout, "run %s: %d %s, %d jobs published, %d skipped (%s)\n",
		rec.ID, sum.Listed, map[bool]string{true: "results of the run read", false: "Safes listed"}[cfg.rollbackOf != ""],
		sum.Planned, sum.SkippedTotal(), skippedText(sum.Skipped))
	if !watching {
		if s.nats.Embedded() {
			fmt.Fprintf(stdout, "run %s: --watch=false with the embedded server: the in-process workers stop now; the jobs wait in %s for the next planner run on it\n", rec.ID, cfg.DataDir)
			return nil
		}
		fmt.Fprintf(stdout, "run %s is being applied by the workers; follow it with: planner watch %s\n", rec.ID, rec.ID)
		return nil
	}
	watchWG.Wait()
	cancelWatch() // records the final counts
	if watchErr != nil {
		if ctx.Err() != nil {
			return &cliconf.ExitError{Code: cliconf.ExitFailed, Err: fmt.Errorf("interrupted: run %s continues with the workers; resume planning with --run-id %s", rec.ID, rec.ID)}
		}
		return watchErr
	}
	if _, err := planner.Finish(context.WithoutCancel(ctx), env.streams.Runs, rec.ID); err != nil {
		log.Warn().Err(err).Msg("marking the run done")
	}
	if err := rep.Commit(); err != nil {
		return err
	}
	watch.Summary(stdout, out)
	if len(sum.Unmatched) > 0 {
		fmt.Fprintf(stdout, "include list names %d Safe(s) the PVWA did not list: %s\n", len(sum.Unmatched), strings.Join(sum.Unmatched, ", "))
	}
	if cfg.Report != "" {
		fmt.Fprintf(stdout, "report: %s\n", cfg.Report)
	}
	if code := out.ExitCode(); code != cliconf.ExitOK {
		return &cliconf.ExitError{Code: code}
	}
	return nil
}

// embeddedInitialLimit is the PVWA requests in flight the embedded
// default's slow start begins with; plannerRetryRefused how often a request
// refused for load is sent again before the caller sees the refusal.
const (
	embeddedInitialLimit = 8
	plannerRetryRefused  = 20
)

// startWorkers starts n in-process workers sharing client, and one
// dead-letter mover. Each holds as many jobs as the client's adaptive limit
// (requestLimit) keeps busy, at most concurrency.
func startWorkers(ctx context.Context, wg *sync.WaitGroup, env *natsEnv, client *pam.Client, requestLimit func() int, n, concurrency int, holder string, log zerolog.Logger) error {
	for i := range n {
		id := fmt.Sprintf("%s/w%d", holder, i+1)
		w, err := worker.New(ctx, worker.Config{ID: id, Concurrency: concurrency, RequestLimit: requestLimit, Logger: log}, client, env.js, env.streams)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Run(ctx); err != nil {
				log.Error().Err(err).Str("worker", id).Msg("in-process worker stopped")
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := jobs.RunDeadLetterMover(ctx, env.js, env.streams, log); err != nil && ctx.Err() == nil {
			log.Error().Err(err).Msg("dead-letter mover stopped")
		}
	}()
	return nil
}

func viewMode(json bool) watch.ViewMode {
	if json {
		return watch.ViewJSON
	}
	return watch.ViewAuto
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}

func skippedText(m map[scope.Reason]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for r, n := range m {
		parts = append(parts, fmt.Sprintf("%s %d", r, n))
	}
	return strings.Join(parts, ", ")
}

// reportFile writes a report to a temporary file next to its destination
// and renames it into place on Commit, so a failed or interrupted run never
// leaves a truncated report behind.
type reportFile struct {
	path string
	tmp  *os.File
	w    *report.Writer
	mu   sync.Mutex
	err  error
}

func newReportFile(path string, f report.Format) (*reportFile, error) {
	r := &reportFile{path: path}
	if path == "" {
		return r, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, &cliconf.UsageError{Err: fmt.Errorf("--report %q: %w", path, err)}
	}
	r.tmp, r.w = tmp, report.NewWriter(tmp, f)
	return r, nil
}

// Write adds one result; errors are kept for Commit.
func (r *reportFile) Write(res jobs.Result) {
	if r.w == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = r.w.Write(res)
	}
}

// Commit flushes and renames the report into place.
func (r *reportFile) Commit() error {
	if r.w == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.err
	if err == nil {
		err = r.w.Flush()
	}
	if err == nil {
		err = r.tmp.Close()
	}
	if err == nil {
		err = os.Rename(r.tmp.Name(), r.path)
	}
	if err != nil {
		return fmt.Errorf("write report %s: %w", r.path, err)
	}
	r.w = nil
	return nil
}

// Abort removes the temporary file unless Commit succeeded.
func (r *reportFile) Abort() {
	if r.w == nil || r.tmp == nil {
		return
	}
	_ = r.tmp.Close()
	_ = os.Remove(r.tmp.Name())
}
