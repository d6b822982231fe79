package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// MinLeaseTTL is the shortest lease AcquireLease accepts (per-message TTLs
// have one-second resolution).
const MinLeaseTTL = time.Second

// leaseValue is the JSON stored in LeasesBucket under the run id.
type leaseValue struct {
	Holder   string    `json:"holder"`
	Acquired time.Time `json:"acquired"`
	Renewed  time.Time `json:"renewed"`
}

// Lease is a held lease on a run (the planner lease: one planner per run).
// While held it is renewed in the background every TTL/3. Its methods are
// safe for concurrent use.
type Lease struct {
	runs     *Runs
	key      string
	holder   string
	ttl      time.Duration
	acquired time.Time

	mu  sync.Mutex
	rev uint64

	cancel   context.CancelFunc
	done     chan struct{} // closed when the renew loop has exited
	lost     chan struct{}
	lostOnce sync.Once
	released atomic.Bool
}

// AcquireLease takes the lease on run (key "<run>" in LeasesBucket) for holder, valid for ttl and
// renewed every ttl/3 until Release is called or ctx ends (the lease then
// expires ttl after its last renewal). It returns an error wrapping
// ErrLeaseHeld when another holder has it. A lease held by the same holder
// (a restarted process with a stable holder id) is taken over, so holder
// should identify one process, e.g. "host/pid".
//
// Watch Lost: it is closed when renewals kept failing for 2/3 of the ttl
// (before the lease can expire) or someone else took the lease; the holder
// must then stop acting as owner.
func (r *Runs) AcquireLease(ctx context.Context, run, holder string, ttl time.Duration) (*Lease, error) {
	if err := CheckRunID(run); err != nil {
		return nil, err
	}
	if holder == "" {
		return nil, errors.New("acquire lease: empty holder")
	}
	if ttl < MinLeaseTTL {
		return nil, fmt.Errorf("acquire lease: ttl %s below %s", ttl, MinLeaseTTL)
	}
	now := time.Now().UTC()
	l := &Lease{runs: r, key: run, holder: holder, ttl: ttl, acquired: now,
		done: make(chan struct{}), lost: make(chan struct{})}
	val, err := l.value(now)
	if err != nil {
		return nil, err
	}
	for {
		rev, err := r.leases.Create(ctx, l.key, val, jetstream.KeyTTL(ttl))
		if err == nil {
			l.rev = rev
			break
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("acquire lease %s: %w", l.key, err)
		}
		e, gerr := r.leases.Get(ctx, l.key)
		if errors.Is(gerr, jetstream.ErrKeyNotFound) || errors.Is(gerr, jetstream.ErrKeyDeleted) {
			if err := sleep(ctx, 10*time.Millisecond); err != nil {
				return nil, fmt.Errorf("acquire lease %s: %w", l.key, err)
			}
			continue // expired in between: try again
		}
		if gerr != nil {
			return nil, fmt.Errorf("acquire lease %s: %w", l.key, gerr)
		}
		var cur leaseValue
		_ = json.Unmarshal(e.Value(), &cur)
		if cur.Holder != holder {
			return nil, fmt.Errorf("acquire lease %s: %w (holder %q, renewed %s)", l.key, ErrLeaseHeld, cur.Holder, cur.Renewed.Format(time.RFC3339))
		}
		// Ours from an earlier life: take it over with a CAS write.
		rev, err = l.put(ctx, e.Revision(), val)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("acquire lease %s: %w", l.key, err)
		}
		l.rev = rev
		break
	}
	rctx, cancel := context.WithCancel(ctx)
	l.cancel = cancel
	go l.renewLoop(rctx)
	return l, nil
}

// Holder returns the holder the lease was acquired for.
func (l *Lease) Holder() string { return l.holder }

// Lost is closed when the lease is no longer held (or may soon not be):
// renewals failed for 2/3 of the TTL, another holder took it, the
// AcquireLease context ended, or Release was called.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Release stops renewing and deletes the lease if it is still ours, so the
// next holder need not wait for the TTL. Safe to call more than once.
func (l *Lease) Release(ctx context.Context) error {
	l.released.Store(true)
	l.cancel()
	<-l.done
	l.mu.Lock()
	rev := l.rev
	l.mu.Unlock()
	// A CAS delete: if someone else took the lease meanwhile, the revision
	// no longer matches and their lease is left alone.
	err := l.runs.leases.Delete(ctx, l.key, jetstream.LastRevision(rev))
	if err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("release lease %s: %w", l.key, err)
	}
	l.markLost()
	return nil
}

func (l *Lease) markLost() { l.lostOnce.Do(func() { close(l.lost) }) }

func (l *Lease) value(now time.Time) ([]byte, error) {
	return json.Marshal(leaseValue{Holder: l.holder, Acquired: l.acquired, Renewed: now})
}

// put writes val if the key is still at rev, with a fresh TTL. kv.Update
// cannot set a per-key TTL, so this publishes what it would with the TTL
// header added. It assumes the default "$KV." prefix (no JetStream domain).
func (l *Lease) put(ctx context.Context, rev uint64, val []byte) (uint64, error) {
	subj := "$KV." + l.runs.leases.Bucket() + "." + l.key
	ack, err := l.runs.js.PublishMsg(ctx, &nats.Msg{Subject: subj, Data: val},
		jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(l.ttl))
	if err != nil {
		if c := apiCode(err); c == jetstream.JSErrCodeStreamWrongLastSequence || c == jetstream.JSErrCodeStreamWrongLastSequenceConstant {
			return 0, fmt.Errorf("%w: %w", err, jetstream.ErrKeyRevisionMismatch)
		}
		return 0, err
	}
	return ack.Sequence, nil
}

func (l *Lease) renewLoop(ctx context.Context) {
	defer close(l.done)
	every := l.ttl / 3
	t := time.NewTicker(every)
	defer t.Stop()
	lastOK := time.Now()
	for {
		select {
		case <-ctx.Done():
			if !l.released.Load() {
				l.markLost() // the owner's ctx ended: renewals stop
			}
			return
		case <-t.C:
		}
		now := time.Now()
		val, _ := l.value(now.UTC())
		l.mu.Lock()
		rev := l.rev
		l.mu.Unlock()
		actx, cancel := context.WithTimeout(ctx, every)
		newRev, err := l.put(actx, rev, val)
		cancel()
		switch {
		case err == nil:
			l.mu.Lock()
			l.rev = newRev
			l.mu.Unlock()
			lastOK = now
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			l.markLost() // someone else wrote the key: it expired and was taken
			return
		case time.Since(lastOK) >= l.ttl-every:
			// Give up before the lease can expire under us, so the holder
			// stops acting as owner before anyone else can take over.
			l.markLost()
			return
		}
	}
}
