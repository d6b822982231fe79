package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"iter"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
	"github.com/safeperm/safeperm/internal/policy"
	"github.com/safeperm/safeperm/internal/worker"
)

// Sizes of the simulated PVWA and vault of figures 1 to 3.
const (
	vaultSafes   = 3000
	vaultSeed    = 42
	capSlots     = 16                    // C: requests the PVWA serves at once (429 above)
	capLatency   = 20 * time.Millisecond // L: time per request
	benchWorkers = 4                     // in-process workers...
	benchConc    = 32                    // ...each with this many jobs at once: 128 >> C
)

// rec collects the figures of this run for BENCHMARKS.md.
var rec Recorder

// TestMain writes BENCHMARKS.md (to $SAFEPERM_BENCH_MARKDOWN) after the
// benchmarks ran, so that the table holds only figures measured together.
func TestMain(m *testing.M) {
	flag.Parse()
	start := time.Now()
	code := m.Run()
	if path := os.Getenv("SAFEPERM_BENCH_MARKDOWN"); path != "" && code == 0 {
		if err := writeMarkdown(path, time.Since(start)); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func writeMarkdown(path string, took time.Duration) error {
	figs := rec.Figures()
	for i, f := range figs {
		if f.Met != nil && !*f.Met {
			figs[i].Note = unmetNotes[f.ID]
		}
	}
	if len(figs) == 0 {
		return fmt.Errorf("no figures recorded: run with -bench .")
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := Render(f, ThisMachine(), time.Now(), took, figs, preamble); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

const preamble = `Every figure is a ratio (or a count) measured within one run of ` + "`make bench`" + `:
the denominators are measured or derived in the same run, never taken from an
earlier one. Figures 1-3 run the real pipeline in-process (embedded NATS with
file storage, planner.Start over the PVWA's Safe list, in-process workers
sharing one PVWA client behind throttle.Adaptive, rate unlimited, workers not
told the capacity) against pamtest with MaxInFlight C (429 above it) and
Latency L, so the PVWA's capacity is C/L calls/s. Figure 4 runs bin/planner
against bin/pvwasim, each its own process. Figure 5 replaces the PVWA with a
no-op that answers "compliant" at once.`

// unmetNotes explain, from the profiles taken while writing these
// benchmarks, what an unmet target costs and what would remove it.
var unmetNotes = map[string]string{
	"1a": `CPU profile (go test -bench BenchmarkThroughput -cpuprofile, simulator and pipeline in one
process): 2.94 s of CPU samples over 11.5 s of wall time on 2 cores, i.e. the process is busy about 13%
of the time; the top entries are syscalls (17%, HTTP and NATS I/O), JSON decoding (9%) and
allocation, with nothing that holds a PVWA slot for long. So the shortfall is not CPU: it is time in
which fewer than C requests are at the PVWA. Each slot is idle between the end of one answer and
the start of the next request on it (reading the answer, the result publish, the next job's
fetch), about 0.5-1 ms per 20 ms call, so C/L is an upper bound a client reaches at about 0.96;
and the limiter spends some of the run just below C: it probes C+1 every 256 successes
(ProbeAfter) and each failed probe costs a 429 and a round trip at C-1. Retrying a 429 without
Retry-After after 0-20 ms instead of the 250 ms backoff changed nothing measurable (0.93 before,
0.92-0.93 after). What would remove the rest: a ProbeAfter that grows while probes keep failing,
and keeping more than C jobs in flight in the worker than requests in flight at the PVWA (prefetch
the next job's GET while the previous answer is processed).`,
	"4a": `The planner is another team's code and was not changed here. Take a heap profile of
bin/planner at 1M Safes (runtime/pprof at the end of planning) to name what grows; note that
wait4's ru_maxrss overstates a vfork'ed child's peak (it counted the benchmark's own pages and
showed 96-203 MiB), which is why VmHWM is sampled from /proc instead.`,
	"4c": `See 4a: the peak is not flat in the number of Safes.`,
	"5": `CPU profile of this benchmark (go test -bench PipelineOverhead -cpuprofile; 100k jobs, about
10 s of CPU on 2 cores, i.e. about 100 µs per job): more than half is the embedded nats-server — its
file store writes three records per job (the job, the result, and the job's removal on ack:
stream.processJetStreamMsg 19%, consumer.processAck → fileStore.removeMsg 11%, pwrite syscalls 9%),
plus parsing 7%; the worker's handle is 27% (jobs.PublishResult's request-reply 13%, DecodeJob's
encoding/json 8%); allocation and GC about 15%. 50,000 jobs/s on 2 cores needs about 40 µs of CPU
per job in all, less than the server's file store alone spends (about 45 µs). Asynchronous result
publishing (ack each job when its result's PubAck arrives) would save the client's request-reply
overhead, not the server's writes; only memory storage for the jobs stream (no durability) or a
faster machine would reach the target.`,
}

// simOpts is the vault of figures 1 to 3 with the capacity faults.
func simOpts() pamtest.Options {
	return pamtest.Options{Safes: vaultSafes, Seed: vaultSeed,
		Faults: pamtest.Faults{MaxInFlight: capSlots, Latency: capLatency}}
}

// BenchmarkThroughput is figures 1 and 3: the pipeline against a PVWA of
// capacity C/L, the throttled fraction, the PVWA calls per Safe, then a
// re-run on the converged vault.
func BenchmarkThroughput(b *testing.B) {
	for range b.N {
		sim := newSim(b, simOpts())
		mix := mixOf(sim.Vault())
		out := runPipeline(b, sim, runSpec{Workers: benchWorkers, Concurrency: benchConc})
		st := sim.Stats()
		if out.planned != mix.jobs {
			b.Fatalf("planned %d jobs, the vault has %d Safes to work on", out.planned, mix.jobs)
		}
		capacity := float64(capSlots) / capLatency.Seconds() // calls/s
		idealSafes := capacity / mix.ideal
		ratioSteady := out.steadyRate() / idealSafes
		ratioWhole := out.rate() / idealSafes
		throttled := float64(out.counter.throttled.Load()) / float64(out.counter.total.Load())
		b.ReportMetric(ratioSteady, "ratio/throughput")
		b.ReportMetric(ratioWhole, "ratio/throughput-wall")
		b.ReportMetric(throttled, "fraction/throttled")
		detail := fmt.Sprintf("%d Safes (ideal %.3f calls/Safe), C=%d, L=%s: capacity %.0f calls/s = %.1f Safes/s",
			mix.jobs, mix.ideal, capSlots, capLatency, capacity, idealSafes)
		rec.Add(AtLeast("1a", "throughput ÷ capacity, steady state (10th-90th percentile of completions)", ratioSteady, 0.95, 3,
			fmt.Sprintf("%.1f Safes/s; %s", out.steadyRate(), detail)))
		rec.Add(Figure{ID: "1b", Name: "throughput ÷ capacity, whole run (planning start to last ack)",
			Measured: fmt.Sprintf("%.3f", ratioWhole),
			Detail: fmt.Sprintf("%.1f Safes/s over %s (ramp-up from the limiter's initial 8 and the tail included)",
				out.rate(), out.elapsed().Round(time.Millisecond))})
		rec.Add(AtMost("1c", "throttled fraction (429s ÷ member calls)", throttled, 0.01, 4,
			fmt.Sprintf("%d of %d calls; peak in flight at the PVWA %d; adaptive limit at the end %d; %d jobs handed back",
				out.counter.throttled.Load(), out.counter.total.Load(), st.PeakInFlight, out.limit, out.retried)))

		// Figure 3: calls per Safe, from the wire and the simulator's counters.
		compl, changed := mix.callsPerSafe(out.counter)
		gets := st.Count(pamtest.RouteMember, 200) + st.Count(pamtest.RouteMember, 404)
		b.ReportMetric(compl, "calls/safe-compliant")
		b.ReportMetric(changed, "calls/safe-changed")
		rec.Add(Near("3a", "PVWA calls per compliant Safe", compl, 1, 0.005, 2,
			fmt.Sprintf("%d compliant Safes; 429s not counted", mix.compliant)))
		rec.Add(Near("3b", "PVWA calls per changed Safe", changed, 2, 0.005, 2,
			fmt.Sprintf("%d changed Safes (%d writable, %d read-only: GET + PUT answered 403); 429s not counted",
				mix.changed, mix.writable, mix.changed-mix.writable)))
		rec.Add(Near("3c", "simulator: member GETs per Safe", float64(gets)/float64(mix.jobs), 1, 0.005, 2,
			fmt.Sprintf("Stats(): %d GET member (200+404) for %d jobs", gets, mix.jobs)))
		rec.Add(Near("3d", "simulator: member writes per writable changed Safe", float64(st.MemberWrites.Total)/float64(mix.writable), 1, 0, 2,
			fmt.Sprintf("Stats(): %d writes (%d PUT, %d POST), %d Safes written", st.MemberWrites.Total, st.MemberWrites.Update,
				st.MemberWrites.Add, st.SafesWritten)))

		// Re-run on the converged vault.
		sim.ResetStats()
		again := runPipeline(b, sim, runSpec{Workers: benchWorkers, Concurrency: benchConc})
		st2 := sim.Stats()
		b.ReportMetric(float64(st2.MemberWrites.Total), "writes/rerun")
		met := st2.MemberWrites.Total == 0
		rec.Add(Figure{ID: "3e", Name: "writes on a re-run of the converged vault", Measured: fmt.Sprint(st2.MemberWrites.Total),
			Target: "0", Met: &met, Detail: fmt.Sprintf("Stats(): %d member calls for %d jobs; statuses %v (read-only Safes fail again: their PUT gets 403 and changes nothing)",
				st2.Count(pamtest.RouteMember, 200)+st2.Count(pamtest.RouteMember, 404)+st2.Count(pamtest.RouteUpdateMember, 403)+st2.Count(pamtest.RouteAddMember, 403),
				again.planned, again.status)})
	}
}

// BenchmarkSpeedup is figure 2: the same pipeline and vault, concurrent
// versus one request at a time (1 worker, concurrency 1).
func BenchmarkSpeedup(b *testing.B) {
	for range b.N {
		par := runPipeline(b, newSim(b, simOpts()), runSpec{Workers: benchWorkers, Concurrency: benchConc})
		seq := runPipeline(b, newSim(b, simOpts()), runSpec{Workers: 1, Concurrency: 1})
		speedup := par.steadyRate() / seq.steadyRate()
		b.ReportMetric(speedup/capSlots, "ratio/speedup-per-C")
		b.ReportMetric(speedup, "speedup")
		rec.Add(AtLeast("2", "speedup over one request at a time ÷ C", speedup/capSlots, 0.9, 3,
			fmt.Sprintf("%.1f Safes/s concurrent vs %.2f Safes/s with 1 worker × concurrency 1 (steady state): speedup %.2f, C=%d",
				par.steadyRate(), seq.steadyRate(), speedup, capSlots)))
	}
}

// noopPVWA answers every read with a member that already complies: the
// pipeline's own cost, without a PVWA.
type noopPVWA struct{}

func (noopPVWA) Member(_ context.Context, safe, name string) (pam.Member, error) {
	return pam.Member{SafeURLID: safe, Name: name, Type: "Group", Permissions: wantPerms}, nil
}
func (noopPVWA) Members(context.Context, string, ...pam.MembersOptions) iter.Seq2[pam.Member, error] {
	return func(func(pam.Member, error) bool) {}
}
func (noopPVWA) AddMember(context.Context, string, pam.NewMember) (pam.Member, error) {
	return pam.Member{}, errors.New("noop PVWA: unexpected write")
}
func (noopPVWA) UpdateMember(context.Context, string, string, pam.MemberUpdate) (pam.Member, error) {
	return pam.Member{}, errors.New("noop PVWA: unexpected write")
}
func (noopPVWA) DeleteMember(context.Context, string, string) error {
	return errors.New("noop PVWA: unexpected write")
}

const (
	overheadJobs        = 100_000
	overheadWorkers     = 4
	overheadConcurrency = 64
)

// BenchmarkPipelineOverhead is figure 5: jobs per second through the
// embedded NATS server end to end with a no-op PVWA: publish N jobs,
// workers consume them, publish one result each and ack.
func BenchmarkPipelineOverhead(b *testing.B) {
	for range b.N {
		st := startStack(b, "", nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		obs := &finishObserver{}
		wctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for i := range overheadWorkers {
			w, err := worker.New(ctx, worker.Config{ID: fmt.Sprintf("bench/w%d", i+1), Concurrency: overheadConcurrency,
				Observer: obs}, noopPVWA{}, st.js, st.streams)
			if err != nil {
				b.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = w.Run(wctx)
			}()
		}
		run := jobs.NewRunID(time.Now())
		all := make([]jobs.Job, overheadJobs)
		for i := range all {
			name := fmt.Sprintf("Safe %07d", i)
			all[i] = jobs.Job{V: jobs.Version, Run: run, Mode: jobs.ModeApply, Safe: jobs.SafeRef{URLID: url.PathEscape(name), Name: name},
				Rules: []policy.Directive{{Rule: "psm-unlock", Member: member, Action: policy.ActionGrant, Permissions: wantPerms}}, Created: time.Now().UTC()}
		}
		start := time.Now()
		pub := jobs.NewPublisher(st.js, zerolog.Nop(), jobs.PublisherOptions{})
		for _, j := range all {
			if err := pub.PublishJob(ctx, j); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := pub.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		published := time.Since(start)
		for obs.count() < overheadJobs {
			if ctx.Err() != nil {
				b.Fatalf("only %d of %d jobs finished", obs.count(), overheadJobs)
			}
			time.Sleep(2 * time.Millisecond)
		}
		// Every job acked: acks are sent without waiting, so poll until
		// the work queue is empty.
		var jinfo *jetstream.StreamInfo
		for {
			var err error
			if jinfo, err = st.streams.Jobs.Info(ctx); err != nil {
				b.Fatal(err)
			}
			if jinfo.State.Msgs == 0 || ctx.Err() != nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
		took := time.Since(start)
		rinfo, err := st.streams.Results.Info(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if jinfo.State.Msgs != 0 || rinfo.State.Msgs != overheadJobs {
			b.Fatalf("after the run: %d jobs left, %d results; want 0 and %d", jinfo.State.Msgs, rinfo.State.Msgs, overheadJobs)
		}
		stop()
		wg.Wait()
		cancel()
		rate := float64(overheadJobs) / took.Seconds()
		b.ReportMetric(rate, "jobs/s")
		b.ReportMetric(rate/50_000, "ratio/overhead-target")
		rec.Add(AtLeast("5", "pipeline jobs/s with a no-op PVWA (publish, consume, result, ack)", rate, 50_000, 0,
			fmt.Sprintf("%d jobs in %s end to end (publishing alone %s); %d workers × concurrency %d; embedded NATS, file storage; ratio to target %.2f",
				overheadJobs, took.Round(time.Millisecond), published.Round(time.Millisecond), overheadWorkers, overheadConcurrency, rate/50_000)))
	}
}

// binaries builds bin/planner and bin/pvwasim once, into a temporary
// directory (the repository's bin/ is left alone).
var binaries = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "safeperm-bench-bin")
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-trimpath", "-o", dir+"/", "../cmd/planner", "../cmd/pvwasim")
	cmd.Stderr = os.Stderr
	return dir, cmd.Run()
})

// plannerRun is one bin/planner run against bin/pvwasim with N Safes.
type plannerRun struct {
	safes   int
	jobs    uint64
	wall    time.Duration
	peakRSS int64 // bytes, VmHWM sampled from /proc/<pid>/status
}

func runPlannerProcess(b *testing.B, safes int) plannerRun {
	b.Helper()
	dir, err := binaries()
	if err != nil {
		b.Fatal("build:", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	sim := exec.CommandContext(ctx, dir+"/pvwasim", "--safes", fmt.Sprint(safes), "--seed", "7", "--log-level", "error")
	simOut, err := sim.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	sim.Stderr = os.Stderr
	if err := sim.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = sim.Process.Signal(os.Interrupt)
		_ = sim.Wait()
	}()
	line, err := bufio.NewReader(simOut).ReadString('\n')
	if err != nil {
		b.Fatal("pvwasim: ", err)
	}
	pvwaURL := strings.TrimSpace(line)

	st := startStack(b, "127.0.0.1:0", nil)
	defer st.close()

	work := b.TempDir() // no excludedSafes.txt here
	var stdout bytes.Buffer
	pl := exec.CommandContext(ctx, dir+"/planner", "run", "--pvwa-url", pvwaURL, "--user", pamtest.DefaultAdminUser,
		"--nats-url", st.srv.ClientURL(), "--watch=false", "--rate", "0", "--log-level", "error")
	pl.Dir = work
	pl.Env = append(os.Environ(), "SAFEPERM_PASSWORD="+pamtest.DefaultAdminPassword)
	pl.Stdout, pl.Stderr = &stdout, os.Stderr
	start := time.Now()
	if err := pl.Start(); err != nil {
		b.Fatal(err)
	}
	// VmHWM sampled from /proc: wait4's ru_maxrss is no good here, since
	// a child started with vfork counts the benchmark's own pages.
	var peak atomic.Int64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		path := fmt.Sprintf("/proc/%d/status", pl.Process.Pid)
		for {
			data, err := os.ReadFile(path)
			if err != nil {
				return
			}
			for _, l := range strings.Split(string(data), "\n") {
				if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
					var kb int64
					if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb); err == nil && kb*1024 > peak.Load() {
						peak.Store(kb * 1024)
					}
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	err = pl.Wait()
	<-sampled
	if err != nil {
		b.Fatalf("planner: %v\n%s", err, stdout.String())
	}
	wall := time.Since(start)

	nc, err := st.srv.Connect()
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	s, err := js.Stream(ctx, jobs.JobsStream)
	if err != nil {
		b.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return plannerRun{safes: safes, jobs: info.State.Msgs, wall: wall, peakRSS: peak.Load()}
}

// BenchmarkPlanner is figure 4: bin/planner enumerating and publishing
// 100,000 and 1,000,000 Safes of bin/pvwasim to a NATS server in the
// benchmark's process: its peak RSS against 64 MiB, and how flat it stays.
func BenchmarkPlanner(b *testing.B) {
	const budget = 64 << 20
	for range b.N {
		small := runPlannerProcess(b, 100_000)
		large := runPlannerProcess(b, 1_000_000)
		for _, r := range []plannerRun{small, large} {
			if int(r.jobs) < r.safes*9/10 {
				b.Fatalf("%d Safes: only %d jobs in the stream", r.safes, r.jobs)
			}
		}
		ratio := float64(large.peakRSS) / budget
		flat := float64(large.peakRSS) / float64(small.peakRSS)
		b.ReportMetric(ratio, "ratio/rss-1M-per-64MiB")
		b.ReportMetric(flat, "ratio/rss-1M-per-100k")
		b.ReportMetric(float64(large.jobs)/large.wall.Seconds(), "jobs/s-1M")
		mib := func(n int64) float64 { return float64(n) / (1 << 20) }
		rec.Add(AtMost("4a", "planner peak RSS at 1M Safes ÷ 64 MiB", ratio, 1, 3,
			fmt.Sprintf("VmHWM %.1f MiB (sampled every 20 ms from /proc/<pid>/status); %d jobs published in %s = %.0f jobs/s (listing twice + publishing)",
				mib(large.peakRSS), large.jobs, large.wall.Round(time.Millisecond), float64(large.jobs)/large.wall.Seconds())))
		rec.Add(AtMost("4b", "planner peak RSS at 100k Safes ÷ 64 MiB", float64(small.peakRSS)/budget, 1, 3,
			fmt.Sprintf("VmHWM %.1f MiB; %d jobs published in %s = %.0f jobs/s",
				mib(small.peakRSS), small.jobs, small.wall.Round(time.Millisecond), float64(small.jobs)/small.wall.Seconds())))
		rec.Add(Near("4c", "planner peak RSS, 1M ÷ 100k Safes (flat)", flat, 1, 0.25, 2,
			fmt.Sprintf("%.1f MiB vs %.1f MiB", mib(large.peakRSS), mib(small.peakRSS))))
	}
}
