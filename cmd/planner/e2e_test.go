package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/safeperm/safeperm/internal/cliconf"
	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/natsembed"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
)

var wantPerms = pam.Perms(pam.ListAccounts, pam.UnlockAccounts)

// sim starts a simulator for one test.
func sim(t *testing.T, opts pamtest.Options) *pamtest.Server {
	t.Helper()
	srv, err := pamtest.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// plannerRun runs `planner <args>` in-process against srv with the
// embedded default storing under dataDir, and returns its exit code and
// output.
func plannerRun(t *testing.T, srv *pamtest.Server, dataDir string, args ...string) (int, string, string) {
	t.Helper()
	env := map[string]string{"SAFEPERM_PASSWORD": pamtest.DefaultAdminPassword}
	getenv := func(k string) string { return env[k] }
	full := append([]string{args[0], "--pvwa-url", srv.URL, "--user", pamtest.DefaultAdminUser,
		"--data-dir", dataDir, "--workers", "4", "--concurrency", "16", "--rate", "0", "--log-level", "error"}, args[1:]...)
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := run(ctx, full, getenv, &stdout, &stderr)
	return cliconf.ExitCode(err), stdout.String() + errText(err), stderr.String()
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return "error: " + err.Error()
}

// readJSONL reads a JSON Lines report into rows keyed by Safe name.
func readJSONL(t *testing.T, path string) map[string]map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string]any{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var row map[string]any
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatal(err)
		}
		name, _ := row["safe"].(string)
		if _, dup := out[name]; dup {
			t.Errorf("Safe %q reported twice", name)
		}
		out[name] = row
	}
	return out
}

func sameMembers(a, b []pamtest.MemberState) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Permissions != b[i].Permissions ||
			(a[i].Expiration == nil) != (b[i].Expiration == nil) ||
			(a[i].Expiration != nil && *a[i].Expiration != *b[i].Expiration) {
			return false
		}
	}
	return true
}

func without(ms []pamtest.MemberState, name string) []pamtest.MemberState {
	var out []pamtest.MemberState
	for _, m := range ms {
		if m.Name != name {
			out = append(out, m)
		}
	}
	return out
}

// TestRunEndToEnd migrates a 2,000-Safe vault with 50 ms of latency per
// request through the embedded NATS server and in-process workers, then
// checks every Safe in the simulator, the PVWA calls per Safe and the
// report, and that a re-run writes nothing.
func TestRunEndToEnd(t *testing.T) {
	srv := sim(t, pamtest.Options{Safes: 2000, Seed: 42, Faults: pamtest.Faults{Latency: 50 * time.Millisecond}})
	dir := t.TempDir()
	excluded := []string{}
	v := srv.Vault()
	for i := range v.Len() {
		in := v.Info(i)
		if !in.Internal && in.Access == pamtest.AccessFull && in.Class != pamtest.ClassCompliant && len(excluded) < 3 {
			excluded = append(excluded, in.Name)
		}
	}
	exFile := filepath.Join(dir, "exclude.txt")
	// BOM, CRLF, a comment, blanks and another case.
	body := "\ufeff# do not touch\r\n  " + strings.ToUpper(excluded[0]) + "  \r\n\r\n" + excluded[1] + "\r\n" + excluded[2] + "\n"
	if err := os.WriteFile(exFile, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	rep := filepath.Join(dir, "run1.jsonl")
	start := time.Now()
	code, out, errOut := plannerRun(t, srv, filepath.Join(dir, "data"), "run", "--run-id", "e2e-1", "--exclude", exFile, "--report", rep)
	took := time.Since(start)
	if code != cliconf.ExitFailed {
		t.Fatalf("exit %d, want 1 (read-only Safes fail)\n%s\n%s", code, out, errOut)
	}
	rows := readJSONL(t, rep)
	st := srv.Stats()

	isExcluded := map[string]bool{}
	for _, n := range excluded {
		isExcluded[n] = true
	}
	var jobsN, changed, compliant, failed int
	for i := range v.Len() {
		in := v.Info(i)
		if in.Access == pamtest.AccessHidden {
			if _, ok := rows[in.Name]; ok {
				t.Errorf("hidden Safe %s reported", in.Name)
			}
			continue
		}
		row, ok := rows[in.Name]
		if !ok {
			t.Errorf("Safe %s missing from the report", in.Name)
			continue
		}
		now := srv.SafeStateAt(i)
		seeded := v.Members(i)
		status := row["status"]
		switch {
		case in.Internal || isExcluded[in.Name]:
			if status != "skipped" || now.Changed {
				t.Errorf("%s: %v, changed %v; want skipped and untouched", in.Name, status, now.Changed)
			}
			continue
		}
		jobsN++
		switch {
		case in.PSMPermissions.Missing(wantPerms) == 0 && in.PSMMember:
			compliant++
			if status != "unchanged" || now.Changed {
				t.Errorf("%s: %v, changed %v; want unchanged", in.Name, status, now.Changed)
			}
		case in.Access == pamtest.AccessReadOnly:
			failed++
			if status != "failed" || row["errorCode"] != "CAWS00001E" || now.Changed {
				t.Errorf("%s: %v %v; want failed CAWS00001E", in.Name, status, row["errorCode"])
			}
		default:
			changed++
			if status != "applied" {
				t.Errorf("%s: %v; want applied", in.Name, status)
			}
			m, ok := now.Member(pamtest.PSMAppUsers)
			if !ok || m.Permissions != in.PSMPermissions|wantPerms {
				t.Errorf("%s: PSMAppUsers %v, want %s", in.Name, m.Permissions, in.PSMPermissions|wantPerms)
			}
			if in.PSMExpiration != 0 && (m.Expiration == nil || *m.Expiration != in.PSMExpiration) {
				t.Errorf("%s: expiration %v, want %d", in.Name, m.Expiration, in.PSMExpiration)
			}
			if !sameMembers(without(seeded, pamtest.PSMAppUsers), without(now.Members, pamtest.PSMAppUsers)) {
				t.Errorf("%s: another member changed", in.Name)
			}
		}
	}
	gets := st.Count(pamtest.RouteMember, 200) + st.Count(pamtest.RouteMember, 404)
	writes := st.MemberWrites.Total
	if int(gets) != jobsN {
		t.Errorf("member GETs %d, want one per job (%d)", gets, jobsN)
	}
	if int(writes) != changed {
		t.Errorf("member writes %d, want one per changed Safe (%d)", writes, changed)
	}
	// Calls per Safe: compliant Safes cost their one GET; changed Safes a
	// GET and a write.
	perChanged := float64(int(gets)-compliant-failed+int(writes)) / float64(changed)
	perCompliant := float64(int(gets)-changed-failed) / float64(compliant)
	t.Logf("2,000 Safes, 50 ms latency: %d jobs in %s; compliant %d at %.2f calls/Safe, changed %d at %.2f calls/Safe, read-only %d failed; total PVWA requests %d",
		jobsN, took.Round(time.Millisecond), compliant, perCompliant, changed, perChanged, failed, st.RequestsTotal)
	if perChanged != 2 || perCompliant != 1 {
		t.Errorf("calls per Safe: changed %.2f compliant %.2f, want 2 and 1", perChanged, perCompliant)
	}

	// A re-run on the converged vault writes nothing.
	srv.ResetStats()
	code, out, _ = plannerRun(t, srv, filepath.Join(dir, "data"), "run", "--exclude", exFile)
	if code != cliconf.ExitFailed {
		t.Fatalf("re-run exit %d\n%s", code, out)
	}
	if w := srv.Stats().MemberWrites.Total; w != 0 {
		t.Fatalf("re-run wrote %d times", w)
	}
	if !strings.Contains(out, "applied 0") {
		t.Errorf("re-run summary: %s", out)
	}
}

// TestRunDrift: Safes changed by hand are reported by --mode check (exit
// 3, exactly them), and --mode apply writes exactly those Safes.
func TestRunDrift(t *testing.T) {
	srv := sim(t, pamtest.Options{Safes: 400, Seed: 43})
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	// Converge first, with a vault where the API user may write everywhere.
	if code, out, _ := plannerRun(t, srv, data, "run"); code != cliconf.ExitFailed && code != cliconf.ExitOK {
		t.Fatalf("exit %d\n%s", code, out)
	}
	v := srv.Vault()
	var drifted []string
	for i := range v.Len() {
		in := v.Info(i)
		if !in.Internal && in.Access == pamtest.AccessFull && len(drifted) < 4 {
			drifted = append(drifted, in.Name)
		}
	}
	for i, n := range drifted {
		var err error
		if i%2 == 0 {
			err = srv.SetMember(n, pamtest.MemberState{Name: pamtest.PSMAppUsers, Permissions: pam.Perms(pam.ListAccounts, pam.UseAccounts)})
		} else {
			err = srv.RemoveMember(n, pamtest.PSMAppUsers)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// Safes the API user may only read could not be converged: they drift
	// too, and apply fails on them again.
	wantDrift := append([]string(nil), drifted...)
	for i := range v.Len() {
		in := v.Info(i)
		if !in.Internal && in.Access == pamtest.AccessReadOnly && (!in.PSMMember || in.PSMPermissions.Missing(wantPerms) != 0) {
			wantDrift = append(wantDrift, in.Name)
		}
	}
	sort.Strings(drifted)
	sort.Strings(wantDrift)
	srv.ResetStats()
	rep := filepath.Join(dir, "check.jsonl")
	code, out, _ := plannerRun(t, srv, data, "run", "--mode", "check", "--report", rep, "--run-id", "drift-check")
	if code != cliconf.ExitDrift {
		t.Fatalf("check exit %d, want 3\n%s", code, out)
	}
	if w := srv.Stats().MemberWrites.Total; w != 0 {
		t.Fatalf("check mode wrote %d times", w)
	}
	var got []string
	for name, row := range readJSONL(t, rep) {
		if row["status"] == "drift" {
			got = append(got, name)
		}
	}
	sort.Strings(got)
	if strings.Join(got, "|") != strings.Join(wantDrift, "|") {
		t.Fatalf("drift %v, want %v", got, wantDrift)
	}
	for _, n := range drifted {
		if !strings.Contains(out, n) {
			t.Errorf("summary does not name drifting Safe %s:\n%s", n, out)
		}
	}

	// The run record in KV carries the final counts for any NATS reader.
	rec := readRun(t, data, "drift-check")
	if rec.Done != rec.Expected() || rec.Counts[jobs.StatusDrift] != len(wantDrift) || rec.State != jobs.RunDone {
		t.Errorf("run record: done %d of %d, counts %v, state %s", rec.Done, rec.Expected(), rec.Counts, rec.State)
	}

	srv.ResetStats()
	plannerRun(t, srv, data, "run", "--mode", "apply")
	ws := srv.Stats().WritesBySafe
	var wrote []string
	for n := range ws {
		wrote = append(wrote, n)
	}
	sort.Strings(wrote)
	if strings.Join(wrote, "|") != strings.Join(drifted, "|") {
		t.Fatalf("apply wrote %v, want exactly %v", wrote, drifted)
	}
}

// TestRollback: after a run, one of its Safes is changed by hand; rollback
// restores every other Safe to its state before the run and reports that
// one as conflict.
func TestRollback(t *testing.T) {
	srv := sim(t, pamtest.Options{Safes: 300, Seed: 44})
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	v := srv.Vault()
	before := make([]pamtest.SafeState, v.Len())
	for i := range v.Len() {
		before[i] = srv.SafeStateAt(i)
	}
	plannerRun(t, srv, data, "run", "--run-id", "to-undo")

	var touched string
	for i := range v.Len() {
		in := v.Info(i)
		if !in.Internal && in.Access == pamtest.AccessFull && in.Class == pamtest.ClassListOnly {
			touched = in.Name
			break
		}
	}
	if err := srv.SetMember(touched, pamtest.MemberState{Name: pamtest.PSMAppUsers, Permissions: pam.Perms(pam.ListAccounts, pam.UnlockAccounts, pam.ViewAuditLog)}); err != nil {
		t.Fatal(err)
	}
	handState, _ := srv.SafeState(touched)

	rep := filepath.Join(dir, "rollback.jsonl")
	code, out, _ := plannerRun(t, srv, data, "rollback", "to-undo", "--run-id", "undo-1", "--report", rep)
	if code != cliconf.ExitFailed {
		t.Fatalf("rollback exit %d, want 1 (one conflict)\n%s", code, out)
	}
	rows := readJSONL(t, rep)
	if rows[touched]["status"] != "conflict" {
		t.Errorf("%s: %v, want conflict", touched, rows[touched]["status"])
	}
	conflicts := 0
	for _, r := range rows {
		if r["status"] == "conflict" {
			conflicts++
		}
	}
	if conflicts != 1 {
		t.Errorf("conflicts %d, want 1", conflicts)
	}
	for i := range v.Len() {
		now := srv.SafeStateAt(i)
		if now.Name == touched {
			if !sameMembers(now.Members, handState.Members) {
				t.Errorf("conflicting Safe %s was changed by the rollback", touched)
			}
			continue
		}
		if !sameMembers(now.Members, before[i].Members) {
			t.Errorf("Safe %s differs from before the run", now.Name)
		}
	}
	// The rollback run is itself a run: its record names the run it undid.
	if !strings.Contains(out, "rollback of run to-undo") {
		t.Errorf("output: %s", out)
	}
}

// readRun opens the embedded server's data directory and reads a run
// record.
func readRun(t *testing.T, dataDir, id string) jobs.Run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ns, err := natsembed.Start(ctx, natsembed.Options{StoreDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	nc, err := ns.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	runs, err := jobs.OpenRuns(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	rec, _, err := runs.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}
