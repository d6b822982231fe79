package reliability

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
)

// TestWorkerCrashes runs a whole-vault migration with three worker processes
// that are SIGKILLed and restarted every two seconds, one at a time, until
// the run completes. Nothing may be lost (every Safe gets its result, once),
// nothing may be done twice (at most one member write per Safe) and every
// in-scope Safe must end compliant with all its other flags and members as
// seeded. Fast: 2,000 Safes; SAFEPERM_SOAK=1: 10,000.
func TestWorkerCrashes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes and kills them for tens of seconds")
	}
	t.Parallel()
	safes, rate, latency := 1500, "50", 5*time.Millisecond
	if soak() {
		safes, rate, latency = 10_000, "60", 5*time.Millisecond
	}
	dir := t.TempDir()
	s := startSim(t, simOptions{Safes: safes, Seed: 61, Latency: latency, Jitter: 5 * time.Millisecond})
	ns := startNATS(t, dir, "")
	const run = "crash-1"

	planner := start(t, "planner", s.env(), bin(t, "planner"), plannerArgs(s, ns.URL, "--run-id", run, "--watch=false", "--rate", "0")...)
	if code := planner.Wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("planner exit %d\n%s\n%s", code, planner.Stdout.String(), planner.Stderr.String())
	}
	js := connect(t, ns.URL)
	setAckWait(t, js, 1, 5*time.Second)

	began := time.Now()
	workers := make([]*proc, 3)
	var mu sync.Mutex
	for i := range workers {
		workers[i] = startWorker(t, s, ns.URL, fmt.Sprintf("worker-%d", i+1), "--rate", rate, "--concurrency", "4")
	}
	// The killer: every ~2 s one worker (round robin) gets SIGKILL and a
	// successor starts at once.
	stopKilling := make(chan struct{})
	killed := make(chan int)
	go func() {
		kills := 0
		defer func() { killed <- kills }()
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stopKilling:
				return
			case <-tick.C:
			}
			mu.Lock()
			w := workers[i%len(workers)]
			w.Kill()
			kills++
			workers[i%len(workers)] = startWorker(t, s, ns.URL, fmt.Sprintf("worker-%d.%d", i%len(workers)+1, i), "--rate", rate, "--concurrency", "4")
			mu.Unlock()
		}
	}()
	out := waitRun(t, js, run, map[bool]time.Duration{false: 4 * time.Minute, true: 20 * time.Minute}[soak()])
	close(stopKilling)
	kills := <-killed
	mu.Lock()
	for _, w := range workers {
		w.Stop(10 * time.Second)
	}
	mu.Unlock()

	v := verify(t, s, pamtest.PSMAppUsers, wantPerms, inScopeDefault)
	perSafe, total := rawResults(t, js, run)
	st := s.stats(t)
	checkRun(t, s, out, v, perSafe, total, st)

	logFigure(t, "worker crashes: %d Safes, %d SIGKILLs survived, run done in %s", safes, kills, time.Since(began).Round(time.Millisecond))
	logFigure(t, "worker crashes: converged %d, not converged %d, foreign flags changed %d, results %d for %d expected, jobs lost %d, duplicate results %d",
		v.Converged, v.NotConverged, v.ForeignChanged, total, out.Run.Expected(), out.Run.Expected()-len(perSafe), duplicates(perSafe))
	logFigure(t, "worker crashes: member writes %d (post %d, put %d) on %d changed Safes, Safes written twice %d; results %v",
		st.MemberWrites.Total, st.MemberWrites.Add, st.MemberWrites.Update, v.Changed, writtenTwice(st), out.Tally.Counts())
	// Write intents make a change whose worker died before reporting
	// still come out "applied", so the audit trail and rollback see it.
	n, names := misattributed(v, out.Byname)
	if n != 0 {
		t.Errorf("%d Safes changed by the run reported not applied: %v", n, names)
	}
	logFigure(t, "worker crashes: Safes changed by the run but reported not applied (write done, worker killed before its result): %d %v", n, names)
	if kills < 3 && !t.Failed() {
		t.Errorf("only %d kills happened during the run; the run was too short to prove anything", kills)
	}
}

// checkRun asserts what every whole-vault run must end with: the vault
// converged with nothing foreign changed, exactly one result per Safe, no
// failure but the read-only Safes' 403, and no Safe written twice.
func checkRun(t *testing.T, s *sim, out runOutcome, v verdict, perSafe map[string]int, total int, st pamtest.Stats) {
	t.Helper()
	for _, p := range v.Problems {
		t.Error(p)
	}
	if v.NotConverged != 0 || v.ForeignChanged != 0 {
		t.Errorf("%d Safes not converged, %d foreign changes", v.NotConverged, v.ForeignChanged)
	}
	if total != out.Run.Expected() || len(perSafe) != out.Run.Expected() {
		t.Errorf("%d result messages for %d Safes, want exactly one for each of %d", total, len(perSafe), out.Run.Expected())
	}
	if d := duplicates(perSafe); d != 0 {
		t.Errorf("%d Safes reported more than once", d)
	}
	// Every listed Safe has its result: the visible ones.
	visible := 0
	for i := range s.vault.Len() {
		in := s.vault.Info(i)
		if in.Access != pamtest.AccessHidden {
			visible++
			if _, ok := perSafe[jobs.SafeKey(in.Name)]; !ok && len(perSafe) > 0 {
				t.Errorf("Safe %q has no result (lost)", in.Name)
			}
		}
	}
	if out.Run.Expected() != visible {
		t.Errorf("run expects %d results, the vault shows %d Safes", out.Run.Expected(), visible)
	}
	for name, r := range out.Byname {
		info := s.vault.Info(mustLookup(t, s, name))
		switch {
		case r.Status == jobs.StatusFailed && info.Access == pamtest.AccessReadOnly && r.ErrorCode == "CAWS00001E":
		case r.Status == jobs.StatusFailed:
			t.Errorf("Safe %q (%s) failed: %s %s", name, info.Access, r.ErrorCode, r.Error)
		case r.Status == jobs.StatusConflict || r.Status == jobs.StatusDrift:
			t.Errorf("Safe %q: unexpected status %s", name, r.Status)
		}
	}
	if n := writtenTwice(st); n != 0 {
		t.Errorf("%d Safes written more than once: %v", n, st.WritesBySafe)
	}
	if st.MemberWrites.Total != int64(v.Changed) {
		t.Errorf("memberWrites.total = %d, want %d (one per changed Safe)", st.MemberWrites.Total, v.Changed)
	}
}

func writtenTwice(st pamtest.Stats) int {
	n := 0
	for _, c := range st.WritesBySafe {
		if c > 1 {
			n++
		}
	}
	return n
}

func mustLookup(t testing.TB, s *sim, name string) int {
	t.Helper()
	i, ok := s.vault.Lookup(name)
	if !ok {
		t.Fatalf("no Safe %q in the vault", name)
	}
	return i
}
