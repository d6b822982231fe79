package watch_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/testutil"
	"github.com/safeperm/safeperm/internal/watch"
)

func TestWatchOutcome(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	tests := []struct {
		name       string
		mode       jobs.Mode
		results    []res
		skipped    int // of results, published "by the planner"
		wantCounts map[jobs.Status]int
		wantFail   int
		wantDrift  int
		wantExit   int
	}{
		{
			name: "apply, all fine", mode: jobs.ModeApply,
			results:    append(many("ok", 5, jobs.StatusApplied), append(many("same", 3, jobs.StatusUnchanged), many("sys", 2, jobs.StatusSkipped)...)...),
			skipped:    2,
			wantCounts: map[jobs.Status]int{jobs.StatusApplied: 5, jobs.StatusUnchanged: 3, jobs.StatusSkipped: 2},
			wantExit:   watch.ExitOK,
		},
		{
			name: "apply with failures", mode: jobs.ModeApply,
			results:    append(many("ok", 4, jobs.StatusApplied), res{"bad", jobs.StatusFailed}, res{"race", jobs.StatusConflict}),
			wantCounts: map[jobs.Status]int{jobs.StatusApplied: 4, jobs.StatusFailed: 1, jobs.StatusConflict: 1},
			wantFail:   2, wantExit: watch.ExitFailed,
		},
		{
			name: "check with drift", mode: jobs.ModeCheck,
			results:    append(many("fine", 3, jobs.StatusUnchanged), many("drifted", 2, jobs.StatusDrift)...),
			wantCounts: map[jobs.Status]int{jobs.StatusUnchanged: 3, jobs.StatusDrift: 2},
			wantDrift:  2, wantExit: watch.ExitDrift,
		},
		{
			name: "check with drift and a failure", mode: jobs.ModeCheck,
			results:    append(many("drifted", 2, jobs.StatusDrift), res{"bad", jobs.StatusFailed}),
			wantCounts: map[jobs.Status]int{jobs.StatusDrift: 2, jobs.StatusFailed: 1},
			wantFail:   1, wantDrift: 2, wantExit: watch.ExitFailed,
		},
		{
			name: "check, all fine", mode: jobs.ModeCheck,
			results:    many("fine", 3, jobs.StatusUnchanged),
			wantCounts: map[jobs.Status]int{jobs.StatusUnchanged: 3},
			wantExit:   watch.ExitOK,
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := fmt.Sprintf("outcome-%d", i)
			published := len(tt.results) - tt.skipped
			e.createRun(t, jobs.Run{ID: id, Mode: tt.mode, State: jobs.RunRunning, Planned: published,
				Published: published, Skipped: tt.skipped, PlanningDone: true, Started: time.Now().Add(-time.Minute)})
			e.publish(t, id, tt.mode, tt.results...)

			var mu sync.Mutex
			seen := map[string]int{}
			o := e.opts(nil, watch.ViewNone)
			o.OnResult = func(r jobs.Result) {
				mu.Lock()
				seen[r.Safe.Name]++
				mu.Unlock()
			}
			out, err := watch.Watch(testutil.Context(t, 5*time.Second), e.js, id, o)
			if err != nil {
				t.Fatalf("Watch: %v", err)
			}
			if !maps.Equal(out.Counts, tt.wantCounts) {
				t.Errorf("Counts = %v, want %v", out.Counts, tt.wantCounts)
			}
			if out.Done != len(tt.results) || !out.Complete {
				t.Errorf("Done = %d, Complete = %v; want %d, true", out.Done, out.Complete, len(tt.results))
			}
			if len(out.Failures) != tt.wantFail || len(out.Drift) != tt.wantDrift {
				t.Errorf("%d failures, %d drift listed; want %d, %d", len(out.Failures), len(out.Drift), tt.wantFail, tt.wantDrift)
			}
			if got := out.ExitCode(); got != tt.wantExit {
				t.Errorf("ExitCode = %d, want %d", got, tt.wantExit)
			}
			if out.Took < time.Minute {
				t.Errorf("Took = %s, want at least the minute since Started", out.Took)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(seen) != len(tt.results) {
				t.Errorf("OnResult saw %d Safes, want %d", len(seen), len(tt.results))
			}
			for name, n := range seen {
				if n != 1 {
					t.Errorf("OnResult called %d times for %q, want once", n, name)
				}
			}
		})
	}
}

// A watcher joining midway sees the results published before it started,
// waits through planning, and ends once the last result arrives.
func TestWatchJoinMidway(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	const id = "midway"
	e.createRun(t, jobs.Run{ID: id, Mode: jobs.ModeApply, Planned: 10, Published: 10})
	e.publish(t, id, jobs.ModeApply, many("early", 6, jobs.StatusApplied)...)

	buf := &testutil.Buffer{}
	wait := watchAsync(testutil.Context(t, 5*time.Second), e.js, id, e.opts(buf, watch.ViewPlain))
	// Planning is not done: Watch must not end even though it has every
	// result the record accounts for so far, and says the total is
	// provisional.
	testutil.Eventually(t, 3*time.Second, 20*time.Millisecond, func() error {
		if out := buf.String(); !strings.Contains(out, "6/10+ (60.0%, planning)") {
			return fmt.Errorf("output so far:\n%s", out)
		}
		return nil
	})
	e.publish(t, id, jobs.ModeApply, many("late", 6, jobs.StatusApplied)...)
	e.publish(t, id, jobs.ModeApply, many("late", 2, jobs.StatusFailed)...) // duplicates: dropped
	e.publish(t, id, jobs.ModeApply, res{"late fail", jobs.StatusFailed})
	e.update(t, id, func(r *jobs.Run) {
		r.Planned, r.Published, r.PlanningDone, r.State = 13, 13, true, jobs.RunRunning
	})
	out, err := wait()
	if err != nil {
		t.Fatalf("Watch: %v\n%s", err, buf.String())
	}
	want := map[jobs.Status]int{jobs.StatusApplied: 12, jobs.StatusFailed: 1}
	if !maps.Equal(out.Counts, want) || out.Done != 13 || !out.Complete {
		t.Errorf("Counts = %v, Done = %d, Complete = %v; want %v, 13, true", out.Counts, out.Done, out.Complete, want)
	}
	if out.ExitCode() != watch.ExitFailed {
		t.Errorf("ExitCode = %d, want %d", out.ExitCode(), watch.ExitFailed)
	}
	if !strings.Contains(buf.String(), "done 13/13 (100.0%)") {
		t.Errorf("no final line in:\n%s", buf.String())
	}
}

func TestWatchPlainOutput(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	const id = "plain"
	e.createRun(t, jobs.Run{ID: id, Mode: jobs.ModeApply, State: jobs.RunRunning, Planned: 4, Published: 4, PlanningDone: true})
	e.publish(t, id, jobs.ModeApply, append(many("ok", 2, jobs.StatusApplied), res{"Fin\nance =1", jobs.StatusFailed})...)

	buf := &testutil.Buffer{}
	wait := watchAsync(testutil.Context(t, 5*time.Second), e.js, id, e.opts(buf, watch.ViewPlain))
	testutil.Eventually(t, 3*time.Second, 20*time.Millisecond, func() error {
		if out := buf.String(); !strings.Contains(out, "run plain: 3/4 (75.0%)") {
			return fmt.Errorf("no progress line in:\n%s", out)
		}
		return nil
	})
	e.publish(t, id, jobs.ModeApply, res{"last", jobs.StatusUnchanged})
	if _, err := wait(); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	tests := []struct {
		name, want string
	}{
		{"progress line", "run plain: 3/4 (75.0%) "},
		{"rate and ETA", " Safes/s ETA "},
		{"counts", "| applied 2 failed 1\n"},
		{"failure line, name quoted, escape removed", `run plain: failed "Fin\nance =1": PASWS013E: member changed?[31m under us` + "\n"},
		{"final line", "run plain: done 4/4 (100.0%) in "},
		{"final counts", "| applied 2 unchanged 1 failed 1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(out, tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, out)
			}
		})
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("output contains an escape character:\n%q", out)
	}
}

func TestWatchJSONOutput(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	const id = "json"
	e.createRun(t, jobs.Run{ID: id, Mode: jobs.ModeCheck, State: jobs.RunRunning, Planned: 3, Published: 3, Skipped: 1, PlanningDone: true})
	e.publish(t, id, jobs.ModeCheck, res{"a", jobs.StatusUnchanged}, res{"b", jobs.StatusDrift})

	buf := &testutil.Buffer{}
	wait := watchAsync(testutil.Context(t, 5*time.Second), e.js, id, e.opts(buf, watch.ViewJSON))
	testutil.Eventually(t, 3*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(buf.String(), `"done":2`) {
			return errors.New("no line with done 2 yet")
		}
		return nil
	})
	e.publish(t, id, jobs.ModeCheck, res{"c", jobs.StatusUnchanged}, res{"sys", jobs.StatusSkipped})
	out, err := wait()
	if err != nil {
		t.Fatal(err)
	}
	if out.ExitCode() != watch.ExitDrift {
		t.Errorf("ExitCode = %d, want %d", out.ExitCode(), watch.ExitDrift)
	}
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(buf.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	if len(lines) < 1 {
		t.Fatalf("want progress lines, got %d lines", len(lines))
	}
	// The view writes progress lines only; the command ends with Final.
	fields := []string{"type", "run", "mode", "state", "planned", "done", "expected", "total", "planningDone", "counts", "rate", "etaSeconds", "time", "final", "complete"}
	for i, l := range lines {
		for _, f := range fields {
			if _, ok := l[f]; !ok {
				t.Errorf("line %d lacks %q: %v", i, f, l)
			}
		}
		if l["type"] != watch.TypeProgress || l["final"] != false {
			t.Errorf("line %d: type %v final %v, want a progress line", i, l["type"], l["final"])
		}
		if counts := l["counts"].(map[string]any); len(counts) != 6 {
			t.Errorf("line %d: counts %v, want all six statuses", i, counts)
		}
	}

	var fb bytes.Buffer
	next := watch.NextSteps{Report: "planner report json", Watch: "planner watch json"}
	if err := watch.NewFinal(out, watch.Ending{Next: next}, nil, time.Now()).Write(&fb); err != nil {
		t.Fatal(err)
	}
	if strings.Count(fb.String(), "\n") != 1 {
		t.Errorf("Final is not one line: %q", fb.String())
	}
	var last map[string]any
	if err := json.Unmarshal(fb.Bytes(), &last); err != nil {
		t.Fatal(err)
	}
	for _, f := range fields {
		if _, ok := last[f]; !ok && f != "rate" && f != "etaSeconds" {
			t.Errorf("Final lacks %q: %v", f, last)
		}
	}
	tests := []struct {
		field string
		want  any
	}{
		{"type", watch.TypeSummary}, {"run", id}, {"mode", "check"}, {"done", 4.0}, {"expected", 4.0}, {"total", 4.0},
		{"planningDone", true}, {"complete", true}, {"final", true}, {"exitCode", 3.0}, {"failed", 0.0},
	}
	for _, tt := range tests {
		if got := last[tt.field]; got != tt.want {
			t.Errorf("final %s = %v, want %v", tt.field, got, tt.want)
		}
	}
	if got := last["counts"].(map[string]any)["drift"]; got != 1.0 {
		t.Errorf("final counts.drift = %v, want 1", got)
	}
	if got := fmt.Sprint(last["drift"], last["failures"], last["next"]); got != "[b] [] map[report:planner report json watch:planner watch json]" {
		t.Errorf("final drift, failures, next = %s", got)
	}
}

func TestWatchBarOutput(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	const id = "bar"
	e.createRun(t, jobs.Run{ID: id, Mode: jobs.ModeApply, State: jobs.RunRunning, Planned: 3, Published: 3, PlanningDone: true})
	e.publish(t, id, jobs.ModeApply, res{"a", jobs.StatusApplied}, res{"b", jobs.StatusConflict}, res{"c", jobs.StatusApplied})
	buf := &testutil.Buffer{}
	out, err := watch.Watch(testutil.Context(t, 5*time.Second), e.js, id, e.opts(buf, watch.ViewBar))
	if err != nil {
		t.Fatal(err)
	}
	if out.Done != 3 {
		t.Errorf("Done = %d, want 3", out.Done)
	}
	for _, want := range []string{`conflict "b": PASWS013E: member changed`, "run bar", "3/3", "100.0%", "applied 2 conflict 1"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("bar output lacks %q:\n%q", want, buf.String())
		}
	}
}

func TestWatchRunEnded(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	tests := []struct {
		name    string
		state   jobs.RunState
		errText string
	}{
		{"failed", jobs.RunFailed, "PVWA unreachable"},
		{"canceled", jobs.RunCanceled, "by operator"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := "ended-" + tt.name
			e.createRun(t, jobs.Run{ID: id, Mode: jobs.ModeApply, Planned: 5, Published: 2})
			e.publish(t, id, jobs.ModeApply, res{"a", jobs.StatusApplied})
			buf := &testutil.Buffer{}
			wait := watchAsync(testutil.Context(t, 5*time.Second), e.js, id, e.opts(buf, watch.ViewPlain))
			e.update(t, id, func(r *jobs.Run) { r.State, r.Error = tt.state, tt.errText })
			out, err := wait()
			if !errors.Is(err, watch.ErrRunFailed) {
				t.Fatalf("error = %v, want ErrRunFailed", err)
			}
			if !strings.Contains(err.Error(), tt.errText) || !strings.Contains(err.Error(), string(tt.state)) {
				t.Errorf("error %q does not name the state and the run's error", err)
			}
			if out.Complete || out.ExitCode() != watch.ExitFailed {
				t.Errorf("Complete = %v, ExitCode = %d; want false, %d", out.Complete, out.ExitCode(), watch.ExitFailed)
			}
			if out.Run.State != tt.state {
				t.Errorf("Outcome.Run.State = %q, want %q", out.Run.State, tt.state)
			}
			if !strings.Contains(buf.String(), "run "+id+": stopped at ") {
				t.Errorf("no stop line in:\n%s", buf.String())
			}
		})
	}
}

func TestWatchRunRecordLate(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	tests := []struct {
		name    string
		wait    time.Duration
		create  bool // create the record after 200ms
		wantErr error
	}{
		{"unknown run, no wait", -1, false, jobs.ErrRunNotFound},
		{"unknown run, short wait", 300 * time.Millisecond, false, jobs.ErrRunNotFound},
		{"record appears while waiting", 3 * time.Second, true, nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := fmt.Sprintf("late-%d", i)
			o := e.opts(nil, watch.ViewNone)
			o.WaitForRun = tt.wait
			start := time.Now()
			wait := watchAsync(testutil.Context(t, 5*time.Second), e.js, id, o)
			if tt.create {
				time.Sleep(200 * time.Millisecond) // the planner is slow to create the record
				e.createRun(t, jobs.Run{ID: id, Mode: jobs.ModeApply, State: jobs.RunRunning, Planned: 1, Published: 1, PlanningDone: true})
				e.publish(t, id, jobs.ModeApply, res{"a", jobs.StatusApplied})
			}
			out, err := wait()
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil && time.Since(start) > tt.wait+2*time.Second {
				t.Errorf("took %s to give up, WaitForRun %s", time.Since(start), tt.wait)
			}
			if tt.create && out.Done != 1 {
				t.Errorf("Done = %d, want 1", out.Done)
			}
		})
	}
}

func TestWatchContextEnds(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	const id = "ctx"
	e.createRun(t, jobs.Run{ID: id, Mode: jobs.ModeApply, Planned: 3, Published: 3, PlanningDone: true, State: jobs.RunRunning})
	e.publish(t, id, jobs.ModeApply, res{"a", jobs.StatusApplied})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	out, err := watch.Watch(ctx, e.js, id, e.opts(nil, watch.ViewNone))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want context.DeadlineExceeded", err)
	}
	if out.Complete || out.Done != 1 || out.ExitCode() != watch.ExitFailed {
		t.Errorf("Complete %v, Done %d, ExitCode %d; want false, 1, %d", out.Complete, out.Done, out.ExitCode(), watch.ExitFailed)
	}
}

func TestWatchBadArguments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		id   string
		opt  watch.Options
		want string
	}{
		{"no Runs", "r1", watch.Options{}, "Options.Runs is nil"},
		{"bad run id", "a.b", watch.Options{Runs: &jobs.Runs{}}, "a.b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := watch.Watch(context.Background(), nil, tt.id, tt.opt)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
