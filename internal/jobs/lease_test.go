package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/testutil"
)

// ackLoser publishes lease writes through js. Once armed, it lets the next
// write reach the server, where it is stored, and then loses its
// acknowledgement: lose decides what the publisher sees instead.
type ackLoser struct {
	js     jetstream.JetStream
	lose   func(ctx context.Context) error
	armed  atomic.Bool
	stored chan error   // the outcome of the write whose ack was lost
	acked  atomic.Int64 // writes acknowledged normally
}

func newAckLoser(js jetstream.JetStream, lose func(ctx context.Context) error) *ackLoser {
	return &ackLoser{js: js, lose: lose, stored: make(chan error, 1)}
}

func (a *ackLoser) publish(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if !a.armed.CompareAndSwap(true, false) {
		ack, err := a.js.PublishMsg(ctx, m, opts...)
		if err == nil {
			a.acked.Add(1)
		}
		return ack, err
	}
	_, err := a.js.PublishMsg(context.WithoutCancel(ctx), m, opts...)
	a.stored <- err
	return nil, a.lose(ctx)
}

// waitStored waits for the armed write and fails the test unless the server
// stored it.
func (a *ackLoser) waitStored(ctx context.Context, t *testing.T) {
	t.Helper()
	select {
	case err := <-a.stored:
		if err != nil {
			t.Fatalf("the write whose ack is lost was not stored: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("no lease write after arming")
	}
}

// leaseRuns returns a Runs over the buckets of s whose lease writes go
// through a.
func leaseRuns(ctx context.Context, t *testing.T, js jetstream.JetStream, s *jobs.Streams, a *ackLoser) *jobs.Runs {
	t.Helper()
	leases, err := js.KeyValue(ctx, jobs.LeasesBucket)
	if err != nil {
		t.Fatal(err)
	}
	runs := jobs.NewRuns(js, s.Runs.Bucket(), leases)
	jobs.SetLeasePublish(runs, a.publish)
	return runs
}

// On a 3-node cluster, where a publish waits for a quorum, a renewal can be
// stored while its acknowledgement never reaches the holder. The lease must
// still be released by Release and kept by the renewals that follow.
func TestLeaseLostAck(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("cluster")
	}
	ctx := testutil.Context(t, 90*time.Second)
	js, s := startCluster(ctx, t)
	// Long enough that the lease cannot expire by itself while the test
	// looks at it, nor a renewal time out on a loaded machine.
	const ttl = 6 * time.Second

	t.Run("release", func(t *testing.T) {
		// Release cancels the renewal in flight: the publisher stops waiting
		// for its ack, which the server sends after storing the write.
		a := newAckLoser(js, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
		runs := leaseRuns(ctx, t, js, s, a)
		l, err := runs.AcquireLease(ctx, "r1", "a", ttl)
		if err != nil {
			t.Fatal(err)
		}
		a.armed.Store(true)
		a.waitStored(ctx, t)
		if err := l.Release(ctx); err != nil {
			t.Fatalf("Release: %v", err)
		}
		b, err := runs.AcquireLease(ctx, "r1", "b", ttl)
		if err != nil {
			t.Fatalf("AcquireLease right after Release = %v, want the lease", err)
		}
		if err := b.Release(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("acquire", func(t *testing.T) {
		// The acquiring write is stored, and its ack lost: the lease is
		// held by this holder, and AcquireLease must say so, not fail
		// and leave it held by nobody who renews it.
		a := newAckLoser(js, func(context.Context) error { return nats.ErrTimeout })
		runs := leaseRuns(ctx, t, js, s, a)
		a.armed.Store(true)
		l, err := runs.AcquireLease(ctx, "r3", "a", ttl)
		if err != nil {
			t.Fatalf("AcquireLease whose write was stored, its ack lost = %v, want the lease", err)
		}
		a.waitStored(ctx, t)
		if _, err := runs.AcquireLease(ctx, "r3", "b", ttl); !errors.Is(err, jobs.ErrLeaseHeld) {
			t.Errorf("another holder = %v, want ErrLeaseHeld", err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		b, err := runs.AcquireLease(ctx, "r3", "b", ttl)
		if err != nil {
			t.Fatalf("AcquireLease after Release = %v, want the lease", err)
		}
		if err := b.Release(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("renew", func(t *testing.T) {
		// A renewal fails before its deadline although the server stored it
		// (as when the reply is lost in a leader change).
		a := newAckLoser(js, func(context.Context) error { return nats.ErrTimeout })
		runs := leaseRuns(ctx, t, js, s, a)
		l, err := runs.AcquireLease(ctx, "r2", "a", ttl)
		if err != nil {
			t.Fatal(err)
		}
		a.armed.Store(true)
		a.waitStored(ctx, t)
		// The next renewal finds the key at a revision it did not know. It
		// must see that the value is still its own and go on renewing.
		before := a.acked.Load()
		testutil.Eventually(t, 10*ttl, 50*time.Millisecond, func() error {
			select {
			case <-l.Lost():
				t.Fatal("lease reported lost after a renewal whose ack was lost")
			default:
			}
			if n := a.acked.Load() - before; n < 2 {
				return fmt.Errorf("%d renewals acknowledged since the lost ack, want 2", n)
			}
			return nil
		})
		if _, err := runs.AcquireLease(ctx, "r2", "b", ttl); !errors.Is(err, jobs.ErrLeaseHeld) {
			t.Errorf("another holder while renewed = %v, want ErrLeaseHeld", err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		b, err := runs.AcquireLease(ctx, "r2", "b", ttl)
		if err != nil {
			t.Fatalf("AcquireLease after Release = %v, want the lease", err)
		}
		if err := b.Release(ctx); err != nil {
			t.Fatal(err)
		}
	})
}
