package reliability

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
	"github.com/safeperm/safeperm/internal/testutil"
)

// TestNATSNodeLoss runs a migration on a 3-node JetStream cluster of real
// nats-server processes with every stream replicated 3 ways, SIGKILLs the
// node leading the jobs stream while workers are busy, then the node leading
// the results stream, restarting each after a few seconds. The run must
// complete with every Safe converged and reported exactly once.
//
// It also starts a check-mode planner the moment the cluster accepts
// connections, to see whether jobs.Setup survives a forming cluster
// (err_code 10005 "no suitable peers for placement").
func TestNATSNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster and kills nodes")
	}
	t.Parallel()
	safes := 1500
	if soak() {
		safes = 10_000
	}
	dir := t.TempDir()
	s := startSim(t, simOptions{Safes: safes, Seed: 62, Latency: 5 * time.Millisecond, Jitter: 5 * time.Millisecond})
	nodes := startCluster(t, dir)
	url := urls(nodes)

	// A planner started as soon as the servers listen, as a deploy script
	// would. Check mode writes nothing, whatever happens.
	include := writeFile(t, dir, "one.txt", s.find(1, inScopeDefault)[0].Name+"\n")
	early := start(t, "planner-early", s.env(), bin(t, "planner"), plannerArgs(s, url, "--run-id", "early", "--watch=false",
		"--nats-replicas", "3", "--mode", "check", "--include", include)...)
	earlyCode := early.Wait(t, 2*time.Minute)
	if earlyCode != 0 {
		logFigure(t, "node loss: a planner started on a forming cluster exited %d: %s", earlyCode, firstLine(grepLine(early.Stderr.String(), "planner:")))
	} else {
		logFigure(t, "node loss: a planner started on a forming cluster succeeded")
	}

	js := connect(t, url)
	waitClusterReady(t, js)

	const run = "node-loss-1"
	planner := start(t, "planner", s.env(), bin(t, "planner"), plannerArgs(s, url, "--run-id", run, "--watch=false", "--rate", "0", "--nats-replicas", "3")...)
	if code := planner.Wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("planner exit %d\n%s\n%s", code, planner.Stdout.String(), planner.Stderr.String())
	}
	setAckWait(t, js, 3, 5*time.Second)
	// Workers get --nats-replicas 3 too: they create the rate budget's
	// bucket, and an R1 bucket on the lost node stalls every worker.
	began := time.Now()
	var workers []*proc
	for i := range 3 {
		workers = append(workers, startWorker(t, s, url, fmt.Sprintf("worker-%d", i+1), "--rate", "50", "--concurrency", "4", "--nats-replicas", "3"))
	}

	expected := safes - len(s.find(safes, func(in pamtest.SafeInfo) bool { return in.Access == pamtest.AccessHidden }))
	// Two kills, one node at a time: the leader of the jobs stream at 25%,
	// then at 60% the node hosting a stream that is not replicated, if
	// there is one (losing it must not stop the run either), else the
	// leader of the results stream.
	var kills []string
	for i, at := range []float64{0.25, 0.6} {
		waitResults(t, js, run, int(at*float64(expected)))
		why := "leader of " + jobs.JobsStream
		leader := streamLeader(t, js, jobs.JobsStream)
		if i == 1 {
			why, leader = "leader of "+jobs.ResultsStream, streamLeader(t, js, jobs.ResultsStream)
			if name, host := unreplicated(js); name != "" {
				why, leader = "host of the unreplicated "+name, host
			}
		}
		var victim *natsNode
		for _, n := range nodes {
			if n.name == leader {
				victim = n
			}
		}
		if victim == nil {
			t.Fatalf("no node named %q (%s)", leader, why)
		}
		victim.Kill()
		kills = append(kills, fmt.Sprintf("%s (%s)", victim.Name, why))
		before := countResults(t, js, run)
		// Work goes on without it: results keep coming on two nodes.
		stalled := time.Now().Add(45 * time.Second)
		for {
			n := countResults(t, js, run)
			if n >= before+50 || n >= expected {
				break
			}
			if time.Now().After(stalled) {
				t.Errorf("with %s (%s) down, results stalled at %d for 45s: %s", victim.Name, why, n, describeStreams(js))
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		victim.launch()
	}

	out := waitRun(t, js, run, map[bool]time.Duration{false: 4 * time.Minute, true: 20 * time.Minute}[soak()])
	for _, w := range workers {
		w.Stop(10 * time.Second)
	}
	v := verify(t, s, pamtest.PSMAppUsers, wantPerms, inScopeDefault)
	perSafe, total := rawResults(t, js, run)
	st := s.stats(t)
	checkRun(t, s, out, v, perSafe, total, st)

	// The restarted nodes catch up: every replica of every stream current.
	testutil.Eventually(t, time.Minute, 250*time.Millisecond, func() error {
		for _, name := range []string{jobs.JobsStream, jobs.ResultsStream, jobs.DLQStream} {
			info := streamInfo(t, js, name)
			if info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
				return fmt.Errorf("%s: cluster info %+v", name, info.Cluster)
			}
			for _, r := range info.Cluster.Replicas {
				if !r.Current || r.Offline {
					return fmt.Errorf("%s: replica %s not current", name, r.Name)
				}
			}
		}
		return nil
	})
	jobsLeft := streamInfo(t, js, jobs.JobsStream).State.Msgs
	if jobsLeft != 0 {
		t.Errorf("%d jobs left in %s after the run", jobsLeft, jobs.JobsStream)
	}
	n, names := misattributed(v, out.Byname)
	if n != 0 {
		t.Errorf("%d Safes changed by the run reported not applied: %v", n, names)
	}
	logFigure(t, "node loss: %d Safes on 3 nodes (R3), nodes SIGKILLed and restarted: %s; run done in %s", safes, strings.Join(kills, ", "), time.Since(began).Round(time.Millisecond))
	logFigure(t, "node loss: converged %d, not converged %d, foreign flags changed %d, results %d for %d expected, jobs lost %d, duplicate results %d, jobs left %d",
		v.Converged, v.NotConverged, v.ForeignChanged, total, out.Run.Expected(), out.Run.Expected()-len(perSafe), duplicates(perSafe), jobsLeft)
	logFigure(t, "node loss: member writes %d on %d changed Safes, Safes written twice %d, reported not applied though changed %d %v; results %v",
		st.MemberWrites.Total, v.Changed, writtenTwice(st), n, names, out.Tally.Counts())
}

// unreplicated returns a stream of fewer than 3 replicas and the node
// hosting it, if there is one.
func unreplicated(js jetstream.JetStream) (name, host string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for n := range js.StreamNames(ctx).Name() {
		st, err := js.Stream(ctx, n)
		if err != nil {
			continue
		}
		if info := st.CachedInfo(); info.Config.Replicas < 3 && info.Cluster != nil && info.Cluster.Leader != "" {
			return n, info.Cluster.Leader
		}
	}
	return "", ""
}

// describeStreams says where each stream's leader and replicas are, for
// failure messages.
func describeStreams(js jetstream.JetStream) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var b strings.Builder
	for name := range js.StreamNames(ctx).Name() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v; ", name, err)
			continue
		}
		info, err := st.Info(ctx)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v; ", name, err)
			continue
		}
		fmt.Fprintf(&b, "%s R%d %s leader %q", name, info.Config.Replicas, info.Config.Storage, info.Cluster.Leader)
		for _, r := range info.Cluster.Replicas {
			fmt.Fprintf(&b, " %s(current %v offline %v)", r.Name, r.Current, r.Offline)
		}
		b.WriteString("; ")
	}
	return b.String()
}

// waitClusterReady waits until the cluster can place an R3 stream: a meta
// leader exists and every peer is known.
func waitClusterReady(t testing.TB, js jetstream.JetStream) {
	t.Helper()
	testutil.Eventually(t, time.Minute, 250*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if _, err := js.AccountInfo(ctx); err != nil {
			return err
		}
		if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "RELIABILITY_PROBE", Subjects: []string{"reliability.probe"},
			Replicas: 3, Storage: jetstream.MemoryStorage}); err != nil {
			return err
		}
		return js.DeleteStream(ctx, "RELIABILITY_PROBE")
	})
}

func streamInfo(t testing.TB, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	t.Helper()
	var info *jetstream.StreamInfo
	testutil.Eventually(t, 30*time.Second, 200*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, name)
		if err != nil {
			return err
		}
		info, err = st.Info(ctx)
		return err
	})
	return info
}

func streamLeader(t testing.TB, js jetstream.JetStream, name string) string {
	t.Helper()
	var leader string
	testutil.Eventually(t, 30*time.Second, 200*time.Millisecond, func() error {
		info := streamInfo(t, js, name)
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return errors.New("no leader")
		}
		leader = info.Cluster.Leader
		return nil
	})
	return leader
}

// countResults counts the result messages of run (per-subject totals of
// the results stream).
func countResults(t testing.TB, js jetstream.JetStream, run string) int {
	t.Helper()
	n := -1
	testutil.Eventually(t, 30*time.Second, 200*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, jobs.ResultsStream)
		if err != nil {
			return err
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(jobs.ResultsFilter(run)))
		if err != nil {
			return err
		}
		n = 0
		for _, c := range info.State.Subjects {
			n += int(c)
		}
		return nil
	})
	return n
}

// waitResults waits until run has at least n result messages.
func waitResults(t testing.TB, js jetstream.JetStream, run string, n int) {
	t.Helper()
	testutil.Eventually(t, 3*time.Minute, 200*time.Millisecond, func() error {
		if got := countResults(t, js, run); got < n {
			return fmt.Errorf("%d results of %d", got, n)
		}
		return nil
	})
}

func writeFile(t testing.TB, dir, name, body string) string {
	t.Helper()
	p := dir + "/" + name
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// grepLine returns the lines of s containing sub.
func grepLine(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
