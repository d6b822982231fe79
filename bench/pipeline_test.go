package bench

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/natsembed"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
	"github.com/safeperm/safeperm/internal/policy"
	"github.com/safeperm/safeperm/internal/worker"
)

// wantPerms is what every run ensures for PSMAppUsers, as the demo does.
var wantPerms = pam.Perms(pam.ListAccounts, pam.UnlockAccounts)

var member = jobs.MemberRef{Name: pamtest.PSMAppUsers, Type: "Group", SearchIn: "Vault"}

// natsStack is an embedded server with safeperm's streams, as planner run
// starts it without --nats-url (file storage in a temporary directory).
type natsStack struct {
	srv     *natsembed.Server
	js      jetstream.JetStream
	streams *jobs.Streams
	close   func()
}

func startStack(b testing.TB, listen string, mutate func(*jobs.Config)) *natsStack {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := natsembed.Start(ctx, natsembed.Options{StoreDir: b.TempDir(), Listen: listen})
	if err != nil {
		b.Fatal(err)
	}
	s := &natsStack{srv: srv}
	if listen != "" {
		s.close = srv.Shutdown
		b.Cleanup(s.close)
		return s
	}
	nc, err := srv.Connect()
	if err != nil {
		srv.Shutdown()
		b.Fatal(err)
	}
	s.close = func() {
		nc.Close()
		srv.Shutdown()
	}
	b.Cleanup(s.close)
	if s.js, err = jetstream.New(nc); err != nil {
		b.Fatal(err)
	}
	cfg := jobs.DefaultConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	if s.streams, err = jobs.Setup(ctx, s.js, cfg); err != nil {
		b.Fatal(err)
	}
	return s
}

// finishObserver records when each job finished (after its ack).
type finishObserver struct {
	mu       sync.Mutex
	finished []time.Time
	retried  atomic.Int64
	status   map[jobs.Status]int
}

func (o *finishObserver) JobStarted() {}
func (o *finishObserver) JobFinished(s jobs.Status, _ time.Duration) {
	now := time.Now()
	o.mu.Lock()
	o.finished = append(o.finished, now)
	if o.status == nil {
		o.status = map[jobs.Status]int{}
	}
	o.status[s]++
	o.mu.Unlock()
}
func (o *finishObserver) JobRetried(uint64) { o.retried.Add(1) }

func (o *finishObserver) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.finished)
}

// noopPVWA answers every read with a member that already complies: the
// pipeline's own cost, without a PVWA.
type noopPVWA struct{}

func (noopPVWA) Member(_ context.Context, safe, name string) (pam.Member, error) {
	return pam.Member{SafeURLID: safe, Name: name, Type: "Group", Permissions: wantPerms}, nil
}
func (noopPVWA) Members(context.Context, string, ...pam.MembersOptions) iter.Seq2[pam.Member, error] {
	return func(yield func(pam.Member, error) bool) {
		yield(pam.Member{}, errors.New("noop PVWA: unexpected listing"))
	}
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
