package jobs_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/natsembed"
	"github.com/safeperm/safeperm/internal/testutil"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*jobs.Config)
		fields []string // fields the error must name; none = valid
	}{
		{"defaults", func(*jobs.Config) {}, nil},
		{"cluster", func(c *jobs.Config) { c.Replicas = 3 }, nil},
		{"memory", func(c *jobs.Config) { c.Storage = jetstream.MemoryStorage }, nil},
		{"zero", func(c *jobs.Config) { *c = jobs.Config{Storage: 7} }, []string{
			"Replicas", "Storage", "AckWait", "MaxDeliver", "MaxAckPending", "Duplicates", "MaxJobs", "RunsHistory", "AdminTimeout"}},
		{"results shorter than dedup", func(c *jobs.Config) { c.ResultsMaxAge = time.Hour }, []string{"ResultsMaxAge"}},
		{"dlq shorter than dedup", func(c *jobs.Config) { c.DLQMaxAge = time.Minute }, []string{"DLQMaxAge"}},
		{"too many replicas", func(c *jobs.Config) { c.Replicas = 7 }, []string{"Replicas=7"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := jobs.DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			if len(tt.fields) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate() = nil, want errors")
			}
			var ce *jobs.ConfigError
			if !errors.As(err, &ce) {
				t.Errorf("error %v is not a *ConfigError", err)
			}
			for _, f := range tt.fields {
				if !strings.Contains(err.Error(), f) {
					t.Errorf("error %q does not name %s", err, f)
				}
			}
		})
	}
}

func TestSetupIdempotent(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := testutil.Context(t, 30*time.Second)
	s1 := e.setup(t, nil)
	// Publish something, then set up again: nothing is lost or reset.
	if _, err := e.js.Publish(ctx, jobs.JobSubject("r1", "a"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	s2 := e.setup(t, func(c *jobs.Config) { c.MaxAckPending = 7 })
	if got := streamMsgs(ctx, t, s2.Jobs); got != 1 {
		t.Errorf("jobs after second Setup = %d, want 1", got)
	}
	wi, err := s2.Workers.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if wi.Config.MaxAckPending != 7 {
		t.Errorf("MaxAckPending after update = %d, want 7", wi.Config.MaxAckPending)
	}
	if s1.Jobs.CachedInfo().Created != s2.Jobs.CachedInfo().Created {
		t.Error("second Setup recreated the jobs stream")
	}

	// The configuration that matters, as the server holds it.
	ji, err := s2.Jobs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	jc := ji.Config
	if jc.Retention != jetstream.WorkQueuePolicy || jc.Discard != jetstream.DiscardNew ||
		jc.MaxMsgsPerSubject != 1 || !jc.DiscardNewPerSubject || jc.Duplicates != 2*time.Hour ||
		jc.MaxMsgs != jobs.DefaultMaxJobs || jc.Storage != jetstream.FileStorage {
		t.Errorf("jobs stream config = %+v", jc)
	}
	wc := wi.Config
	if wc.AckPolicy != jetstream.AckExplicitPolicy || wc.AckWait != time.Minute || len(wc.BackOff) != 0 ||
		wc.MaxDeliver != 8 || wc.FilterSubject != "safeperm.jobs.>" {
		t.Errorf("workers consumer config = %+v", wc)
	}
	ri, err := s2.Results.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ri.Config.Retention != jetstream.LimitsPolicy || ri.Config.MaxAge != 30*24*time.Hour || ri.Config.Duplicates != 2*time.Hour {
		t.Errorf("results stream config = %+v", ri.Config)
	}
	st, err := s2.Runs.Bucket().Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.History() != 5 || st.TTL() != 30*24*time.Hour {
		t.Errorf("runs bucket history=%d ttl=%s", st.History(), st.TTL())
	}
	kv, err := e.js.KeyValue(ctx, jobs.LeasesBucket)
	if err != nil {
		t.Fatal(err)
	}
	if st, err = kv.Status(ctx); err != nil || st.History() != 1 || st.LimitMarkerTTL() <= 0 {
		t.Errorf("leases bucket history=%d limitMarkerTTL=%s (%v)", st.History(), st.LimitMarkerTTL(), err)
	}
	for _, st := range []jetstream.Stream{s2.DLQ, s2.Advisories} {
		if st == nil {
			t.Error("Setup returned a nil stream")
		}
	}
	if s2.DLQMover == nil || s2.Runs == nil {
		t.Error("Setup returned a nil consumer or runs")
	}
}

func TestSetupRejectsInvalidConfig(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	cfg := jobs.DefaultConfig()
	cfg.MaxDeliver = 0
	if _, err := jobs.Setup(testutil.Context(t, 5*time.Second), e.js, cfg); err == nil {
		t.Fatal("Setup accepted MaxDeliver=0")
	}
}

// On a 3-node cluster: Setup waits out the meta-leader election, R3 streams
// work, and KV CAS conflicts (reported with another code on R3) are still
// retried by Runs.Update.
func TestSetupCluster(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("cluster")
	}
	ctx := testutil.Context(t, 60*time.Second)
	js, s := startCluster(ctx, t)
	if got := s.Jobs.CachedInfo().Config.Replicas; got != 3 {
		t.Errorf("jobs replicas = %d, want 3", got)
	}
	p := jobs.NewPublisher(js, testLogger(t), jobs.PublisherOptions{})
	for i := range 100 {
		if err := p.PublishJob(ctx, testJob("r1", safeName(i))); err != nil {
			t.Fatal(err)
		}
	}
	if stats, err := p.Flush(ctx); err != nil || stats.Published != 100 {
		t.Fatalf("Flush = %+v, %v", stats, err)
	}
	consumeAll(ctx, t, s, 100)

	if err := s.Runs.Create(ctx, testRun("r1")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 10 {
				if _, err := s.Runs.Update(ctx, "r1", func(r *jobs.Run) error { r.Planned++; return nil }); err != nil {
					t.Errorf("Update: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got, _, err := s.Runs.Get(ctx, "r1"); err != nil || got.Planned != 40 {
		t.Errorf("Planned = %d (%v), want 40", got.Planned, err)
	}
	l, err := s.Runs.AcquireLease(ctx, "r1", "a", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Runs.AcquireLease(ctx, "r1", "b", time.Second); !errors.Is(err, jobs.ErrLeaseHeld) {
		t.Errorf("second holder on R3 = %v, want ErrLeaseHeld", err)
	}
	_ = l.Release(ctx)

	// A holder that dies loses the lease after its TTL on R3 too.
	dctx, die := context.WithCancel(ctx)
	if _, err := s.Runs.AcquireLease(dctx, "r1", "dying", time.Second); err != nil {
		t.Fatal(err)
	}
	die()
	testutil.Eventually(t, 15*time.Second, 100*time.Millisecond, func() error {
		l, err := s.Runs.AcquireLease(ctx, "r1", "next", time.Second)
		if err != nil {
			return err
		}
		return l.Release(ctx)
	})
}

// startCluster starts a 3-node cluster, connects to it and runs Setup with
// Replicas 3. Everything is torn down with the test.
func startCluster(ctx context.Context, t testing.TB) (jetstream.JetStream, *jobs.Streams) {
	t.Helper()
	servers, err := natsembed.StartCluster(ctx, 3, t.TempDir(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { natsembed.ShutdownAll(servers) })
	nc, err := jobs.Connect(ctx, jobs.ConnectOptions{URLs: natsembed.ClientURLs(servers), ReconnectWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := jobs.DefaultConfig()
	cfg.Replicas = 3
	s, err := jobs.Setup(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return js, s
}
