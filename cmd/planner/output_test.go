package main

import (
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/natsembed/natstest"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
	"github.com/safeperm/safeperm/internal/proctest"
)

// passwordEnv gives the planner and the worker the simulator's password.
var passwordEnv = []string{"SAFEPERM_PASSWORD=" + pamtest.DefaultAdminPassword}

// TestJSONOutputOfTheBinaries runs the built planner against the built
// simulator with --json and checks the contract: stdout carries only JSON
// objects, one per line (start, planned, progress, and a final summary with
// the counts, the failures by cause and the next commands), stderr only
// JSON log records without a repeated key; the same for watch --json,
// status --json and report --json of the run; and --version everywhere.
func TestJSONOutputOfTheBinaries(t *testing.T) {
	planner := binary(t, "planner")
	simURL, sim := startSim(t, "--safes", "300", "--seed", "61", "--log-format", "json")
	data := filepath.Join(t.TempDir(), "data")

	run := startProc(t, "planner run", passwordEnv, planner, "run", "--json", "--pvwa-url", simURL, "--user", pamtest.DefaultAdminUser,
		"--data-dir", data, "--run-id", "json-1", "--rate", "0", "--workers", "2", "--concurrency", "4")
	code := run.Wait(t, 3*time.Minute)
	if code != 0 && code != 1 {
		t.Fatalf("planner run --json exit %d, want 0 or 1", code)
	}
	out := jsonLines(t, "planner run --json stdout", run.Stdout.String())
	logRecords(t, "planner run --json", run.Stderr.String())
	if len(out) < 3 {
		t.Fatalf("planner run --json wrote %d objects, want start, planned and a summary at least", len(out))
	}
	var types []string
	for _, o := range out {
		types = append(types, fmt.Sprint(o["type"]))
	}
	if !regexp.MustCompile(`^start planned( progress)* summary$`).MatchString(strings.Join(types, " ")) {
		t.Errorf("object types %v, want start, planned, progress..., summary", types)
	}
	sum := out[len(out)-1]
	checkSummary(t, "planner run", sum, code)
	next := sum["next"].(map[string]any)
	for k, want := range map[string]string{
		"watch":    "planner watch json-1 --data-dir " + data,
		"report":   "planner report json-1 --format csv --data-dir " + data,
		"rollback": "planner rollback json-1 --pvwa-url " + simURL + " --user " + pamtest.DefaultAdminUser + " --data-dir " + data,
	} {
		if next[k] != want {
			t.Errorf("next.%s = %v, want %q", k, next[k], want)
		}
	}

	// watch --json of the finished run: the same end.
	w := startProc(t, "planner watch", nil, planner, "watch", "json-1", "--json", "--data-dir", data)
	if wcode := w.Wait(t, time.Minute); wcode != code {
		t.Errorf("planner watch --json exit %d, planner run %d", wcode, code)
	}
	wout := jsonLines(t, "planner watch --json stdout", w.Stdout.String())
	logRecords(t, "planner watch --json", w.Stderr.String())
	if len(wout) == 0 {
		t.Fatal("planner watch --json wrote nothing")
	}
	for _, o := range wout[:len(wout)-1] {
		if o["type"] != "progress" {
			t.Errorf("planner watch --json: %v before the summary", o["type"])
		}
	}
	wsum := wout[len(wout)-1]
	checkSummary(t, "planner watch", wsum, code)
	if fmt.Sprint(wsum["counts"]) != fmt.Sprint(sum["counts"]) || fmt.Sprint(wsum["failures"]) != fmt.Sprint(sum["failures"]) {
		t.Errorf("planner watch sees %v %v, planner run saw %v %v", wsum["counts"], wsum["failures"], sum["counts"], sum["failures"])
	}

	// status --json: JSON Lines, one per run, with the causes.
	st := startProc(t, "planner status", nil, planner, "status", "--json", "--data-dir", data)
	if scode := st.Wait(t, time.Minute); scode != 0 {
		t.Errorf("planner status --json exit %d", scode)
	}
	logRecords(t, "planner status --json", st.Stderr.String())
	runs := jsonLines(t, "planner status --json stdout", st.Stdout.String())
	if len(runs) != 1 || runs[0]["id"] != "json-1" || runs[0]["failed"] != sum["failed"] {
		t.Fatalf("planner status --json = %v, want run json-1 with %v failed", runs, sum["failed"])
	}
	if sum["failed"].(float64) > 0 && fmt.Sprint(runs[0]["failures"]) != fmt.Sprint(sum["failures"]) {
		t.Errorf("status failures %v, summary %v", runs[0]["failures"], sum["failures"])
	}

	// report --json: one object per Safe.
	rp := startProc(t, "planner report", nil, planner, "report", "json-1", "--json", "--data-dir", data)
	if rcode := rp.Wait(t, time.Minute); rcode != 0 {
		t.Errorf("planner report --json exit %d", rcode)
	}
	logRecords(t, "planner report --json", rp.Stderr.String())
	if rows := jsonLines(t, "planner report --json stdout", rp.Stdout.String()); float64(len(rows)) != sum["done"] {
		t.Errorf("report has %d rows, the run %v Safes", len(rows), sum["done"])
	}

	// A usage error with --json: nothing on stdout, a JSON record on stderr.
	bad := startProc(t, "planner run --mode bogus", passwordEnv, planner, "run", "--json", "--mode", "bogus", "--pvwa-url", simURL, "--user", "x", "--data-dir", data)
	if bcode := bad.Wait(t, time.Minute); bcode != 2 {
		t.Errorf("bad --mode: exit %d, want 2", bcode)
	}
	if s := bad.Stdout.String(); s != "" {
		t.Errorf("a usage error printed on stdout: %q", s)
	}
	if recs := logRecords(t, "planner run --mode bogus", bad.Stderr.String()); len(recs) != 1 || !strings.Contains(fmt.Sprint(recs[0]["error"]), "--mode") {
		t.Errorf("usage error records %v, want one naming --mode", recs)
	}

	// --version everywhere; planner version --json is one object.
	for _, c := range [][]string{{planner, "--version"}, {planner, "version"}, {binary(t, "worker"), "--version"}, {binary(t, "pvwasim"), "--version"}} {
		p := startProc(t, filepath.Base(c[0])+" "+c[1], nil, c[0], c[1:]...)
		if vcode := p.Wait(t, 30*time.Second); vcode != 0 {
			t.Errorf("%s %s: exit %d", c[0], c[1], vcode)
		}
		if got := p.Stdout.String(); !regexp.MustCompile(`^` + filepath.Base(c[0]) + ` \S+ .*go1\.\d+`).MatchString(got) {
			t.Errorf("%s %s printed %q", filepath.Base(c[0]), c[1], got)
		}
	}
	v := startProc(t, "planner version --json", nil, planner, "version", "--json")
	v.Wait(t, 30*time.Second)
	if vs := jsonLines(t, "planner version --json", v.Stdout.String()); len(vs) != 1 || vs[0]["program"] != "planner" || vs[0]["version"] == "" || vs[0]["go"] == "" {
		t.Errorf("planner version --json = %v", vs)
	}

	if scode := sim.Stop(30 * time.Second); scode != 0 {
		t.Errorf("pvwasim exit %d", scode)
	}
	logRecords(t, "pvwasim", sim.Stderr.String())
}

// checkSummary checks the final object of a --json command.
func checkSummary(t *testing.T, what string, sum map[string]any, code int) {
	t.Helper()
	if sum["type"] != "summary" || sum["final"] != true || sum["complete"] != true || sum["state"] != "done" {
		t.Errorf("%s: last object %v, want a complete final summary of a done run", what, sum)
	}
	if sum["exitCode"] != float64(code) {
		t.Errorf("%s: exitCode %v, process exit %d", what, sum["exitCode"], code)
	}
	n := 0.0
	for _, g := range sum["failures"].([]any) {
		g := g.(map[string]any)
		n += g["count"].(float64)
		if g["advice"] == "" || len(g["examples"].([]any)) == 0 {
			t.Errorf("%s: failure group without advice or examples: %v", what, g)
		}
	}
	if n != sum["failed"] {
		t.Errorf("%s: failure groups count %v Safes, failed %v", what, n, sum["failed"])
	}
}

// TestGroupedFailuresAcrossProcesses is the distributed case with two kinds
// of failure: the planner publishes through an external NATS server and
// exits (--watch=false); four Safes are deleted in the simulator; a worker
// started afterwards meets 404 SFWS0007 on them and 403 CAWS00001E on the
// Safes where the API user may only read; planner watch groups the failures
// by cause with counts, examples and advice. Every log line of the
// simulator, the planner, the worker and the watcher (debug level, JSON)
// must decode with no key twice.
func TestGroupedFailuresAcrossProcesses(t *testing.T) {
	planner := binary(t, "planner")
	const safes, seed = 400, 62
	simURL, sim := startSim(t, "--safes", fmt.Sprint(safes), "--seed", fmt.Sprint(seed), "--log-format", "json", "--log-level", "debug")
	vault, err := pamtest.NewVault(pamtest.Options{Safes: safes, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	nats := natstest.Start(t, "127.0.0.1:0")
	natsURL := nats.Server.ClientURL()

	p := startProc(t, "planner run", passwordEnv, planner, "run", "--nats-url", natsURL, "--watch=false", "--run-id", "two-kinds",
		"--pvwa-url", simURL, "--user", pamtest.DefaultAdminUser, "--rate", "0", "--log-format", "json", "--log-level", "debug")
	if code := p.Wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("planner run --watch=false exit %d", code)
	}
	if want := "planner watch two-kinds --nats-url " + natsURL + "\n"; !strings.HasSuffix(p.Stdout.String(), want) {
		t.Errorf("planner run --watch=false does not end with %q:\n%s", want, p.Stdout.String())
	}

	// What the simulator will answer, from the same seed.
	var deleted []string
	want403 := map[string]int{}
	for i := range vault.Len() {
		in := vault.Info(i)
		switch {
		case in.Internal || in.Access == pamtest.AccessHidden:
		case in.Access == pamtest.AccessFull && len(deleted) < 4:
			deleted = append(deleted, in.Name)
		case in.Access == pamtest.AccessReadOnly && !in.PSMMember:
			want403["POST member"]++
		case in.Access == pamtest.AccessReadOnly && in.PSMPermissions.Missing(wantPerms) != 0:
			want403["PUT member"]++
		}
	}
	if want403["PUT member"]+want403["POST member"] == 0 {
		t.Fatal("the vault has no read-only Safe to change: pick another seed")
	}
	admin := strings.TrimSuffix(simURL, "/PasswordVault") + "/_admin/safes/"
	for _, name := range deleted {
		req, _ := http.NewRequest(http.MethodDelete, admin+url.PathEscape(name), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("delete Safe %q: HTTP %d", name, resp.StatusCode)
		}
	}

	worker := startProc(t, "worker", passwordEnv, binary(t, "worker"), "--nats-url", natsURL, "--pvwa-url", simURL,
		"--user", pamtest.DefaultAdminUser, "--rate", "0", "--concurrency", "8", "--metrics-addr", "127.0.0.1:0",
		"--log-format", "json", "--log-level", "debug")
	w := startProc(t, "planner watch", nil, planner, "watch", "two-kinds", "--nats-url", natsURL, "--log-format", "json", "--log-level", "debug")
	if code := w.Wait(t, 3*time.Minute); code != 1 {
		t.Fatalf("planner watch exit %d, want 1 (failed Safes)", code)
	}
	summary := w.Stdout.String()
	t.Logf("planner watch two-kinds --nats-url %s:\n%s", natsURL, summary)

	wantLines := []string{
		fmt.Sprintf("failed or conflict: %d Safes, by cause:\n", len(deleted)+want403["PUT member"]+want403["POST member"]),
		"  SFWS0007 (HTTP 404, GET member) on 4 Safes, e.g. ",
		"    the Safe was deleted after it was listed, or the API user is no longer a member of it: nothing to do for a deleted Safe; otherwise add the API user back (View and Manage Safe Members) and run again\n",
		"    the API user may read but not change members on these Safes (it lacks Manage Safe Members): add it to them with View and Manage Safe Members, or list them in the exclude file\n",
		"  every Safe with its error: planner report two-kinds --format csv --nats-url " + natsURL + "\n",
		"  rollback:  planner rollback two-kinds --pvwa-url " + simURL + " --user " + pamtest.DefaultAdminUser + " --nats-url " + natsURL + "\n",
	}
	for op, n := range want403 {
		if n > 0 {
			wantLines = append(wantLines, fmt.Sprintf("  CAWS00001E (HTTP 403, %s) on %d Safe", op, n))
		}
	}
	for _, l := range wantLines {
		if !strings.Contains(summary, l) {
			t.Errorf("summary lacks %q", l)
		}
	}
	if strings.Contains(summary, "... and") {
		t.Errorf("summary lists Safes one by one:\n%s", summary)
	}

	// The same groups in the JSON summary.
	wj := startProc(t, "planner watch --json", nil, planner, "watch", "two-kinds", "--json", "--nats-url", natsURL)
	if code := wj.Wait(t, time.Minute); code != 1 {
		t.Errorf("planner watch --json exit %d, want 1", code)
	}
	objs := jsonLines(t, "planner watch --json stdout", wj.Stdout.String())
	logRecords(t, "planner watch --json", wj.Stderr.String())
	if len(objs) == 0 {
		t.Fatal("planner watch --json wrote nothing")
	}
	got := map[string]float64{}
	for _, g := range objs[len(objs)-1]["failures"].([]any) {
		g := g.(map[string]any)
		got[fmt.Sprintf("%v %v %v", g["errorCode"], g["http"], g["op"])] = g["count"].(float64)
		if g["errorCode"] == "SFWS0007" {
			for _, ex := range g["examples"].([]any) {
				if !slices.Contains(deleted, ex.(string)) {
					t.Errorf("SFWS0007 example %q is not a deleted Safe (%q)", ex, deleted)
				}
			}
		}
	}
	wantJSON := map[string]float64{"SFWS0007 404 GET member": 4}
	for op, n := range want403 {
		if n > 0 {
			wantJSON["CAWS00001E 403 "+op] = float64(n)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(wantJSON) {
		t.Errorf("JSON failure groups %v, want %v", got, wantJSON)
	}

	if code := worker.Stop(time.Minute); code != 0 {
		t.Errorf("worker exit %d after SIGTERM", code)
	}
	if code := sim.Stop(30 * time.Second); code != 0 {
		t.Errorf("pvwasim exit %d", code)
	}
	for _, pr := range []*proctest.Proc{sim, p, worker, w} {
		recs := logRecords(t, pr.Name, pr.Stderr.String())
		if len(recs) == 0 {
			t.Errorf("%s logged nothing at debug level", pr.Name)
		}
	}
	// The worker names itself once per line, in every line.
	for i, r := range logRecords(t, "worker", worker.Stderr.String()) {
		if _, ok := r["worker"]; !ok {
			t.Errorf("worker log record %d has no worker field: %v", i+1, r)
		}
	}
}
