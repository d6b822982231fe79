package watch

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/safeperm/safeperm/internal/jobs"
)

// SummaryMaxListed is how many failures and drift Safes Summary lists
// before "... and N more".
const SummaryMaxListed = 25

// Summary writes the end-of-run summary: the totals, the counts by status,
// the failed and conflict Safes and, for a check run, the Safes with
// drift (each list capped at SummaryMaxListed, then "... and N more").
// Safe names are quoted and messages cleaned of control characters, so
// the summary is safe to print on a terminal.
func Summary(w io.Writer, o Outcome) {
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
		tw.printf("failed or conflict (%d):\n", n)
		listed := min(len(o.Failures), SummaryMaxListed)
		for _, r := range o.Failures[:listed] {
			tw.printf("  %s\n", failureText(r))
		}
		if more := n - listed; more > 0 {
			tw.printf("  ... and %d more (see the report)\n", more)
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
	Error       string              `json:"error,omitempty"`
}

// Statuses returns one RunStatus per run, newest first (by Started, then
// id). count may be nil, leaving the counts out. It returns every count
// error joined, after filling in the rest.
func Statuses(runs []jobs.Run, count CountFunc) ([]RunStatus, error) {
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
		out = append(out, s)
	}
	return out, errors.Join(errs...)
}

// Status writes one aligned line per run, newest first, for "planner
// status": RUN, MODE, STATE, STARTED (UTC), PLANNED ("+": planning not
// done), DONE, FAILED (failed + conflict; "?" when counting failed) and the
// run's error. Pass the recent runs only; count may be nil. It returns
// count errors joined (the table is complete regardless) or a write error.
func Status(w io.Writer, runs []jobs.Run, count CountFunc) error {
	sts, countErr := Statuses(runs, count)
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
	if ew.err != nil {
		return fmt.Errorf("write status: %w", ew.err)
	}
	return countErr
}

// StatusJSON writes the Statuses as one JSON array (newest first). Errors
// as for Status; a run whose counting failed carries countsError.
func StatusJSON(w io.Writer, runs []jobs.Run, count CountFunc) error {
	sts, countErr := Statuses(runs, count)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(sts); err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	return countErr
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
