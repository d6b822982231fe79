package watch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/term"

	"github.com/safeperm/safeperm/internal/jobs"
)

// Log field names.
const (
	logKeyComponent = "component"
	logKeyRun       = "run"
)

// Defaults of Options.
const (
	DefaultInterval   = 5 * time.Second
	DefaultPoll       = 500 * time.Millisecond
	DefaultWaitForRun = 5 * time.Second
	DefaultMaxListed  = 1000
)

// Exit codes returned by Outcome.ExitCode; the same numbers as the
// commands' exit codes.
const (
	ExitOK     = 0
	ExitFailed = 1
	ExitDrift  = 3
)

// ErrRunFailed is wrapped by the error Watch returns when the run record
// says the run failed or was canceled; the error carries Run.Error.
var ErrRunFailed = errors.New("run failed")

// ViewMode chooses how Watch shows progress.
type ViewMode int

// The view modes.
const (
	// ViewAuto is ViewBar when Options.Out is a terminal (*os.File), else
	// ViewPlain.
	ViewAuto ViewMode = iota
	// ViewBar is a progress bar with failures printed above it.
	ViewBar
	// ViewPlain is one text line every Interval plus one per failure.
	ViewPlain
	// ViewJSON is one JSON object every Interval plus a final one.
	ViewJSON
	// ViewNone shows nothing (Watch only returns the Outcome).
	ViewNone
)

var viewNames = map[ViewMode]string{ViewAuto: "auto", ViewBar: "bar", ViewPlain: "plain", ViewJSON: "json", ViewNone: "none"}

// String returns the mode's flag name.
func (m ViewMode) String() string {
	if s, ok := viewNames[m]; ok {
		return s
	}
	return fmt.Sprintf("ViewMode(%d)", int(m))
}

// ParseViewMode parses a flag value: auto, bar, plain, json or none
// (ignoring case).
func ParseViewMode(s string) (ViewMode, error) {
	for m, name := range viewNames {
		if strings.EqualFold(strings.TrimSpace(s), name) {
			return m, nil
		}
	}
	return 0, fmt.Errorf("unknown view %q: want auto, bar, plain, json or none", s)
}

// Options configures Watch. Runs is required; zero fields take defaults.
type Options struct {
	// Out is where the view goes; nil discards it.
	Out io.Writer
	// Mode chooses the view (default ViewAuto).
	Mode ViewMode
	// Interval is the cadence of plain and JSON lines (default 5s). Both
	// also write a final line.
	Interval time.Duration
	// Logger receives diagnostics (poll errors); never the view.
	Logger zerolog.Logger
	// OnResult, when set, is called once for each Safe with its first
	// result, in stream order, from one goroutine (e.g. a report writer).
	// Watch waits for it to return before it returns. It must not block
	// for long: results are not read meanwhile.
	OnResult func(jobs.Result)
	// Runs reads the run record. Required.
	Runs *jobs.Runs
	// Poll is how often the run record is read (default 500ms).
	Poll time.Duration
	// WaitForRun is how long Watch waits for a run record that does not
	// exist yet (the planner may create it a moment later); default 5s,
	// negative for no wait.
	WaitForRun time.Duration
	// MaxListed caps Outcome.Failures and Outcome.Drift (default 1000).
	MaxListed int
}

func (o Options) withDefaults() Options {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	if o.WaitForRun == 0 {
		o.WaitForRun = DefaultWaitForRun
	}
	if o.MaxListed <= 0 {
		o.MaxListed = DefaultMaxListed
	}
	if o.Mode == ViewAuto {
		o.Mode = ViewPlain
		if f, ok := o.Out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			o.Mode = ViewBar
		}
	}
	return o
}

// Outcome is what Watch saw of a run.
type Outcome struct {
	// Run is the last run record read.
	Run jobs.Run
	// Counts counts the Safes by status (absent: zero).
	Counts map[jobs.Status]int
	// Done is how many Safes have a result.
	Done int
	// Complete is true when every expected result arrived (planning done
	// and Done >= Run.Expected()).
	Complete bool
	// Took is how long the run took: from Run.Started to its last result
	// when Complete, else to when Watch returned.
	Took time.Duration
	// Failures are the failed and conflict results, in arrival order, at
	// most Options.MaxListed (Counts has the totals).
	Failures []jobs.Result
	// Causes groups every failed and conflict result (not only the listed
	// ones) by cause, the largest group first.
	Causes []FailureGroup
	// Drift are the drift results, capped like Failures.
	Drift []jobs.Result
	// Rules counts, for each rule, the members it concerned by their
	// status (a member several rules concern counts for each).
	Rules map[string]map[jobs.Status]int
}

// Failed returns the number of failed and conflict Safes.
func (o Outcome) Failed() int {
	return o.Counts[jobs.StatusFailed] + o.Counts[jobs.StatusConflict]
}

// ExitCode maps the outcome to the commands' exit code: ExitFailed (1)
// when any Safe failed or conflicted, or the outcome is not Complete;
// ExitDrift (3) for a check run that found drift; ExitOK (0) otherwise.
func (o Outcome) ExitCode() int {
	switch {
	case o.Failed() > 0 || !o.Complete:
		return ExitFailed
	case o.Run.Mode == jobs.ModeCheck && o.Counts[jobs.StatusDrift] > 0:
		return ExitDrift
	}
	return ExitOK
}

// Watch follows run runID until every expected result arrived, showing
// progress on opt.Out as opt.Mode says, and returns what it saw.
//
// It reads every result from the start of the stream (jobs.Follow), so
// joining a run midway, or after it ended, shows its true totals, and
// reads the run record every opt.Poll to learn the expected count. It
// returns:
//   - nil once planning is done and a result arrived for every expected
//     Safe (Outcome.Complete);
//   - an error wrapping ErrRunFailed when the run record says failed or
//     canceled;
//   - an error wrapping jobs.ErrRunNotFound when no record appears within
//     opt.WaitForRun, or the record disappears;
//   - ctx's error when ctx ends.
//
// In every case the Outcome holds what was seen so far.
func Watch(ctx context.Context, js jetstream.JetStream, runID string, opt Options) (Outcome, error) {
	if opt.Runs == nil {
		return Outcome{}, errors.New("watch: Options.Runs is nil")
	}
	if err := jobs.CheckRunID(runID); err != nil {
		return Outcome{}, fmt.Errorf("watch: %w", err)
	}
	opt = opt.withDefaults()
	log := opt.Logger.With().Str(logKeyComponent, "watch").Str(logKeyRun, runID).Logger()

	run, err := waitForRun(ctx, opt.Runs, runID, opt.WaitForRun, opt.Poll)
	if err != nil {
		return Outcome{Counts: map[jobs.Status]int{}}, fmt.Errorf("watch: %w", err)
	}
	log.Debug().Str("state", string(run.State)).Msg("following run")

	w := &watcher{
		runID: runID, opt: opt, log: log, run: run, started: time.Now(),
		tally: jobs.NewTally(), meter: newRateMeter(rateWindow), causes: NewCauses(),
		progressed: make(chan struct{}, 1), rules: map[string]map[jobs.Status]int{},
	}
	w.view = newView(opt, runID)

	followCtx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	followDone := make(chan error, 1)
	go func() { followDone <- jobs.Follow(followCtx, js, runID, w.add) }()

	out, err := w.loop(ctx, followDone)
	stopFollow()
	if !w.followEnded {
		<-followDone // no add, OnResult or failure line after this point
	}
	w.view.close(w.snapshot(time.Now()), out, err)
	return out, err
}

// waitForRun reads the run record, retrying every poll (at most 250ms)
// while it does not exist, for up to wait.
func waitForRun(ctx context.Context, runs *jobs.Runs, id string, wait, poll time.Duration) (jobs.Run, error) {
	deadline := time.Now().Add(wait)
	poll = min(poll, 250*time.Millisecond)
	for {
		run, _, err := runs.Get(ctx, id)
		if err == nil {
			return run, nil
		}
		if !errors.Is(err, jobs.ErrRunNotFound) || !time.Now().Add(poll).Before(deadline) {
			return jobs.Run{}, err
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return jobs.Run{}, fmt.Errorf("%w (waiting for run %s)", ctx.Err(), id)
		case <-t.C:
		}
	}
}

// watcher is the state of one Watch call. add runs on the Follow
// goroutine; everything else on Watch's.
type watcher struct {
	runID   string
	opt     Options
	log     zerolog.Logger
	view    view
	started time.Time
	tally   *jobs.Tally
	// progressed is signalled (without blocking) after each counted
	// result, so completion is noticed at once.
	progressed  chan struct{}
	followEnded bool

	mu       sync.Mutex
	run      jobs.Run
	meter    *rateMeter
	lastTime time.Time // latest result time
	failures []jobs.Result
	causes   *Causes
	drift    []jobs.Result
	rules    map[string]map[jobs.Status]int
}

// add is the Follow callback.
func (w *watcher) add(r jobs.Result) error {
	if !w.tally.Add(r) {
		return nil
	}
	now := time.Now()
	w.mu.Lock()
	w.meter.add(r.Time, now)
	if r.Time.After(w.lastTime) {
		w.lastTime = r.Time
	}
	failure, firstOfCause := w.causes.add(r)
	switch {
	case failure && len(w.failures) < w.opt.MaxListed:
		w.failures = append(w.failures, r)
	case r.Status == jobs.StatusDrift && len(w.drift) < w.opt.MaxListed:
		w.drift = append(w.drift, r)
	}
	countRules(w.rules, r)
	w.mu.Unlock()
	if w.opt.OnResult != nil {
		w.opt.OnResult(r)
	}
	if firstOfCause {
		// One line per cause as it first appears; the summary counts
		// them all and says what to do.
		w.view.failure(r)
	}
	select {
	case w.progressed <- struct{}{}:
	default:
	}
	return nil
}

// loop runs until the run completes or ends, ctx ends or Follow fails.
func (w *watcher) loop(ctx context.Context, followDone <-chan error) (Outcome, error) {
	poll := time.NewTicker(w.opt.Poll)
	defer poll.Stop()
	lines := time.NewTicker(w.opt.Interval)
	defer lines.Stop()
	var lastPollErr time.Time
	for {
		w.mu.Lock()
		run := w.run
		w.mu.Unlock()
		done := w.tally.Done()
		switch {
		case run.PlanningDone && done >= run.Expected():
			return w.outcome(true), nil
		case run.State == jobs.RunFailed || run.State == jobs.RunCanceled:
			msg := run.Error
			if msg == "" {
				msg = "no error recorded"
			}
			return w.outcome(false), fmt.Errorf("run %s %s: %s: %w", w.runID, run.State, msg, ErrRunFailed)
		}
		select {
		case <-ctx.Done():
			return w.outcome(false), fmt.Errorf("watch run %s: %w", w.runID, ctx.Err())
		case err := <-followDone:
			w.followEnded = true
			if err == nil { // Follow only returns nil on ErrStop, which add never returns
				err = errors.New("results ended")
			}
			return w.outcome(false), fmt.Errorf("watch run %s: %w", w.runID, err)
		case <-poll.C:
			run, _, err := w.opt.Runs.Get(ctx, w.runID)
			switch {
			case errors.Is(err, jobs.ErrRunNotFound):
				return w.outcome(false), fmt.Errorf("watch: run record disappeared: %w", err)
			case err != nil:
				if ctx.Err() == nil && time.Since(lastPollErr) > 30*time.Second {
					lastPollErr = time.Now()
					w.log.Warn().Err(err).Msg("reading the run record; retrying")
				}
			default:
				w.mu.Lock()
				w.run = run
				w.mu.Unlock()
			}
			w.view.progress(w.snapshot(time.Now()))
		case <-w.progressed:
			w.view.progress(w.snapshot(time.Now()))
		case <-lines.C:
			w.view.line(w.snapshot(time.Now()))
		}
	}
}

// countRules adds the member entries of r to the per-rule counts.
func countRules(rules map[string]map[jobs.Status]int, r jobs.Result) {
	for _, m := range r.Members {
		for rule := range strings.SplitSeq(m.Rule, ",") {
			if rule == "" {
				continue
			}
			c := rules[rule]
			if c == nil {
				c = map[jobs.Status]int{}
				rules[rule] = c
			}
			c[m.Status]++
		}
	}
}

// outcome returns the Outcome so far.
func (w *watcher) outcome(complete bool) Outcome {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	o := Outcome{
		Run:      w.run,
		Counts:   w.tally.Counts(),
		Done:     w.tally.Done(),
		Complete: complete,
		Failures: append([]jobs.Result(nil), w.failures...),
		Causes:   w.causes.Groups(),
		Drift:    append([]jobs.Result(nil), w.drift...),
		Rules:    make(map[string]map[jobs.Status]int, len(w.rules)),
	}
	for rule, c := range w.rules {
		o.Rules[rule] = maps.Clone(c)
	}
	start, end := w.run.Started, now
	if start.IsZero() {
		start = w.started
	}
	if complete && w.lastTime.After(start) {
		end = w.lastTime
	}
	o.Took = end.Sub(start)
	return o
}
