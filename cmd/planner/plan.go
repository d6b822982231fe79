package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/safeperm/safeperm/internal/cliconf"
	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/planner"
	"github.com/safeperm/safeperm/internal/policy"
	"github.com/safeperm/safeperm/internal/report"
	"github.com/safeperm/safeperm/internal/scope"
	"github.com/safeperm/safeperm/internal/throttle"
	"github.com/safeperm/safeperm/internal/watch"
	"github.com/safeperm/safeperm/internal/worker"
)

// Log field names.
const (
	logWorker = "worker"
	logFile   = "file"
	logSafe   = "safe"
	logSafes  = "safes"
	logRate   = "rate"
)

// runSettings is a runConfig after validation, with files read and secrets
// loaded.
type runSettings struct {
	pvwa        cliconf.PVWASettings
	nats        cliconf.NATSSettings
	mode        jobs.Mode
	policy      *policy.Policy
	params      jobs.RunParams // what the run record says was asked
	filter      scope.Filter
	reportFmt   report.Format
	runID       string
	includeFile string
	excludeFile string
}

// resolve checks every flag and reads the scope files, reporting every
// problem at once as a usage error before anything connects.
func (cfg *runConfig) resolve(getenv cliconf.Getenv, set map[string]bool) (*runSettings, error) {
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
		// What to restore comes from the results of the run being undone.
		if err := jobs.CheckRunID(cfg.rollbackOf); err != nil {
			probs.Add("RUN", cfg.rollbackOf, err)
		}
		cfg.Mode = string(jobs.ModeRollback)
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
	if cfg.rollbackOf == "" {
		cfg.resolvePolicy(s, set, &probs)
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

// resolvePolicy reads --policy, or makes the one-rule policy of --member
// and --permissions, and checks that removals are allowed.
func (cfg *runConfig) resolvePolicy(s *runSettings, set map[string]bool, probs *cliconf.Problems) {
	if cfg.Policy != "" {
		for _, f := range []string{"member", "member-type", "search-in", "permissions"} {
			if set[f] {
				probs.Addf(f, "", "not with --policy: the policy file names its members and flags")
			}
		}
		p, err := policy.Load(cfg.Policy, policy.Options{APIUser: cfg.PVWA.User, CPMs: cfg.CPM})
		if err != nil {
			addAll(probs, err)
			return
		}
		s.policy = p
		if rm := p.Removals(); len(rm) > 0 && !cfg.AllowRemovals {
			what := "rule %s removes"
			if len(rm) > 1 {
				what = "rules %s remove"
			}
			probs.Addf("policy", cfg.Policy, what+" members from Safes (absent, removeSource); run with --allow-removals to let them", quoteAll(rm))
		}
		s.params.Policy = &jobs.PolicyParams{File: cfg.Policy, Digest: p.Digest(), Rules: ruleNames(p), AllowRemovals: cfg.AllowRemovals}
		return
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
	member := jobs.MemberRef{Name: strings.TrimSpace(cfg.Member), Type: mt, SearchIn: cfg.SearchIn}
	perms, err := pam.ParsePermSet(cfg.Permissions)
	if err != nil {
		probs.Add("permissions", cfg.Permissions, err)
	} else if perms.Len() == 0 {
		probs.Addf("permissions", cfg.Permissions, "name at least one permission")
	}
	s.policy = policy.FromFlags(member, perms)
	if err := s.policy.Validate(policy.Options{APIUser: cfg.PVWA.User, CPMs: cfg.CPM}); err != nil && member.Name != "" && mt != "" && perms != 0 {
		var es policy.Errors
		if errors.As(err, &es) {
			for _, e := range es {
				probs.Addf("member", cfg.Member, "%s", strings.TrimPrefix(e.Msg, `member "`+member.Name+`" in rule "flags" `))
			}
		}
	}
	s.params.Member, s.params.Permissions = member, perms
	s.params.Policy = &jobs.PolicyParams{Digest: s.policy.Digest(), Rules: ruleNames(s.policy)}
}

// addAll records each problem of a list (a policy file's problems, one per
// line with its position) separately.
func addAll(probs *cliconf.Problems, err error) {
	if l, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range l.Unwrap() {
			probs.AddErr(e)
		}
		return
	}
	probs.AddErr(err)
}

func ruleNames(p *policy.Policy) []string {
	out := make([]string, len(p.Rules))
	for i, r := range p.Rules {
		out[i] = r.Name
	}
	return out
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

func planRun(ctx context.Context, cfg *runConfig, set map[string]bool, getenv cliconf.Getenv, stdout, stderr io.Writer) error {
	s, err := cfg.resolve(getenv, set)
	if err != nil {
		return err
	}
	cfg.Log.MachineOutput = cfg.JSON
	log, err := cfg.Log.Logger(stderr)
	if err != nil {
		return &cliconf.UsageError{Err: err}
	}
	for _, l := range []*scope.List{s.filter.Include, s.filter.Exclude} {
		for _, w := range l.Warnings() {
			log.Warn().Str(logFile, l.File()).Msg(w)
		}
	}
	if s.filter.Exclude != nil && cfg.Exclude == "" {
		log.Info().Str(logFile, s.excludeFile).Int(logSafes, s.filter.Exclude.Len()).Msg("using the default exclude file")
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
		log.Info().Float64(logRate, cfg.Rate).Msg("PVWA rate budget for all workers set")
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

	params := s.params
	params.Include, params.Exclude = s.includeFile, s.excludeFile
	params.PVWAHost, params.PVWAFlags, params.PlannerHost, params.Rate = hostOf(s.pvwa.URL), pvwaArgs(cfg.PVWA), holder, cfg.Rate
	src := planner.SafesSource(client)
	ev := startEvent{Type: "start", Run: s.runID, Mode: s.mode}
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
		params = jobs.RunParams{RollbackOf: orig.ID, PVWAHost: params.PVWAHost, PVWAFlags: params.PVWAFlags, PlannerHost: holder, Rate: cfg.Rate}
		src = planner.RollbackSource(env.js, orig.ID, orig.Params.Member)
		ev.RollbackOf, ev.What = orig.ID, runWhat(orig.Params)
	} else {
		ev.What = runWhat(params)
	}
	if params.Policy != nil {
		ev.Policy, ev.Rules = params.Policy.File, params.Policy.Rules
	}
	o := &runOutput{w: stdout, json: cfg.JSON}
	if cfg.rollbackOf != "" {
		o.say(ev, "run %s: rollback of run %s (%s), only where nothing changed since\n", s.runID, ev.RollbackOf, ev.What)
	} else {
		o.say(ev, "run %s: %s %s on every Safe in scope\n", s.runID, s.mode, ev.What)
	}
	p := planner.Plan{Run: s.runID, Mode: s.mode, Policy: s.policy, Filter: s.filter, Logger: log}
	where := natsArgs(cfg.NATS, cfg.DataDir)

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
		// are published. The progress view goes to stderr, except the
		// JSON lines of --json, which are for stdout.
		view := stderr
		if cfg.JSON {
			view = stdout
		}
		watchWG.Add(1)
		go func() {
			defer watchWG.Done()
			out, watchErr = watch.Watch(watchCtx, env.js, s.runID, watch.Options{
				Out: view, Mode: viewMode(cfg.JSON), Logger: log, Runs: env.streams.Runs, OnResult: rep.Write,
			})
		}()
	}
	rec, sum, err := planner.Start(ctx, env.js, env.streams, src, p, params, holder)
	if err != nil {
		if errors.Is(err, jobs.ErrLeaseHeld) || errors.Is(err, planner.ErrRunFinished) || errors.Is(err, planner.ErrPolicyRefused) {
			err = &cliconf.ExitError{Code: cliconf.ExitUsage, Err: err}
		}
		cancelWatch()
		watchWG.Wait()
		return err
	}
	for _, n := range sum.Unmatched {
		log.Warn().Str(logFile, s.includeFile).Str(logSafe, n).Msg("include list names a Safe the PVWA did not list")
	}
	pe := plannedEvent{Type: "planned", Run: rec.ID, Listed: sum.Listed, Published: sum.Planned, Skipped: sum.SkippedTotal(),
		SkippedBy: map[string]int{}, Unmatched: sum.Unmatched}
	for r, n := range sum.Skipped {
		pe.SkippedBy[r.String()] = n
	}
	next := nextSteps(rec, where, "")
	if !watching {
		pe.Final, pe.Next = true, &next
	}
	o.say(pe, "run %s: %d %s, %d jobs published, %d skipped (%s)\n",
		rec.ID, sum.Listed, map[bool]string{true: "results of the run read", false: "Safes listed"}[cfg.rollbackOf != ""],
		sum.Planned, sum.SkippedTotal(), skippedText(sum.Skipped))
	if !watching {
		if s.nats.Embedded() {
			o.human("run %s: --watch=false with the embedded server: the in-process workers stop now; the jobs wait in %s for the next planner run on it\n", rec.ID, cfg.DataDir)
			return o.err
		}
		o.human("run %s is being applied by the workers; follow it with:\n  %s\n", rec.ID, next.Watch)
		return o.err
	}
	watchWG.Wait()
	cancelWatch() // records the final counts
	ending := watch.Ending{Unmatched: sum.Unmatched, Next: nextSteps(out.Run, where, "")}
	if out.Run.ID == "" {
		ending.Next = next
	}
	if watchErr != nil {
		code, err := cliconf.ExitFailed, watchErr
		if ctx.Err() != nil {
			err = fmt.Errorf("interrupted: run %s continues with the workers; resume planning with --run-id %s", rec.ID, rec.ID)
		}
		if cfg.JSON {
			f := watch.NewFinal(out, ending, err, time.Now())
			f.ExitCode = code
			_ = f.Write(stdout)
		}
		return &cliconf.ExitError{Code: code, Err: err}
	}
	if fin, err := planner.Finish(context.WithoutCancel(ctx), env.streams.Runs, rec.ID); err != nil {
		log.Warn().Err(err).Msg("marking the run done")
	} else {
		out.Run = fin
	}
	if err := rep.Commit(); err != nil {
		return err
	}
	ending.Next.ReportFile = cfg.Report
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

// startEvent is the first JSON object of planner run --json.
type startEvent struct {
	Type string    `json:"type"`
	Run  string    `json:"run"`
	Mode jobs.Mode `json:"mode"`
	// What says what the run applies: the policy file and its rules, or
	// the member and flags of --member and --permissions.
	What string `json:"what"`
	// Policy is the policy file ("" for --member/--permissions), Rules
	// the names of its rules.
	Policy     string   `json:"policy,omitempty"`
	Rules      []string `json:"rules,omitempty"`
	RollbackOf string   `json:"rollbackOf,omitempty"`
}

// plannedEvent is the JSON object of planner run --json once every job is
// published. Without --watch it is the last one (final, with next).
type plannedEvent struct {
	Type      string           `json:"type"`
	Run       string           `json:"run"`
	Listed    int              `json:"listed"`
	Published int              `json:"published"`
	Skipped   int              `json:"skipped"`
	SkippedBy map[string]int   `json:"skippedBy"`
	Unmatched []string         `json:"unmatched,omitempty"`
	Final     bool             `json:"final"`
	Next      *watch.NextSteps `json:"next,omitempty"`
}

// runOutput writes a command's stdout: human lines, or with --json one
// JSON object per line and nothing else. It keeps the first error.
type runOutput struct {
	w    io.Writer
	json bool
	err  error
}

// say writes v as a JSON line, or the formatted human line.
func (o *runOutput) say(v any, format string, args ...any) {
	if o.err != nil {
		return
	}
	if o.json {
		var b []byte
		if b, o.err = json.Marshal(v); o.err == nil {
			_, o.err = o.w.Write(append(b, '\n'))
		}
		return
	}
	_, o.err = fmt.Fprintf(o.w, format, args...)
}

// human writes a line only people need; --json leaves it out.
func (o *runOutput) human(format string, args ...any) {
	if o.err == nil && !o.json {
		_, o.err = fmt.Fprintf(o.w, format, args...)
	}
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
		w, err := worker.New(ctx, worker.Config{ID: id, Concurrency: concurrency, RequestLimit: requestLimit, Logger: log.With().Str(logWorker, id).Logger()}, client, env.js, env.streams)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Run(ctx); err != nil {
				log.Error().Err(err).Str(logWorker, id).Msg("in-process worker stopped")
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

// runWhat says what a run applies: its policy file and rules, or the
// member and flags of --member and --permissions.
func runWhat(p jobs.RunParams) string {
	switch {
	case p.Policy != nil && p.Policy.File != "":
		return fmt.Sprintf("policy %s (rules %s)", p.Policy.File, strings.Join(p.Policy.Rules, ", "))
	case p.Member.Name != "":
		return fmt.Sprintf("%s for %s", p.Permissions, p.Member.Name)
	}
	return "its policy"
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
