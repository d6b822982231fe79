package watch_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/testutil"
	"github.com/safeperm/safeperm/internal/watch"
)

func failure(name string) jobs.Result {
	return jobs.Result{Safe: jobs.SafeRef{Name: name}, Status: jobs.StatusFailed, ErrorCode: "MAX_DELIVERIES", Error: "gave up\nafter 8"}
}

func forbidden(name string) jobs.Result {
	return jobs.Result{Safe: jobs.SafeRef{Name: name}, Status: jobs.StatusFailed, ErrorCode: "CAWS00001E", Op: "PUT member",
		Error: "PUT member: HTTP 403 CAWS00001E (the API user lacks View or Manage Safe Members on this Safe)"}
}

func TestSummary(t *testing.T) {
	t.Parallel()
	var manyFailures []jobs.Result
	for i := range 38 {
		manyFailures = append(manyFailures, forbidden(fmt.Sprintf("Safe %02d", i)))
	}
	manyFailures = append(manyFailures, failure("Busy 1"), failure("Busy 2"))
	drift := jobs.Result{Safe: jobs.SafeRef{Name: "Drifty"}, Status: jobs.StatusDrift, Members: []jobs.MemberResult{{
		Rule: "psm-unlock", Member: jobs.MemberRef{Name: "PSMAppUsers"}, Status: jobs.StatusDrift, Change: jobs.ChangeAdd,
		Added: pam.Perms(pam.UnlockAccounts, pam.ListAccounts)}}}
	run := jobs.Run{ID: "r1", Mode: jobs.ModeApply, State: jobs.RunRunning, Published: 10, PlanningDone: true}
	check := run
	check.Mode = jobs.ModeCheck
	failed := run
	failed.State, failed.Error, failed.PlanningDone = jobs.RunFailed, "PVWA unreachable", false

	tests := []struct {
		name    string
		o       watch.Outcome
		e       watch.Ending
		want    []string
		notWant []string
	}{
		{
			name:    "all applied",
			o:       watch.Outcome{Run: run, Done: 10, Complete: true, Took: 83 * time.Second, Counts: map[jobs.Status]int{jobs.StatusApplied: 10}},
			want:    []string{"run r1 (apply): 10/10 Safes, done in 1m23s\n", "  applied 10, unchanged 0, drift 0, skipped 0, failed 0, conflict 0\n"},
			notWant: []string{"failed or conflict", "drift ("},
		},
		{
			name: "failures grouped by cause, largest first, with advice and where to find every name",
			o: watch.Outcome{Run: run, Done: 40, Complete: true, Counts: map[jobs.Status]int{jobs.StatusFailed: 40},
				Failures: manyFailures, Causes: watch.GroupFailures(manyFailures)},
			e: watch.Ending{Next: watch.NextSteps{ReportFile: "out.csv", Report: "planner report r1 --format csv", Watch: "planner watch r1"}},
			want: []string{"failed or conflict: 40 Safes, by cause:\n" +
				`  CAWS00001E (HTTP 403, PUT member) on 38 Safes, e.g. "Safe 00", "Safe 01", "Safe 02":` + "\n" +
				"    the API user may read but not change members on these Safes (it lacks Manage Safe Members): add it to them with View and Manage Safe Members, or list them in the exclude file\n" +
				`  MAX_DELIVERIES on 2 Safes: "Busy 1", "Busy 2":` + "\n",
				"  every Safe with its error: out.csv\n",
				"next:\n  report:    out.csv\n             (again from NATS: planner report r1 --format csv)\n  watch:     planner watch r1\n"},
			notWant: []string{`"Safe 03"`, "rollback:"},
		},
		{
			name: "check lists drift",
			o:    watch.Outcome{Run: check, Done: 10, Complete: true, Counts: map[jobs.Status]int{jobs.StatusDrift: 1, jobs.StatusUnchanged: 9}, Drift: []jobs.Result{drift}},
			want: []string{"run r1 (check)", "drift (1):\n", `  "Drifty": "PSMAppUsers" would be added with listAccounts unlockAccounts` + "\n"},
		},
		{
			name: "incomplete failed run",
			o:    watch.Outcome{Run: failed, Done: 3, Counts: map[jobs.Status]int{jobs.StatusApplied: 3}, Took: 4 * time.Second},
			want: []string{"run r1 (apply): 3/10+ Safes, incomplete after 4s, run failed: PVWA unreachable\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			watch.Summary(&buf, tt.o, tt.e)
			for _, w := range tt.want {
				if !strings.Contains(buf.String(), w) {
					t.Errorf("summary lacks %q:\n%s", w, buf.String())
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(buf.String(), w) {
					t.Errorf("summary has %q:\n%s", w, buf.String())
				}
			}
		})
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 23, 9, 45, 12, 0, time.UTC)
	runs := []jobs.Run{
		{ID: "old", Mode: jobs.ModeApply, State: jobs.RunDone, Started: t0, Published: 100, Skipped: 2, PlanningDone: true},
		{ID: "new", Mode: jobs.ModeCheck, State: jobs.RunPlanning, Started: t0.Add(time.Hour), Planned: 50, Published: 40},
		{ID: "broken", Mode: jobs.ModeApply, State: jobs.RunFailed, Started: t0.Add(30 * time.Minute), Error: "PVWA\tdown"},
	}
	counts := map[string]map[jobs.Status]int{
		"old": {jobs.StatusApplied: 99, jobs.StatusFailed: 1, jobs.StatusConflict: 1, jobs.StatusSkipped: 1},
		"new": {jobs.StatusDrift: 7},
	}
	count := func(id string) (map[jobs.Status]int, error) {
		if c, ok := counts[id]; ok {
			return c, nil
		}
		return nil, errors.New("stream unavailable")
	}
	failures := func(id string) ([]watch.FailureGroup, error) {
		switch id {
		case "old":
			return watch.GroupFailures([]jobs.Result{forbidden("A"), {Safe: jobs.SafeRef{Name: "B"}, Status: jobs.StatusConflict, Reason: "member changed since the run; left alone"}}), nil
		case "broken":
			return nil, nil
		}
		return nil, fmt.Errorf("asked about run %s, which has no failures", id)
	}
	tests := []struct {
		name     string
		count    watch.CountFunc
		failures watch.FailureFunc
		want     []string // lines, spaces collapsed
		err      bool
	}{
		{"with counts", count, nil, []string{
			"RUN MODE STATE STARTED PLANNED DONE FAILED ERROR",
			"new check planning 2026-11-23 10:45:12Z 40+ 7 0",
			"broken apply failed 2026-11-23 10:15:12Z 0+ ? ? PVWA down",
			"old apply done 2026-11-23 09:45:12Z 102 102 2",
		}, true},
		{"with counts and causes", count, failures, []string{
			"RUN MODE STATE STARTED PLANNED DONE FAILED ERROR",
			"new check planning 2026-11-23 10:45:12Z 40+ 7 0",
			"broken apply failed 2026-11-23 10:15:12Z 0+ ? ? PVWA down",
			"old apply done 2026-11-23 09:45:12Z 102 102 2",
			"",
			"run old: 2 failed or conflict Safes, by cause:",
			`- (conflict) on 1 Safe: "B":`,
			"the member changed after the run and was left alone: check these Safes by hand (the report has the state before and now)",
			`CAWS00001E (HTTP 403, PUT member) on 1 Safe: "A":`,
			"the API user may read but not change members on these Safes (it lacks Manage Safe Members): add it to them with View and Manage Safe Members, or list them in the exclude file",
		}, true},
		{"without counts", nil, nil, []string{
			"RUN MODE STATE STARTED PLANNED DONE FAILED ERROR",
			"new check planning 2026-11-23 10:45:12Z 40+ ? ?",
			"broken apply failed 2026-11-23 10:15:12Z 0+ ? ? PVWA down",
			"old apply done 2026-11-23 09:45:12Z 102 ? ?",
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := watch.Status(&buf, runs, tt.count, tt.failures)
			if (err != nil) != tt.err {
				t.Errorf("error = %v, want error %v", err, tt.err)
			}
			lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(tt.want), buf.String())
			}
			col := strings.Index(lines[0], "MODE")
			for i, l := range lines {
				if got := strings.Join(strings.Fields(l), " "); got != tt.want[i] {
					t.Errorf("line %d = %q, want %q", i, got, tt.want[i])
				}
				if i > 0 && i <= len(runs) && (len(l) <= col || l[col-1] != ' ' || l[col] == ' ') {
					t.Errorf("line %d not aligned with the MODE column: %q", i, l)
				}
			}
		})
	}

	var buf bytes.Buffer
	if err := watch.StatusJSON(&buf, runs, count, failures); err == nil || !strings.Contains(err.Error(), "run broken") {
		t.Fatalf("StatusJSON error = %v, want the count error of run broken", err)
	}
	// JSON Lines: one object per run, newest first.
	var got []watch.RunStatus
	for i, line := range strings.Split(strings.TrimRight(buf.String(), "\n"), "\n") {
		var s watch.RunStatus
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("line %d %q: %v", i, line, err)
		}
		got = append(got, s)
	}
	if len(got) != 3 || got[0].ID != "new" || got[1].ID != "broken" || got[0].Done != 7 || got[1].Error != "PVWA\tdown" || got[1].CountsError != "stream unavailable" {
		t.Fatalf("StatusJSON = %+v", got)
	}
	if f := got[2].Failures; len(f) != 2 || f[1].ErrorCode != "CAWS00001E" || f[1].HTTP != 403 || f[1].Op != "PUT member" || f[1].Count != 1 || f[1].Advice == "" {
		t.Errorf("StatusJSON failures of run old = %+v", f)
	}
	if got[0].Failures != nil || got[0].FailuresError != "" {
		t.Errorf("run new has no failures but shows %+v %q", got[0].Failures, got[0].FailuresError)
	}
}

func TestStreamCounts(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	e.publish(t, "r1", jobs.ModeApply, append(many("ok", 3, jobs.StatusApplied), res{"bad", jobs.StatusFailed})...)
	e.publish(t, "r2", jobs.ModeCheck, res{"x", jobs.StatusDrift})
	count := watch.StreamCounts(testutil.Context(t, 5*time.Second), e.js)
	tests := []struct {
		run  string
		want map[jobs.Status]int
	}{
		{"r1", map[jobs.Status]int{jobs.StatusApplied: 3, jobs.StatusFailed: 1}},
		{"r2", map[jobs.Status]int{jobs.StatusDrift: 1}},
		{"r3", map[jobs.Status]int{}},
	}
	for _, tt := range tests {
		got, err := count(tt.run)
		if err != nil || !maps.Equal(got, tt.want) {
			t.Errorf("counts of %s = %v, %v; want %v", tt.run, got, err, tt.want)
		}
	}
}

func TestStreamFailures(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	e.publish(t, "r1", jobs.ModeApply, append(many("ok", 3, jobs.StatusApplied),
		res{"bad 1", jobs.StatusFailed}, res{"bad 2", jobs.StatusFailed}, res{"moved", jobs.StatusConflict})...)
	failures := watch.StreamFailures(testutil.Context(t, 5*time.Second), e.js)
	groups, err := failures("r1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range groups {
		got = append(got, fmt.Sprintf("%s %s %d %q", g.Status, g.ErrorCode, g.Count, g.Examples))
	}
	want := `failed PASWS013E 2 ["bad 1" "bad 2"]|conflict PASWS013E 1 ["moved"]`
	if strings.Join(got, "|") != want {
		t.Errorf("groups %s, want %s", strings.Join(got, "|"), want)
	}
	if groups, err := failures("r2"); err != nil || len(groups) != 0 {
		t.Errorf("run without results: %v, %v", groups, err)
	}
}
