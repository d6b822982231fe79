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

const (
	// leaseCASAttempts bounds how often Release and a renewal re-read the
	// key and retry after a revision mismatch while the lease is still
	// theirs. Only the holder itself writes its lease, so a mismatch on a
	// key that is still ours comes from our own write whose ack was lost,
	// possibly still in flight: a few attempts settle it.
	leaseCASAttempts = 8
	// leaseReadTimeout bounds one read of a lease key when ctx has no
	// sooner deadline (the JetStream API default).
	leaseReadTimeout = 5 * time.Second
	// kvOperationHeader marks KV delete and purge markers.
	kvOperationHeader = "KV-Operation"
)

// errLeaseGone is what Lease.current reports when the key no longer holds
// this lease: it expired, was released, or another holder (or the same
// holder id acquiring anew) wrote it.
var errLeaseGone = errors.New("lease no longer held")

// leaseValue is the JSON stored in LeasesBucket under the run id.
type leaseValue struct {
	Holder   string    `json:"holder"`
	Acquired time.Time `json:"acquired"`
	Renewed  time.Time `json:"renewed"`
}

// leaseEntry is the last message stored for a lease key.
type leaseEntry struct {
	rev  uint64     // its revision; 0 when the key has no message at all
	live bool       // a lease value, not a delete or expiry marker
	val  leaseValue // set when live
}

// Lease is a held lease on a run (the planner lease: one planner per run).
// While held it is renewed in the background every TTL/3. Its methods are
// safe for concurrent use.
type Lease struct {
	runs     *Runs
	key      string
	holder   string
	ttl      time.Duration
	acquired time.Time // with holder, tells this lease from a later one of the same holder

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
		cur, err := l.read(ctx)
		if err != nil {
			return nil, fmt.Errorf("acquire lease %s: %w", l.key, err)
		}
		if cur.live && cur.val.Holder != holder {
			return nil, fmt.Errorf("acquire lease %s: %w (holder %q, renewed %s)", l.key, ErrLeaseHeld, cur.val.Holder, cur.val.Renewed.Format(time.RFC3339))
		}
		// Free (no key, or a delete or expiry marker) or ours from an
		// earlier life: write at the revision just read, so that of two
		// acquirers only one succeeds; the other reads again.
		rev, err := l.put(ctx, cur.rev, val)
		if err == nil {
			l.rev = rev
			break
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			// The write may have been stored although its ack was lost
			// (a timeout, a leader change): if the key holds this very
			// lease (holder and acquired time), it is ours; else it is
			// not, and the error stands.
			if rev, cerr := l.current(ctx, 1); cerr == nil {
				l.rev = rev
				break
			}
			return nil, fmt.Errorf("acquire lease %s: %w", l.key, err)
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return nil, fmt.Errorf("acquire lease %s: %w", l.key, err)
		}
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

// Release stops renewing and deletes the lease if it is still this one, so
// the next holder need not wait for the TTL. When it returns nil the lease
// is free or held by someone else (another holder, or the same holder id
// acquiring anew), whatever became of the last renewal. Lost is closed
// even if it fails; the lease then expires ttl after its last renewal.
// Safe to call more than once.
func (l *Lease) Release(ctx context.Context) error {
	l.released.Store(true)
	l.cancel()
	<-l.done
	l.markLost()
	// A CAS delete at the last revision we know. A mismatch means either
	// that someone else wrote the key (their lease is left alone) or that
	// a renewal of ours was stored although its ack was lost, e.g. to the
	// cancel above: read the key to tell which.
	rev := l.revision()
	for i := range leaseCASAttempts {
		err := l.runs.leases.Delete(ctx, l.key, jetstream.LastRevision(rev))
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("release lease %s: %w", l.key, err)
		}
		rev, err = l.current(ctx, i)
		if errors.Is(err, errLeaseGone) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("release lease %s: %w", l.key, err)
		}
	}
	return fmt.Errorf("release lease %s: revision still changing after %d attempts", l.key, leaseCASAttempts)
}

func (l *Lease) markLost() { l.lostOnce.Do(func() { close(l.lost) }) }

func (l *Lease) revision() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rev
}

func (l *Lease) setRevision(rev uint64) {
	l.mu.Lock()
	l.rev = rev
	l.mu.Unlock()
}

func (l *Lease) value(now time.Time) ([]byte, error) {
	return json.Marshal(leaseValue{Holder: l.holder, Acquired: l.acquired, Renewed: now})
}

// current returns the revision of the key if it still holds this lease
// (same holder and acquired time), else errLeaseGone. attempt counts the
// mismatches already seen: from the second on it first waits a little, so
// that a write of ours still in flight (the leader refuses a CAS write on
// a key with a write in process) can land.
func (l *Lease) current(ctx context.Context, attempt int) (uint64, error) {
	if attempt > 0 {
		if err := sleep(ctx, min(10*time.Millisecond<<attempt, 200*time.Millisecond)); err != nil {
			return 0, err
		}
	}
	cur, err := l.read(ctx)
	if err != nil {
		return 0, err
	}
	if !cur.live || cur.val.Holder != l.holder || !cur.val.Acquired.Equal(l.acquired) {
		return 0, errLeaseGone
	}
	return cur.rev, nil
}

// read returns the last message stored for the key, as the stream leader
// has it. KeyValue.Get is a direct get, which any replica of an R3 bucket
// may answer, and one that has not yet applied the last write answers with
// the value before it (seen under load: a few reads in a thousand right
// after a put or delete). A lease decision made on such a read could keep
// a released lease or refuse a free one. The STREAM.MSG.GET API is
// answered by the stream leader only. Like put, this assumes the default
// "$JS.API." prefix (no JetStream domain).
func (l *Lease) read(ctx context.Context) (leaseEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, leaseReadTimeout)
	defer cancel()
	req, err := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{l.subject()})
	if err != nil {
		return leaseEntry{}, err
	}
	subj := "$JS.API.STREAM.MSG.GET.KV_" + l.runs.leases.Bucket()
	msg, err := l.runs.js.Conn().RequestWithContext(ctx, subj, req)
	if err != nil {
		return leaseEntry{}, fmt.Errorf("read lease: %w", err)
	}
	var resp struct {
		Error   *jetstream.APIError `json:"error"`
		Message *struct {
			Seq    uint64 `json:"seq"`
			Header []byte `json:"hdrs"`
			Data   []byte `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return leaseEntry{}, fmt.Errorf("read lease: %w", err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return leaseEntry{}, nil
	case resp.Error != nil:
		return leaseEntry{}, fmt.Errorf("read lease: %w", resp.Error)
	case resp.Message == nil:
		return leaseEntry{}, errors.New("read lease: empty response")
	}
	e := leaseEntry{rev: resp.Message.Seq}
	if len(resp.Message.Header) > 0 {
		h, err := nats.DecodeHeadersMsg(resp.Message.Header)
		if err != nil {
			return leaseEntry{}, fmt.Errorf("read lease: %w", err)
		}
		if h.Get(kvOperationHeader) != "" || h.Get(jetstream.MarkerReasonHeader) != "" {
			return e, nil // deleted, purged or expired: free
		}
	}
	if json.Unmarshal(resp.Message.Data, &e.val) == nil && e.val.Holder != "" {
		e.live = true
	}
	return e, nil
}

func (l *Lease) subject() string { return "$KV." + l.runs.leases.Bucket() + "." + l.key }

// put writes val if the key is still at rev (0: if it has no message), with
// a fresh TTL. kv.Update cannot set a per-key TTL, so this publishes what
// it would with the TTL header added. It assumes the default "$KV." prefix
// (no JetStream domain).
func (l *Lease) put(ctx context.Context, rev uint64, val []byte) (uint64, error) {
	publish := l.runs.js.PublishMsg
	if l.runs.publishLease != nil {
		publish = l.runs.publishLease
	}
	ack, err := publish(ctx, &nats.Msg{Subject: l.subject(), Data: val},
		jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(l.ttl))
	if err != nil {
		if c := apiCode(err); c == jetstream.JSErrCodeStreamWrongLastSequence || c == jetstream.JSErrCodeStreamWrongLastSequenceConstant {
			return 0, fmt.Errorf("%w: %w", err, jetstream.ErrKeyRevisionMismatch)
		}
		return 0, err
	}
	return ack.Sequence, nil
}

// renew writes a fresh value with a fresh TTL at the last revision known.
// On a mismatch it reads the key: if it still holds this lease, an earlier
// renewal was stored although its ack was lost, and renew retries at the
// revision read; otherwise it returns errLeaseGone.
func (l *Lease) renew(ctx context.Context, now time.Time) error {
	val, err := l.value(now.UTC())
	if err != nil {
		return err
	}
	rev := l.revision()
	for i := range leaseCASAttempts {
		newRev, err := l.put(ctx, rev, val)
		if err == nil {
			l.setRevision(newRev)
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return err
		}
		if rev, err = l.current(ctx, i); err != nil {
			return err
		}
	}
	return fmt.Errorf("renew lease %s: revision still changing after %d attempts", l.key, leaseCASAttempts)
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
		actx, cancel := context.WithTimeout(ctx, every)
		err := l.renew(actx, now)
		cancel()
		switch {
		case err == nil:
			lastOK = now
		case errors.Is(err, errLeaseGone):
			l.markLost() // it expired and was taken, or was taken over
			return
		case time.Since(lastOK) >= l.ttl-every:
			// Give up before the lease can expire under us, so the holder
			// stops acting as owner before anyone else can take over.
			l.markLost()
			return
		}
	}
}
