package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
)

// plannerRun is one bin/planner run against bin/pvwasim with N Safes.
type plannerRun struct {
	safes   int
	jobs    uint64
	wall    time.Duration
	peakRSS int64 // bytes, VmHWM sampled from /proc/<pid>/status
}

func runPlannerProcess(b *testing.B, safes int) plannerRun {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	sim := exec.CommandContext(ctx, bin(b, "pvwasim"), "--safes", fmt.Sprint(safes), "--seed", "7", "--log-level", "error")
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
	pl := exec.CommandContext(ctx, bin(b, "planner"), "run", "--pvwa-url", pvwaURL, "--user", pamtest.DefaultAdminUser,
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
