package throttle

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

const (
	// WorkersBucket is the KV bucket holding the budget members' heartbeats,
	// key "<budget>.<worker>", and the budgets' totals, key
	// "<budget>._total". It has History 1, memory storage and limit markers
	// (LimitMarkerTTL), so a key whose per-message TTL runs out disappears
	// with a purge marker every watcher sees.
	WorkersBucket = "safeperm_workers"
	// TotalKey is the last token of the key holding a budget's total.
	TotalKey = "_total"
	// DefaultBudgetName is the budget a worker joins when no name is given.
	DefaultBudgetName = "default"
	// DefaultHeartbeat is BudgetOptions.Heartbeat's default.
	DefaultHeartbeat = time.Second
	// TTLHeartbeats is how many heartbeats a member's key outlives its last
	// renewal: a worker killed with -9 is counted out this long after its
	// last heartbeat.
	TTLHeartbeats = 3
	// markerTTL is how long purge markers of expired keys stay in the bucket.
	markerTTL = time.Minute
	// burstWindow sizes a member's token bucket: at most this much of its
	// share may be saved up while idle (at least one request).
	burstWindow = 20 * time.Millisecond
)

// Log field names.
const (
	logComponent = "component"
	logBudget    = "budget"
	logShare     = "share"
	logMembers   = "members"
	logTotal     = "total"
	logKey       = "key"
)

var (
	// ErrClosed is returned by Budget.Wait once the Budget is closed.
	ErrClosed = errors.New("throttle: budget closed")
	// ErrWorkerIDInUse is returned by JoinBudget when another live member of
	// the budget has the same worker id, so the two could not be told apart.
	ErrWorkerIDInUse = errors.New("throttle: worker id in use by a live member")
)

var (
	budgetNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	rawWorkerRE  = regexp.MustCompile(`^[A-Za-z0-9-][A-Za-z0-9_-]{0,127}$`)
)

// BudgetOptions configure JoinBudget.
type BudgetOptions struct {
	// Name identifies the budget: every worker joining the same name shares
	// one total. A run id or DefaultBudgetName (the default);
	// ^[A-Za-z0-9_-]{1,64}$.
	Name string
	// WorkerID identifies this member; it must be unique among the live
	// members (host name and pid, pod name). Any string; ids outside
	// [A-Za-z0-9_-] are encoded for the KV key. Required.
	WorkerID string
	// Total is the budget's total in PVWA requests per second, used while
	// the KV holds no total for the budget (see SetTotal, which the run's
	// --rate writes and which wins). 0 means unlimited. Must not be negative.
	Total float64
	// Heartbeat is how often this member renews its key (default
	// DefaultHeartbeat, at least 50ms). The key expires TTLHeartbeats
	// heartbeats after its last renewal, rounded up to whole seconds.
	Heartbeat time.Duration
	// Replicas is the replica count used if JoinBudget creates
	// WorkersBucket (default 1; 3 on a cluster). An existing bucket is used
	// as it is.
	Replicas int
	// Logger receives membership changes and heartbeat failures; the zero
	// value logs nothing. It should name the worker already: the budget
	// adds only "component" and "budget".
	Logger zerolog.Logger
}

// validate fills defaults and reports every problem at once.
func (o *BudgetOptions) validate() error {
	if o.Name == "" {
		o.Name = DefaultBudgetName
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	var errs []error
	if !budgetNameRE.MatchString(o.Name) {
		errs = append(errs, fmt.Errorf("budget name %q: must match %s", o.Name, budgetNameRE))
	}
	if o.WorkerID == "" {
		errs = append(errs, errors.New("worker id: required"))
	}
	if o.Total < 0 || math.IsNaN(o.Total) || math.IsInf(o.Total, 0) {
		errs = append(errs, fmt.Errorf("total %v: must be a finite number >= 0", o.Total))
	}
	if o.Heartbeat < 50*time.Millisecond {
		errs = append(errs, fmt.Errorf("heartbeat %s: must be at least 50ms", o.Heartbeat))
	}
	if o.Replicas < 1 || o.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas %d: must be 1 to 5", o.Replicas))
	}
	return errors.Join(errs...)
}

// workerToken is the KV key token of a worker id: the id itself when it is
// a plain token not starting with "_" (reserved for TotalKey), else "="
// and its unpadded base64url encoding ("=" never occurs in a plain token).
func workerToken(id string) string {
	if rawWorkerRE.MatchString(id) {
		return id
	}
	return "=" + base64.RawURLEncoding.EncodeToString([]byte(id))
}

// heartbeatValue is the JSON value of a member key.
type heartbeatValue struct {
	// Seen is the last WorkersBucket revision the member had applied to its
	// share when it wrote this value: a joiner whose key has a revision <= Seen
	// is counted by that member.
	Seen uint64 `json:"seen"`
	// Joining is set until every other member has acknowledged this one;
	// members seeing it heartbeat at once to acknowledge it.
	Joining bool `json:"joining,omitempty"`
	// Share is the member's current share in requests per second (-1 for
	// unlimited); informational.
	Share float64 `json:"share"`
	// HeartbeatMS is the member's heartbeat; informational.
	HeartbeatMS int64 `json:"heartbeatMs"`
}

// member is what a Budget knows of another member.
type member struct {
	seen    uint64
	joining bool
}

// Budget is this process's membership of a global request budget shared
// over NATS: Wait paces the caller at total/n, n being the number of live
// members. It satisfies pam.Limiter and AdaptiveOptions.Limiter. Its
// methods are safe for concurrent use. The caller must Close it.
type Budget struct {
	o       BudgetOptions
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	prefix  string // "<name>."
	key     string // own key
	subject string // own key's subject
	ttl     time.Duration
	log     zerolog.Logger
	p       *pacer

	mu       sync.Mutex
	members  map[string]member // every member key but our own
	kvTotal  float64
	hasTotal bool
	seenRev  uint64 // last revision applied from the watch
	ownRev   uint64 // revision of our key's last write
	joinRev  uint64 // revision of our key's creation
	ready    bool   // the watch's initial values are applied
	lost     bool   // our key was deleted or expired: re-create it
	closed   bool
	share    float64
	logged   time.Time // last heartbeat failure log

	ack       chan struct{} // capacity 1: heartbeat now
	stopHB    chan struct{} // closed by Close
	hbDone    chan struct{} // closed when the heartbeat loop returned
	cancel    context.CancelFunc
	watchDone chan struct{}
}

// JoinBudget makes this process a member of budget o.Name and returns once
// it has read the membership. Its share is 0 (Wait blocks) until every
// other live member has acknowledged it, which takes a few milliseconds, or
// up to TTLHeartbeats heartbeats when a member died without leaving. It
// creates WorkersBucket if needed. It fails with ErrWorkerIDInUse when a
// live member has the same worker id and its key does not expire within
// the key TTL.
func JoinBudget(ctx context.Context, js jetstream.JetStream, o BudgetOptions) (*Budget, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("join budget: %w", err)
	}
	kv, err := workersBucket(ctx, js, o.Replicas)
	if err != nil {
		return nil, fmt.Errorf("join budget %q: %w", o.Name, err)
	}
	b := &Budget{
		o:       o,
		js:      js,
		kv:      kv,
		prefix:  o.Name + ".",
		ttl:     keyTTL(o.Heartbeat),
		members: map[string]member{},
		// The caller's logger names the worker already (cmd/worker adds
		// "worker"); adding it again would repeat the key in every line.
		log:       o.Logger.With().Str(logComponent, "budget").Str(logBudget, o.Name).Logger(),
		p:         newPacer(time.Now),
		ack:       make(chan struct{}, 1),
		stopHB:    make(chan struct{}),
		hbDone:    make(chan struct{}),
		watchDone: make(chan struct{}),
	}
	b.key = b.prefix + workerToken(o.WorkerID)
	b.subject = "$KV." + WorkersBucket + "." + b.key
	if err := b.create(ctx); err != nil {
		return nil, fmt.Errorf("join budget %q as %q: %w", o.Name, o.WorkerID, err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	w, err := kv.Watch(wctx, b.prefix+"*")
	if err != nil {
		cancel()
		b.deleteOwn(ctx)
		return nil, fmt.Errorf("join budget %q: watch members: %w", o.Name, err)
	}
	if err := b.readInitial(ctx, w); err != nil {
		cancel()
		_ = w.Stop()
		b.deleteOwn(ctx)
		return nil, fmt.Errorf("join budget %q: read members: %w", o.Name, err)
	}
	b.cancel = cancel
	go func() { defer close(b.watchDone); b.watchLoop(wctx, w) }()
	go func() { defer close(b.hbDone); b.heartbeatLoop(b.stopHB) }()
	b.requestHeartbeat() // acknowledge the members we just read
	b.log.Info().Int(logMembers, b.Members()).Msg("joined budget")
	return b, nil
}

// keyTTL is the per-message TTL of a member key: TTLHeartbeats heartbeats,
// rounded up to whole seconds (nats-server 2.15.2 rejects a Nats-TTL under
// one second with err_code 10165).
func keyTTL(hb time.Duration) time.Duration {
	return max(time.Second, (TTLHeartbeats*hb + time.Second - 1).Truncate(time.Second))
}

// workersBucket creates WorkersBucket, or binds to it if it exists, and
// checks it can expire keys.
func workersBucketConfig(replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:         WorkersBucket,
		Description:    "safeperm rate budget members (heartbeats with per-key TTL) and totals",
		History:        1,
		Storage:        jetstream.MemoryStorage,
		Replicas:       replicas,
		LimitMarkerTTL: markerTTL,
	}
}

func workersBucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateKeyValue(ctx, workersBucketConfig(replicas))
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.KeyValue(ctx, WorkersBucket)
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", WorkersBucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", WorkersBucket, err)
	}
	if st.LimitMarkerTTL() <= 0 || st.History() != 1 {
		return nil, fmt.Errorf("bucket %s: has history %d and limit marker TTL %s; needs history 1 and limit markers for per-key TTLs (delete it to let safeperm recreate it)",
			WorkersBucket, st.History(), st.LimitMarkerTTL())
	}
	return kv, nil
}

// create writes our key with kv.Create, waiting out a predecessor's key
// with the same worker id (a crashed process) for up to the key TTL.
func (b *Budget) create(ctx context.Context) error {
	deadline := time.Now().Add(b.ttl + b.o.Heartbeat)
	for {
		sent := time.Now()
		rev, err := b.kv.Create(ctx, b.key, b.value(true), jetstream.KeyTTL(b.ttl))
		if err == nil {
			b.renewed(rev, sent, true)
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("create key %s: %w", b.key, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("key %s: %w", b.key, ErrWorkerIDInUse)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(b.o.Heartbeat / 2):
		}
	}
}

// value is our key's JSON value.
func (b *Budget) value(joining bool) []byte {
	b.mu.Lock()
	v := heartbeatValue{Seen: b.seenRev, Joining: joining, Share: b.share, HeartbeatMS: b.o.Heartbeat.Milliseconds()}
	b.mu.Unlock()
	if math.IsInf(v.Share, 1) {
		v.Share = -1
	}
	data, _ := json.Marshal(v) // cannot fail: plain numbers
	return data
}

// readInitial applies the watch's current values, up to its nil marker.
func (b *Budget) readInitial(ctx context.Context, w jetstream.KeyWatcher) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watcher stopped")
			}
			if e == nil {
				b.mu.Lock()
				b.ready = true
				b.recomputeLocked()
				b.mu.Unlock()
				return nil
			}
			b.apply(e)
		}
	}
}

// watchLoop applies membership changes until ctx ends.
func (b *Budget) watchLoop(ctx context.Context, w jetstream.KeyWatcher) {
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e != nil {
				b.apply(e)
			}
		}
	}
}

// apply records one watched entry and recomputes the share. Seeing a member
// that is joining triggers a heartbeat, which acknowledges it.
func (b *Budget) apply(e jetstream.KeyValueEntry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if rev := e.Revision(); rev > b.seenRev {
		b.seenRev = rev
	}
	tok := strings.TrimPrefix(e.Key(), b.prefix)
	put := e.Operation() == jetstream.KeyValuePut
	switch {
	case tok == TotalKey:
		b.applyTotalLocked(e, put)
	case e.Key() == b.key:
		if !put && e.Revision() > b.ownRev && !b.closed {
			// Expired or deleted by someone else: the others no longer
			// count us, so stop until the heartbeat re-creates the key.
			b.lost = true
			b.log.Warn().Msg("own budget key expired or was deleted; pausing until it is re-created")
		}
	case put:
		var v heartbeatValue
		if err := json.Unmarshal(e.Value(), &v); err != nil {
			// Count a value we cannot read (conservative) but do not let
			// it hold up joiners forever.
			v = heartbeatValue{Seen: math.MaxUint64}
		}
		_, known := b.members[e.Key()]
		b.members[e.Key()] = member{seen: v.Seen, joining: v.Joining}
		if !known {
			b.log.Debug().Str(logKey, e.Key()).Int(logMembers, len(b.members)+1).Msg("budget member joined")
		}
		if v.Joining && b.ready {
			b.requestHeartbeat()
		}
	default:
		if _, known := b.members[e.Key()]; known {
			delete(b.members, e.Key())
			b.log.Debug().Str(logKey, e.Key()).Int(logMembers, len(b.members)+1).Msg("budget member left")
		}
	}
	b.recomputeLocked()
}

// applyTotalLocked records a change of the budget's total in the KV.
func (b *Budget) applyTotalLocked(e jetstream.KeyValueEntry, put bool) {
	if !put {
		b.hasTotal = false
		b.log.Info().Float64(logTotal, b.o.Total).Msg("budget total removed from KV; using own total")
		return
	}
	t, err := strconv.ParseFloat(strings.TrimSpace(string(e.Value())), 64)
	if err != nil || t < 0 || math.IsNaN(t) || math.IsInf(t, 0) {
		b.log.Warn().Str(logKey, e.Key()).Msg("ignoring invalid budget total in KV")
		return
	}
	b.kvTotal, b.hasTotal = t, true
	b.log.Info().Float64(logTotal, t).Msg("budget total set from KV")
}

// requestHeartbeat asks the heartbeat loop for a heartbeat now.
func (b *Budget) requestHeartbeat() {
	select {
	case b.ack <- struct{}{}:
	default:
	}
}

// totalLocked is the total in force: the KV's, else our own.
func (b *Budget) totalLocked() float64 {
	if b.hasTotal {
		return b.kvTotal
	}
	return b.o.Total
}

// joiningLocked reports whether some member has not acknowledged our key
// yet, and so may still be running at a share that does not count us.
func (b *Budget) joiningLocked() bool {
	for _, m := range b.members {
		if m.seen < b.joinRev {
			return true
		}
	}
	return false
}

// recomputeLocked sets the pacer to our share: 0 until the membership is
// read, while a member has not acknowledged us and while our key is lost;
// unlimited for a total of 0; else total/n.
func (b *Budget) recomputeLocked() {
	n := len(b.members) + 1
	total := b.totalLocked()
	var share float64
	switch {
	case b.closed || !b.ready || b.lost || b.joiningLocked():
		share = 0
	case total == 0:
		share = math.Inf(1)
	default:
		share = total / float64(n)
	}
	if share == b.share {
		return
	}
	b.share = share
	b.p.set(share, burstFor(share))
	b.log.Debug().Float64(logShare, share).Int(logMembers, n).Float64(logTotal, total).Msg("budget share changed")
}

// burstFor is a member's token bucket size: burstWindow of its share, and
// 2 from 10 requests per second so that a late timer is caught up on.
func burstFor(share float64) float64 {
	b := math.Floor(share * burstWindow.Seconds())
	if share >= 10 {
		b = max(b, 2)
	}
	return max(b, 1)
}

// heartbeatLoop renews our key every heartbeat, and at once when asked.
// It stops when stop is closed, never in the middle of a heartbeat, so
// that Close knows the revision of our key's last write.
func (b *Budget) heartbeatLoop(stop <-chan struct{}) {
	t := time.NewTicker(b.o.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		case <-b.ack:
		}
		b.heartbeat(context.Background())
	}
}

// heartbeat writes our key if it is still ours (compare-and-set on its
// revision), else re-creates it. After a success the pacer may grant until
// the key could expire; the server's expiry counts from when it stored
// the write, which is after sent.
func (b *Budget) heartbeat(ctx context.Context) {
	b.mu.Lock()
	rev, lost, joining := b.ownRev, b.lost, b.joiningLocked()
	b.mu.Unlock()
	sent := time.Now()
	hctx, cancel := context.WithTimeout(ctx, b.o.Heartbeat)
	defer cancel()
	var err error
	if !lost {
		var ack *jetstream.PubAck
		ack, err = b.js.Publish(hctx, b.subject, b.value(joining),
			jetstream.WithMsgTTL(b.ttl), jetstream.WithExpectLastSequencePerSubject(rev))
		if err == nil {
			b.renewed(ack.Sequence, sent, false)
			return
		}
		if !wrongLastSequence(err) {
			b.logFailure(err, "budget heartbeat failed")
			return
		}
		b.mu.Lock()
		b.lost = true
		b.recomputeLocked()
		b.mu.Unlock()
	}
	newRev, err := b.kv.Create(hctx, b.key, b.value(true), jetstream.KeyTTL(b.ttl))
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			err = fmt.Errorf("%w: %w", err, ErrWorkerIDInUse)
		}
		b.logFailure(err, "re-creating budget key failed")
		return
	}
	b.log.Warn().Msg("budget key re-created; waiting for the members to acknowledge it")
	b.renewed(newRev, sent, true)
}

// renewed records a successful write of our key.
func (b *Budget) renewed(rev uint64, sent time.Time, created bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ownRev = rev
	if created {
		b.joinRev, b.lost = rev, false
	}
	b.p.setValidUntil(sent.Add(b.ttl - b.o.Heartbeat/2))
	b.recomputeLocked()
}

// logFailure logs a heartbeat error at most once per heartbeat interval.
func (b *Budget) logFailure(err error, msg string) {
	b.mu.Lock()
	now := time.Now()
	quiet := now.Sub(b.logged) < b.ttl
	if !quiet {
		b.logged = now
	}
	b.mu.Unlock()
	if !quiet {
		b.log.Warn().Err(err).Msg(msg)
	}
}

// wrongLastSequence reports a compare-and-set conflict on a publish
// (10071 on R1 streams, 10164 on replicated ones).
func wrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// deleteOwn deletes our key, if it is still ours, so the others count us
// out at once.
func (b *Budget) deleteOwn(ctx context.Context) error {
	b.mu.Lock()
	rev := b.ownRev
	b.mu.Unlock()
	err := b.kv.Delete(ctx, b.key, jetstream.LastRevision(rev))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil // expired, or re-created by another process with our id
	}
	return err
}

// Wait blocks until this member may send one request, ctx ends (its error
// is returned) or the Budget is closed (ErrClosed). It satisfies
// pam.Limiter.
func (b *Budget) Wait(ctx context.Context) error { return b.p.wait(ctx) }

// Share is this member's current rate in requests per second: +Inf for an
// unlimited budget, 0 while it is joining, has lost its key, cannot renew it
// or is closed.
func (b *Budget) Share() float64 { return b.p.effective() }

// Members is the number of live members this member counts, itself
// included.
func (b *Budget) Members() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.members) + 1
}

// Total is the budget's total in force, in requests per second (0 =
// unlimited): the KV's if set (SetTotal), else BudgetOptions.Total.
func (b *Budget) Total() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.totalLocked()
}

// Close leaves the budget: it stops granting (pending and later Waits get
// ErrClosed), then deletes this member's key so the others' shares grow at
// once. It is idempotent; only the first call's error is meaningful.
func (b *Budget) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.recomputeLocked()
	b.mu.Unlock()
	b.p.close()
	close(b.stopHB)
	<-b.hbDone
	err := b.deleteOwn(ctx)
	b.cancel()
	<-b.watchDone
	if err != nil {
		return fmt.Errorf("leave budget %q: delete key %s: %w", b.o.Name, b.key, err)
	}
	b.log.Info().Msg("left budget")
	return nil
}

// SetTotal sets budget name's total to total requests per second (0 =
// unlimited) for every member, overriding their BudgetOptions.Total; the
// run's --rate is written this way. Members apply it within milliseconds.
// It creates WorkersBucket if needed. ClearTotal undoes it.
func SetTotal(ctx context.Context, js jetstream.JetStream, name string, total float64, replicas int) error {
	if !budgetNameRE.MatchString(name) {
		return fmt.Errorf("set budget total: name %q: must match %s", name, budgetNameRE)
	}
	if total < 0 || math.IsNaN(total) || math.IsInf(total, 0) {
		return fmt.Errorf("set budget %q total: %v: must be a finite number >= 0", name, total)
	}
	// The planner owns the bucket's configuration: it is created, or
	// updated, with the deployment's replicas, so that losing one node of a
	// cluster does not stop every worker's heartbeat.
	kv, err := js.CreateOrUpdateKeyValue(ctx, workersBucketConfig(max(1, replicas)))
	if err != nil {
		return fmt.Errorf("set budget %q total: %w", name, err)
	}
	if _, err := kv.Put(ctx, name+"."+TotalKey, []byte(strconv.FormatFloat(total, 'g', -1, 64))); err != nil {
		return fmt.Errorf("set budget %q total: %w", name, err)
	}
	return nil
}

// ClearTotal removes budget name's total from the KV, so each member goes
// back to its BudgetOptions.Total. Removing an absent total is not an error.
func ClearTotal(ctx context.Context, js jetstream.JetStream, name string) error {
	if !budgetNameRE.MatchString(name) {
		return fmt.Errorf("clear budget total: name %q: must match %s", name, budgetNameRE)
	}
	kv, err := js.KeyValue(ctx, WorkersBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("clear budget %q total: %w", name, err)
	}
	if err := kv.Delete(ctx, name+"."+TotalKey); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("clear budget %q total: %w", name, err)
	}
	return nil
}
