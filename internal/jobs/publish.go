package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// PublisherOptions tunes a Publisher. Zero fields take the defaults.
type PublisherOptions struct {
	// MaxPending bounds the jobs published but not yet acknowledged by
	// JetStream. Default 1024. Keep it at or below the JetStream context's
	// own async limit (jetstream.WithPublishAsyncMaxPending, default 4000).
	MaxPending int
	// AckTimeout is how long to wait for one job's ack before re-publishing
	// it with the same Msg-ID (which is harmless: JetStream drops the copy
	// if the first one arrived). Default 10s.
	AckTimeout time.Duration
	// MaxAttempts is how many times one job is tried on transient errors
	// (timeouts, no responders, reconnects) before the Publisher gives up.
	// Stream-full backpressure is not an error and never counts. Default 10.
	MaxAttempts int
}

// PublishStats counts what became of the jobs given to a Publisher. Every
// job published without error lands in exactly one counter.
type PublishStats struct {
	// Published: stored as a new message.
	Published int
	// Duplicates: JetStream reported the Msg-ID as already seen within the
	// Duplicates window (a re-planned job).
	Duplicates int
	// AlreadyPending: refused by the one-pending-job-per-subject limit
	// because a job for that Safe in that run is still queued.
	AlreadyPending int
	// Backpressure counts waits because the jobs stream was full
	// (MaxJobs). Informational: those jobs are in one of the counters above.
	Backpressure int
}

// Total returns Published + Duplicates + AlreadyPending: the jobs that are
// now (or were) in the stream.
func (s PublishStats) Total() int { return s.Published + s.Duplicates + s.AlreadyPending }

// PublishError says that one message could not be published even after
// retries: the planner must treat that job as not queued.
type PublishError struct {
	// Subject and MsgID identify the message (MsgID is "<run>/<safeKey>"
	// for jobs and results, "dlq/<seq>" for dead letters).
	Subject string
	MsgID   string
	// Err is the last error.
	Err error
}

// Error names the subject and Msg-ID and the cause.
func (e *PublishError) Error() string {
	return fmt.Sprintf("publish %s (msg-id %s): %v", e.Subject, e.MsgID, e.Err)
}

// Unwrap returns the cause, for errors.Is and errors.As.
func (e *PublishError) Unwrap() error { return e.Err }

// pending is one job awaiting its ack. fut is nil when the async attempt is
// over and the job must be re-published synchronously (lastErr says why).
type pending struct {
	fut     jetstream.PubAckFuture
	msg     *nats.Msg
	lastErr error
}

// Publisher publishes jobs asynchronously with bounded in-flight acks, as
// fast as JetStream accepts them, and accounts for every one: each job ends
// up counted in PublishStats or reported as a *PublishError. It is safe for
// concurrent use, but calls are serialized; one planner goroutine is the
// intended caller.
//
// Like bufio.Writer, once a job fails permanently (after MaxAttempts
// transient errors, or a non-transient error) the Publisher keeps the error:
// later PublishJob calls return it and Flush returns every failure.
type Publisher struct {
	js   jetstream.JetStream
	log  zerolog.Logger
	opts PublisherOptions

	mu       sync.Mutex
	ring     []pending
	head, n  int
	stats    PublishStats
	failures []error // first maxFailures failures
	nFailed  int
	timer    *time.Timer
	jobs     jetstream.Stream // for the already-pending lookup, opened lazily
}

const maxFailures = 20

// NewPublisher returns a Publisher over js. Its background work happens in
// the caller's PublishJob and Flush calls: there is no goroutine to stop.
func NewPublisher(js jetstream.JetStream, log zerolog.Logger, opts PublisherOptions) *Publisher {
	if opts.MaxPending <= 0 {
		opts.MaxPending = 1024
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = 10 * time.Second
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 10
	}
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &Publisher{
		js:    js,
		log:   log.With().Str("component", "publisher").Logger(),
		opts:  opts,
		ring:  make([]pending, opts.MaxPending),
		timer: t,
	}
}

// PublishJob validates j and publishes it to JobSubject with Msg-ID
// MsgID(run, safeKey), without waiting for its ack unless MaxPending acks
// are outstanding (then it waits for the oldest). A full jobs stream makes
// it wait and retry (backpressure) until ctx ends. It returns an error for
// an invalid job (wrapping ErrMalformed), when ctx ends, or when this or an
// earlier job failed permanently (the first such *PublishError); j is
// queued only when it returns nil. Call Flush at the end to wait for the
// remaining acks.
func (p *Publisher) PublishJob(ctx context.Context, j Job) error {
	data, err := j.Encode()
	if err != nil {
		return err
	}
	key := j.Key()
	msg := &nats.Msg{
		Subject: JobSubject(j.Run, key),
		Data:    data,
		Header:  nats.Header{jetstream.MsgIDHeader: []string{MsgID(j.Run, key)}},
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.nFailed > 0 {
		return p.failures[0]
	}
	if p.n == len(p.ring) {
		if err := p.resolveOldest(ctx); err != nil {
			return err
		}
		if p.nFailed > 0 {
			return p.failures[0]
		}
	}
	e := pending{msg: msg}
	if fut, err := p.js.PublishMsgAsync(msg); err != nil {
		e.lastErr = err // resolved synchronously later
	} else {
		e.fut = fut
	}
	p.ring[(p.head+p.n)%len(p.ring)] = e
	p.n++
	return nil
}

// Flush waits until every job given to PublishJob is acknowledged or has
// failed, and returns the cumulative stats since NewPublisher. The error
// joins every *PublishError (the first 20) or is ctx's error; after a ctx
// error the unresolved jobs stay pending and a later Flush picks them up.
func (p *Publisher) Flush(ctx context.Context) (PublishStats, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.n > 0 {
		if err := p.resolveOldest(ctx); err != nil {
			return p.stats, err
		}
	}
	return p.stats, p.failureErr()
}

// Stats returns the cumulative counts so far (jobs still awaiting their ack
// are not counted yet).
func (p *Publisher) Stats() PublishStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Pending returns how many published jobs still await their ack.
func (p *Publisher) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func (p *Publisher) failureErr() error {
	if p.nFailed == 0 {
		return nil
	}
	errs := p.failures
	if p.nFailed > len(errs) {
		errs = append(errs[:len(errs):len(errs)], fmt.Errorf("and %d more failed jobs", p.nFailed-len(errs)))
	}
	return fmt.Errorf("%d jobs not published: %w", p.nFailed, errors.Join(errs...))
}

// resolveOldest waits for the oldest pending job's outcome and removes it
// from the ring. It returns only ctx errors; job failures are recorded.
// Lock held.
func (p *Publisher) resolveOldest(ctx context.Context) error {
	e := &p.ring[p.head]
	if e.fut != nil {
		var (
			ack *jetstream.PubAck
			err error
		)
		select { // fast path: the ack is usually there already
		case ack = <-e.fut.Ok():
		case err = <-e.fut.Err():
		default:
			p.timer.Reset(p.opts.AckTimeout)
			select {
			case ack = <-e.fut.Ok():
			case err = <-e.fut.Err():
			case <-p.timer.C:
				err = jetstream.ErrAsyncPublishTimeout
			case <-ctx.Done():
				p.timer.Stop()
				return ctx.Err()
			}
			p.timer.Stop()
		}
		if err == nil {
			p.count(ack)
			p.pop()
			return nil
		}
		e.fut, e.lastErr = nil, err
	}
	if err := p.republish(ctx, e.msg, e.lastErr); err != nil {
		if ctx.Err() != nil {
			return ctx.Err() // stays pending: e.fut is nil, so the next try republishes
		}
		p.fail(&PublishError{Subject: e.msg.Subject, MsgID: e.msg.Header.Get(jetstream.MsgIDHeader), Err: err})
	}
	p.pop()
	return nil
}

func (p *Publisher) pop() {
	p.ring[p.head] = pending{}
	p.head = (p.head + 1) % len(p.ring)
	p.n--
}

func (p *Publisher) count(ack *jetstream.PubAck) {
	if ack.Duplicate {
		p.stats.Duplicates++
	} else {
		p.stats.Published++
	}
}

func (p *Publisher) fail(err *PublishError) {
	p.nFailed++
	if len(p.failures) < maxFailures {
		p.failures = append(p.failures, err)
	}
	p.log.Error().Err(err).Msg("job not published")
}

// republish handles a failed publish of msg: it tells "stream full"
// (backpressure: wait and retry, unbounded) from "job already pending"
// (done), retries transient errors up to MaxAttempts with the same Msg-ID,
// and gives up on anything else. Lock held.
func (p *Publisher) republish(ctx context.Context, msg *nats.Msg, err error) error {
	attempts := 1
	retryBo := newBackoff(100*time.Millisecond, 5*time.Second)
	fullBo := newBackoff(20*time.Millisecond, time.Second)
	for {
		switch {
		case apiCode(err) == errCodeStoreFailed:
			// Either the stream is full or this subject already holds a
			// pending job; both come back as 10077 with only the text to
			// tell them apart, so ask the stream instead of parsing it.
			if pending, lerr := p.subjectPending(ctx, msg.Subject); lerr == nil && pending {
				p.stats.AlreadyPending++
				return nil
			}
			p.stats.Backpressure++
			if p.stats.Backpressure%1000 == 1 {
				p.log.Debug().Int("waits", p.stats.Backpressure).Msg("jobs stream full, waiting")
			}
			if serr := sleep(ctx, fullBo.next()); serr != nil {
				return serr
			}
		case transient(err):
			if attempts >= p.opts.MaxAttempts {
				return fmt.Errorf("giving up after %d attempts: %w", attempts, err)
			}
			attempts++
			p.log.Warn().Err(err).Str("subject", msg.Subject).Int("attempt", attempts).Msg("retrying job publish")
			if serr := sleep(ctx, retryBo.next()); serr != nil {
				return serr
			}
		default:
			return err
		}
		actx, cancel := context.WithTimeout(ctx, p.opts.AckTimeout)
		var ack *jetstream.PubAck
		ack, err = p.js.PublishMsg(actx, msg)
		cancel()
		if err == nil {
			p.count(ack)
			return nil
		}
		if apiCode(err) != errCodeStoreFailed {
			fullBo.reset()
		}
	}
}

// subjectPending reports whether the jobs stream holds a message on subj.
func (p *Publisher) subjectPending(ctx context.Context, subj string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.AckTimeout)
	defer cancel()
	if p.jobs == nil {
		st, err := p.js.Stream(ctx, JobsStream)
		if err != nil {
			return false, err
		}
		p.jobs = st
	}
	_, err := p.jobs.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	return err == nil, err
}

// PublishResult publishes r to ResultSubject with Msg-ID MsgID(run,
// safeKey) and waits for the ack, retrying transient errors (same Msg-ID, up
// to 10 attempts of 5s each) until ctx ends. dup is true when JetStream
// already had a result for this job within the Duplicates window: the job
// already reported (e.g. it was redelivered, or the dead-letter mover got
// there first) and r was dropped. Invalid results return an error wrapping
// ErrMalformed. Safe for concurrent use.
func PublishResult(ctx context.Context, js jetstream.JetStream, r Result) (dup bool, err error) {
	data, err := r.Encode()
	if err != nil {
		return false, err
	}
	id := r.MsgID()
	msg := &nats.Msg{Subject: r.Subject(), Data: data, Header: nats.Header{jetstream.MsgIDHeader: []string{id}}}
	var ack *jetstream.PubAck
	err = retry(ctx, "publish result "+id, 5*time.Second, 10, func(ctx context.Context) error {
		var err error
		ack, err = js.PublishMsg(ctx, msg)
		return err
	})
	if err != nil {
		return false, &PublishError{Subject: msg.Subject, MsgID: id, Err: err}
	}
	return ack.Duplicate, nil
}
