package reliability

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
)

// TestPermanentFaults checks failures no retry can fix: a Safe deleted
// between planning and applying, a Safe the API user may read but not
// manage (403), and a member name the vault does not know. Each must be
// reported once, failed, with the PVWA's ErrorCode, after a single
// delivery, and the run must end with exit code 1.
func TestPermanentFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	t.Parallel()
	dir := t.TempDir()
	s := startSim(t, simOptions{Safes: 300, Seed: 64, Latency: 2 * time.Millisecond})
	ns := startNATS(t, dir, "")

	full := s.find(3, func(in pamtest.SafeInfo) bool { return inScopeDefault(in) && in.Class == pamtest.ClassListOnly })
	readOnly := s.find(1, func(in pamtest.SafeInfo) bool {
		return !in.Internal && in.Access == pamtest.AccessReadOnly && in.Class != pamtest.ClassCompliant
	})
	if len(full) < 3 || len(readOnly) < 1 {
		t.Fatalf("vault lacks the Safes this test needs: %d full, %d read-only", len(full), len(readOnly))
	}
	deleted, okSafe, roSafe := full[0].Name, full[1].Name, readOnly[0].Name
	include := writeFile(t, dir, "include.txt", strings.Join([]string{deleted, okSafe, roSafe}, "\n")+"\n")

	// 1. Deleted after planning, before any worker ran.
	const run = "permanent-1"
	planner := start(t, "planner", s.env(), bin(t, "planner"), plannerArgs(s, ns.URL, "--run-id", run, "--watch=false", "--include", include)...)
	if code := planner.Wait(t, time.Minute); code != 0 {
		t.Fatalf("planner exit %d\n%s", code, planner.Stderr.String())
	}
	s.deleteSafe(t, deleted)
	w := startWorker(t, s, ns.URL, "worker")
	watchArgs := []string{"watch", run, "--nats-url", ns.URL, "--log-format", "json"}
	watcher := start(t, "planner watch", nil, bin(t, "planner"), watchArgs...)
	if code := watcher.Wait(t, 2*time.Minute); code != 1 {
		t.Errorf("planner watch exit %d, want 1\n%s", code, watcher.Stdout.String())
	}
	w.Stop(10 * time.Second)
	js := connect(t, ns.URL)
	out := waitRun(t, js, run, time.Minute)
	// Every listed Safe gets one result: the three named ones their
	// outcome, the others "skipped" (not in the include list).
	perSafe, total := rawResults(t, js, run)
	if total != out.Run.Expected() || duplicates(perSafe) != 0 || out.Run.Published != 3 {
		t.Errorf("%d results for %d expected, %d published (want 3), %d duplicates", total, out.Run.Expected(), out.Run.Published, duplicates(perSafe))
	}
	want := map[string]struct {
		status jobs.Status
		code   string
	}{
		deleted: {jobs.StatusFailed, "SFWS0007"},
		roSafe:  {jobs.StatusFailed, "CAWS00001E"},
		okSafe:  {jobs.StatusApplied, ""},
	}
	for name, w := range want {
		r, ok := out.Byname[name]
		switch {
		case !ok:
			t.Errorf("no result for %q", name)
		case r.Status != w.status || r.ErrorCode != w.code || r.Attempts != 1:
			t.Errorf("%q: %s %q after %d deliveries (%s), want %s %q after 1", name, r.Status, r.ErrorCode, r.Attempts, r.Error, w.status, w.code)
		default:
			logFigure(t, "permanent faults: %q -> %s %s after %d delivery: %s", name, r.Status, r.ErrorCode, r.Attempts, r.Error)
		}
	}

	// 2. A member the vault's directory does not know, on the embedded
	// default (in-process workers), with a report.
	include2 := writeFile(t, dir, "include2.txt", full[2].Name+"\n"+okSafe+"\n")
	report := filepath.Join(dir, "nosuch.jsonl")
	before := s.stats(t)
	args := append([]string{"run"}, s.pvwaArgs()...)
	args = append(args, "--data-dir", filepath.Join(dir, "embedded"), "--include", include2, "--member", "NoSuchGroup",
		"--report", report, "--log-format", "json", "--run-id", "nosuch-1")
	p := start(t, "planner run --member NoSuchGroup", s.env(), bin(t, "planner"), args...)
	if code := p.Wait(t, 2*time.Minute); code != 1 {
		t.Errorf("planner run --member NoSuchGroup exit %d, want 1\n%s\n%s", code, p.Stdout.String(), p.Stderr.String())
	}
	var rows []map[string]any
	for _, row := range readReport(t, report) {
		if row["status"] != "skipped" {
			rows = append(rows, row)
		}
	}
	if len(rows) != 2 {
		t.Errorf("report has %d rows not skipped, want 2: %v", len(rows), rows)
	}
	for _, row := range rows {
		if row["status"] != "failed" || row["errorCode"] == "" || row["errorCode"] == nil {
			t.Errorf("NoSuchGroup on %v: %v, want failed with an ErrorCode", row["safe"], row)
			continue
		}
		logFigure(t, "permanent faults: member NoSuchGroup on %q -> %v %v after %v delivery: %v", row["safe"], row["status"], row["errorCode"], row["attempts"], row["error"])
	}
	after := s.stats(t)
	posts := after.Count(pamtest.RouteAddMember, 404) - before.Count(pamtest.RouteAddMember, 404)
	if posts != 2 {
		t.Errorf("%d POST member answered 404, want 2 (one per Safe, never retried)", posts)
	}
	if after.MemberWrites.Total != 1 {
		t.Errorf("memberWrites.total = %d, want 1 (only %q)", after.MemberWrites.Total, okSafe)
	}
}

// readReport reads a JSON Lines report.
func readReport(t testing.TB, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var row map[string]any
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatalf("report line %q: %v", sc.Text(), err)
		}
		rows = append(rows, row)
	}
	return rows
}
