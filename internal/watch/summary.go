package watch

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/safeperm/safeperm/internal/jobs"
)

// SummaryMaxListed is how many drift Safes Summary lists before "... and
// N more".
const SummaryMaxListed = 25

// NextSteps is what the end of a run points to: the report written and the
// exact commands to follow, report on or undo this run. Empty fields are
// left out. JSON field names are stable.
type NextSteps struct {
	// ReportFile is the per-Safe report the command wrote (--report).
	ReportFile string `json:"reportFile,omitempty"`
	// Report rebuilds the per-Safe report from NATS.
	Report string `json:"report,omitempty"`
	// Watch follows the run (or shows its end again).
	Watch string `json:"watch,omitempty"`
	// Rollback undoes what the run changed (apply runs only).
	Rollback string `json:"rollback,omitempty"`
}

// Ending is what a command adds to the end of a run's summary.
type Ending struct {
	// Unmatched are include-list names the PVWA did not list.
	Unmatched []string
	// Next is where to go from here.
	Next NextSteps
}

// Summary writes the end-of-run summary: the totals, the counts by status,
// the failed and conflict Safes grouped by cause (error code, HTTP status
// and PVWA call) with a count, a few example names and what to do, for a
// check run the Safes with drift (capped at SummaryMaxListed, then "...
// and N more"), then the Ending. Safe names are quoted and messages
// cleaned of control characters, so the summary is safe to print on a
// terminal.
func Summary(w io.Writer, o Outcome, e Ending) {
	tw := &errWriter{w: w}
	want, provisional := total(o.Run, o.Done)
	mode := o.Run.Mode
	if mode == "" {
		mode = "?"
	}
	status := fmt.Sprintf("done in %s", fmtDuration(o.Took))
	if !o.Complete {
		status = fmt.Sprintf("incomplete after %s, run %s", fmtDuration(o.Took), o.Run.State)
		if o.Run.Error != "" {
			status += ": " + cleanText(o.Run.Error)
		}
	}
	plus := ""
	if provisional {
		plus = "+"
	}
	tw.printf("run %s (%s): %d/%d%s Safes, %s\n", o.Run.ID, mode, o.Done, want, plus, status)
	var parts []string
	for _, st := range jobs.AllStatuses() {
		parts = append(parts, fmt.Sprintf("%s %d", st, o.Counts[st]))
	}
	tw.printf("  %s\n", strings.Join(parts, ", "))

	if len(o.Rules) > 1 || (len(o.Rules) == 1 && o.Rules[jobs.RuleV1] == nil && o.Rules["flags"] == nil) {
		tw.printf("by rule (members):\n")
		for _, rule := range slices.Sorted(maps.Keys(o.Rules)) {
			var parts []string
			for _, st := range jobs.AllStatuses() {
				if n := o.Rules[rule][st]; n > 0 {
					parts = append(parts, fmt.Sprintf("%s %d", st, n))
				}
			}
			tw.printf("  %s: %s\n", cleanText(rule), strings.Join(parts, ", "))
		}
	}
	if n := o.Failed(); n > 0 {
		writeCauses(tw, fmt.Sprintf("failed or conflict: %d %s, by cause:", n, safes(n)), o.Causes, "  ")
		where := e.Next.ReportFile
		if where == "" {
			where = e.Next.Report
		}
		if where != "" {
			tw.printf("  every Safe with its error: %s\n", where)
		}
	}
	if n := o.Counts[jobs.StatusDrift]; n > 0 && o.Run.Mode == jobs.ModeCheck {
		tw.printf("drift (%d):\n", n)
		listed := min(len(o.Drift), SummaryMaxListed)
		for _, r := range o.Drift[:listed] {
			tw.printf("  %s: %s\n", quoteName(r.Safe.Name), DriftText(r))
		}
		if more := n - listed; more > 0 {
			tw.printf("  ... and %d more (see the report)\n", more)
		}
	}
	if len(e.Unmatched) > 0 {
		names := make([]string, len(e.Unmatched))
		for i, n := range e.Unmatched {
			names[i] = quoteName(n)
		}
		tw.printf("include list names %d Safe(s) the PVWA did not list: %s\n", len(e.Unmatched), strings.Join(names, ", "))
	}
	writeNext(tw, e.Next)
}

// writeCauses writes a heading and one headline and advice per group.
func writeCauses(tw *errWriter, heading string, groups []FailureGroup, indent string) {
	tw.printf("%s\n", heading)
	for _, g := range groups {
		tw.printf("%s%s:\n%s  %s\n", indent, g.headline(), indent, g.Advice)
	}
}

// writeNext writes the "next:" block.
func writeNext(tw *errWriter, n NextSteps) {
	if n == (NextSteps{}) {
		return
	}
	tw.printf("next:\n")
	if n.ReportFile != "" {
		tw.printf("  report:    %s\n", n.ReportFile)
		if n.Report != "" {
			tw.printf("             (again from NATS: %s)\n", n.Report)
		}
	} else if n.Report != "" {
		tw.printf("  report:    %s\n", n.Report)
	}
	if n.Rollback != "" {
		tw.printf("  rollback:  %s\n", n.Rollback)
	}
	if n.Watch != "" {
		tw.printf("  watch:     %s\n", n.Watch)
	}
}

func safes(n int) string {
	if n == 1 {
		return "Safe"
	}
	return "Safes"
}

// Final is the last JSON object of "planner run --json" and "planner watch
// --json": the progress fields of the last line, the failures grouped by
// cause, the drift examples of a check run and where to go next. Field
// names are stable (see the package documentation).
type Final struct {
	RunCounts
	Failed      int            `json:"failed"`
	TookSeconds float64        `json:"tookSeconds"`
	Time        time.Time      `json:"time"`
	Final       bool           `json:"final"`
	Complete    bool           `json:"complete"`
	Failures    []FailureGroup `json:"failures"`
	// Rules counts, per rule of the run's policy, its members by status.
	Rules     map[string]map[jobs.Status]int `json:"rules,omitempty"`
	Drift     []string                       `json:"drift,omitempty"`
	Unmatched []string                       `json:"unmatched,omitempty"`
	Next      NextSteps                      `json:"next"`
	ExitCode  int                            `json:"exitCode"`
	Error     string                         `json:"error,omitempty"`
}

// TypeProgress and TypeSummary are the "type" of the JSON view's lines.
const (
	TypeProgress = "progress"
	TypeSummary  = "summary"
)

// NewFinal builds the Final object of a run from what Watch returned (err
// may be nil). ExitCode is o.ExitCode(), or ExitFailed when err is set;
// callers with a better code overwrite it.
func NewFinal(o Outcome, e Ending, err error, now time.Time) Final {
	tot, _ := total(o.Run, o.Done)
	f := Final{
		RunCounts: runCounts(TypeSummary, o.Run.ID, o.Run, o.Done, tot, o.Counts),
		Failed:    o.Failed(), TookSeconds: math.Round(o.Took.Seconds()*10) / 10,
		Time: now.UTC(), Final: true, Complete: o.Complete, Failures: o.Causes, Unmatched: e.Unmatched,
		Next: e.Next, ExitCode: o.ExitCode(), Rules: o.Rules,
	}
	if f.Failures == nil {
		f.Failures = []FailureGroup{}
	}
	if o.Run.Mode == jobs.ModeCheck {
		for _, r := range o.Drift[:min(len(o.Drift), SummaryMaxListed)] {
			f.Drift = append(f.Drift, r.Safe.Name)
		}
	}
	if err != nil {
		f.Error = err.Error()
		f.ExitCode = ExitFailed
	}
	return f
}

// Write writes f as one JSON line.
func (f Final) Write(w io.Writer) error {
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

// DriftText says what a check run would change on one Safe, member by
// member: `PSMAppUsers +unlockAccounts; HelpDesk -retrieveAccounts; "jdoe"
// would be removed`.
func DriftText(r jobs.Result) string {
	var parts []string
	for _, m := range r.Members {
		if m.Status != jobs.StatusDrift {
			continue
		}
		name := quoteName(m.Member.Name)
		switch m.Change {
		case jobs.ChangeAdd:
			parts = append(parts, fmt.Sprintf("%s would be added with %s", name, strings.Join(m.Added.Names(), " ")))
		case jobs.ChangeRemove:
			parts = append(parts, name+" would be removed")
		default:
			var flags []string
			for _, f := range m.Added.Names() {
				flags = append(flags, "+"+f)
			}
			for _, f := range m.Removed.Names() {
				flags = append(flags, "-"+f)
			}
			if len(flags) == 0 {
				flags = append(flags, "expiry")
			}
			parts = append(parts, name+" "+strings.Join(flags, " "))
		}
	}
	return strings.Join(parts, "; ")
}

// errWriter remembers the first write error so printing code stays flat.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

// CountFunc returns the counts by status of one run's results.
type CountFunc func(runID string) (map[jobs.Status]int, error)

// FailureFunc returns one run's failed and conflict Safes grouped by cause.
type FailureFunc func(runID string) ([]FailureGroup, error)

// RunStatus is one run as Status and StatusJSON show it. JSON field names
// are stable.
type RunStatus struct {
	ID      string        `json:"id"`
	Mode    jobs.Mode     `json:"mode"`
	State   jobs.RunState `json:"state"`
	Started time.Time     `json:"started"`
	Ended   time.Time     `json:"ended,omitzero"`
	// Planned is Run.Expected(): the results the run will produce, final
	// only when PlanningDone.
	Planned      int  `json:"planned"`
	PlanningDone bool `json:"planningDone"`
	// Done, Failed (failed + conflict) and Counts come from the CountFunc;
	// Counts is nil and CountsError set when it failed (or none was given).
	Done        int                 `json:"done"`
	Failed      int                 `json:"failed"`
	Counts      map[jobs.Status]int `json:"counts"`
	CountsError string              `json:"countsError,omitempty"`
	// Failures groups the failed and conflict Safes by cause (from the
	// FailureFunc, for runs with failures); FailuresError says why it is
	// missing when reading them failed.
	Failures      []FailureGroup `json:"failures,omitempty"`
	FailuresError string         `json:"failuresError,omitempty"`
	Error         string         `json:"error,omitempty"`
}

// Statuses returns one RunStatus per run, newest first (by Started, then
// id). count and failures may be nil, leaving the counts or the causes
// out; failures is asked only about runs with failed or conflict Safes (or
// whose counting failed). It returns every error joined, after filling in
// the rest.
func Statuses(runs []jobs.Run, count CountFunc, failures FailureFunc) ([]RunStatus, error) {
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, newestFirst)
	out := make([]RunStatus, 0, len(sorted))
	var errs []error
	for _, r := range sorted {
		s := RunStatus{ID: r.ID, Mode: r.Mode, State: r.State, Started: r.Started, Ended: r.Ended,
			Planned: r.Expected(), PlanningDone: r.PlanningDone, Error: r.Error}
		if count == nil {
			s.CountsError = "not counted"
		} else if counts, err := count(r.ID); err != nil {
			s.CountsError = err.Error()
			errs = append(errs, fmt.Errorf("count results of run %s: %w", r.ID, err))
		} else {
			s.Counts = counts
			for _, n := range counts {
				s.Done += n
			}
			s.Failed = counts[jobs.StatusFailed] + counts[jobs.StatusConflict]
		}
		if failures != nil && (s.Failed > 0 || s.Counts == nil) {
			if groups, err := failures(r.ID); err != nil {
				s.FailuresError = err.Error()
				errs = append(errs, fmt.Errorf("read the failures of run %s: %w", r.ID, err))
			} else {
				s.Failures = groups
			}
		}
		out = append(out, s)
	}
	return out, errors.Join(errs...)
}

// Status writes one aligned line per run, newest first, for "planner
// status": RUN, MODE, STATE, STARTED (UTC), PLANNED ("+": planning not
// done), DONE, FAILED (failed + conflict; "?" when counting failed) and the
// run's error; then, for each run with failures, their causes with what to
// do. Pass the recent runs only; count and failures may be nil. It returns
// count and failure errors joined (the output is complete regardless) or a
// write error.
func Status(w io.Writer, runs []jobs.Run, count CountFunc, failures FailureFunc) error {
	sts, countErr := Statuses(runs, count, failures)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	ew := &errWriter{w: tw}
	ew.printf("RUN\tMODE\tSTATE\tSTARTED\tPLANNED\tDONE\tFAILED\tERROR\n")
	for _, s := range sts {
		planned := strconv.Itoa(s.Planned)
		if !s.PlanningDone {
			planned += "+"
		}
		done, failed := "?", "?"
		if s.Counts != nil {
			done, failed = strconv.Itoa(s.Done), strconv.Itoa(s.Failed)
		}
		started := "-"
		if !s.Started.IsZero() {
			started = s.Started.UTC().Format("2006-01-02 15:04:05Z")
		}
		ew.printf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Mode, s.State, started, planned, done, failed, cleanText(s.Error))
	}
	if ew.err == nil {
		ew.err = tw.Flush()
	}
	plain := &errWriter{w: w, err: ew.err}
	for _, s := range sts {
		if len(s.Failures) == 0 {
			continue
		}
		n := 0
		for _, g := range s.Failures {
			n += g.Count
		}
		plain.printf("\n")
		writeCauses(plain, fmt.Sprintf("run %s: %d failed or conflict %s, by cause:", s.ID, n, safes(n)), s.Failures, "  ")
	}
	if plain.err != nil {
		return fmt.Errorf("write status: %w", plain.err)
	}
	return countErr
}

// StatusJSON writes the Statuses as JSON Lines, one object per run,
// newest first. Errors as for Status; a run whose counting failed carries
// countsError, one whose failures could not be read failuresError.
func StatusJSON(w io.Writer, runs []jobs.Run, count CountFunc, failures FailureFunc) error {
	sts, countErr := Statuses(runs, count, failures)
	enc := json.NewEncoder(w)
	for _, s := range sts {
		if err := enc.Encode(s); err != nil {
			return fmt.Errorf("write status: %w", err)
		}
	}
	return countErr
}

// StreamFailures returns a FailureFunc that reads a run's failed and
// conflict results from their own subjects (jobs.ReplayStatuses): the cost
// is the run's failures, not its size. ctx bounds every read.
func StreamFailures(ctx context.Context, js jetstream.JetStream) FailureFunc {
	return func(runID string) ([]FailureGroup, error) {
		c := NewCauses()
		err := jobs.ReplayStatuses(ctx, js, runID, []jobs.Status{jobs.StatusFailed, jobs.StatusConflict}, func(r jobs.Result) error {
			c.Add(r)
			return nil
		})
		if err != nil {
			return nil, err
		}
		return c.Groups(), nil
	}
}

// StreamCounts returns a CountFunc that counts a run's results from the
// results stream's per-subject message counts: one cheap request per run,
// however many Safes it has. It counts messages, so a Safe reported twice
// (a re-report outside the dedup window, rare) counts twice; Watch and
// jobs.Tally count each Safe once. ctx bounds every request.
func StreamCounts(ctx context.Context, js jetstream.JetStream) CountFunc {
	var (
		once   sync.Once
		stream jetstream.Stream
		err    error
	)
	return func(runID string) (map[jobs.Status]int, error) {
		once.Do(func() { stream, err = js.Stream(ctx, jobs.ResultsStream) })
		if err != nil {
			return nil, fmt.Errorf("results stream: %w", err)
		}
		info, ierr := stream.Info(ctx, jetstream.WithSubjectFilter(jobs.ResultsFilter(runID)))
		if ierr != nil {
			return nil, fmt.Errorf("results stream info: %w", ierr)
		}
		counts := make(map[jobs.Status]int)
		prefix := strings.TrimSuffix(jobs.ResultsFilter(runID), "*")
		for subj, n := range info.State.Subjects {
			if st := jobs.Status(strings.TrimPrefix(subj, prefix)); st.Valid() {
				counts[st] += int(n)
			}
		}
		return counts, nil
	}
}

// Recent returns the n newest runs (by Started, then id), for Status; all
// of them when n <= 0 or there are fewer.
func Recent(runs []jobs.Run, n int) []jobs.Run {
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, newestFirst)
	if n > 0 && len(sorted) > n {
		sorted = sorted[:n]
	}
	return sorted
}

// newestFirst orders runs by Started, then id, newest first.
func newestFirst(a, b jobs.Run) int {
	if c := b.Started.Compare(a.Started); c != 0 {
		return c
	}
	return cmp.Compare(b.ID, a.ID)
}
