// Package worker applies safeperm jobs: it consumes them from the durable
// JetStream consumer, runs each through the Executor with a bounded number at
// once, publishes exactly one result per job and acks, naks with a delay, or
// dead-letters and terminates, depending on what the PVWA answered.
//
// The one place that maps an outcome to what happens to the message is
// settle; everything else only computes outcomes.
package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/safeperm/safeperm/internal/jobs"
)

// Log field names.
const (
	logRun       = "run"
	logSafe      = "safe"
	logStatus    = "status"
	logDelivery  = "delivery"
	logComponent = "component"
)

// Config tunes a Worker. The zero value of each field means its default.
type Config struct {
	// ID names the worker in results and logs (default host-pid).
	ID string
	// Concurrency is the most jobs worked on at once (default
	// DefaultConcurrency): a safety ceiling, not the pace. With
	// RequestLimit set, the worker holds about as many jobs as keep the
	// PVWA requests it may send busy.
	Concurrency int
	// RequestLimit, when set, says how many PVWA requests the worker may
	// have in flight now: the adaptive limit of its PVWA client
	// (throttle.Adaptive.Limit). The worker then works on HoldFor(limit)
	// jobs at once, within Concurrency, so that the limit, not the number
	// of jobs, decides how hard the PVWA is asked, and no more jobs than
	// that wait in this worker while other workers could take them (at
	// the end of a run, jobs held by one worker are done at its pace
	// only). Without it, the worker works on Concurrency jobs at once.
	RequestLimit func() int
	// ShutdownTimeout is how long jobs in flight may run on after Run's
	// context ends before they are cancelled and handed back (default 60s).
	ShutdownTimeout time.Duration
	// Heartbeat is how often a job in flight tells JetStream it is alive
	// (default a third of the consumer's AckWait).
	Heartbeat time.Duration
	// MaxDeliver is the consumer's delivery limit; the last delivery records
	// a failure instead of handing the job back (default from the consumer).
	MaxDeliver int
	// Retry is the retry policy (default DefaultRetryPolicy).
	Retry RetryPolicy
	// Logger receives the worker's logs (default: none). Give it the
	// worker's identity (cmd/worker adds "worker" to its process logger,
	// the planner to each in-process worker's); the worker adds only
	// "component", so no key appears twice in a line.
	Logger zerolog.Logger
	// Observer is told about every job's outcome (optional; metrics).
	Observer Observer
}

// Observer is told what happens to jobs; the metrics implement it. Every
// JobStarted is followed by exactly one JobFinished or JobRetried (the job
// was handed back to JetStream).
type Observer interface {
	JobStarted()
	JobFinished(status jobs.Status, d time.Duration)
	JobRetried(delivery uint64)
}

type nopObserver struct{}

func (nopObserver) JobStarted()                            {}
func (nopObserver) JobFinished(jobs.Status, time.Duration) {}
func (nopObserver) JobRetried(uint64)                      {}

// Worker consumes and applies jobs. Create it with New; Run it once.
type Worker struct {
	cfg     Config
	exec    *Executor
	streams *jobs.Streams
	js      jetstream.JetStream
	log     zerolog.Logger

	inFlight atomic.Int64
	finished chan struct{} // a job ended: room for another, maybe
	// noisy rate-limits the warnings that come once per Safe (a failed
	// Safe, a job handed back): thousands of Safes failing alike would
	// otherwise flood the log; the results and the summary count them all.
	noisy zerolog.Sampler
}

// Log sampling of per-Safe warnings: at most noisyBurst per noisyPeriod.
const (
	noisyBurst  = 10
	noisyPeriod = 30 * time.Second
)

// DefaultConcurrency is Config.Concurrency's default. With three workers
// holding that many jobs each, the consumer's MaxAckPending (1024) still
// leaves room for the jobs they have pulled and not started.
const DefaultConcurrency = 256

// pullBuffer bounds the jobs pulled from JetStream and not started yet by a
// worker that follows a RequestLimit. They are this worker's until it
// starts them, so at the end of a run a worker with a small share of the
// PVWA would keep the others waiting on them; and they are not heartbeated
// until started, so they must start well within AckWait even with a slow
// PVWA. 16 costs the pipeline some of its speed with a no-op PVWA (more
// pull round trips), never a real PVWA's. A worker with a fixed
// Concurrency pulls that many ahead, at most 64.
const (
	pullBuffer      = 16
	pullBufferFixed = 64
)

// pullAhead is how many jobs Run keeps pulled ahead.
func (w *Worker) pullAhead() int {
	if w.cfg.RequestLimit != nil {
		return min(w.cfg.Concurrency, pullBuffer)
	}
	return min(w.cfg.Concurrency, pullBufferFixed)
}

// HoldFor is the number of jobs a worker works on at once when its PVWA
// client may have limit requests in flight: each job has at most one
// request in flight, so limit jobs keep it busy; as many again wait for a
// slot (so that a freed slot is taken at once) or are between requests
// (reading an answer, publishing a result, sleeping before a retry).
func HoldFor(limit int) int { return 2*max(limit, 1) + 4 }

// New returns a worker applying jobs from streams through pvwa; results and
// dead letters are published through js.
func New(ctx context.Context, cfg Config, pvwa PVWA, js jetstream.JetStream, streams *jobs.Streams) (*Worker, error) {
	if cfg.ID == "" {
		host, _ := os.Hostname()
		cfg.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 60 * time.Second
	}
	if cfg.Retry.Attempts == 0 {
		cfg.Retry = DefaultRetryPolicy()
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.Heartbeat <= 0 || cfg.MaxDeliver <= 0 {
		info, err := streams.Workers.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("read consumer settings: %w", err)
		}
		if cfg.Heartbeat <= 0 {
			cfg.Heartbeat = max(info.Config.AckWait/3, 100*time.Millisecond)
		}
		if cfg.MaxDeliver <= 0 {
			cfg.MaxDeliver = info.Config.MaxDeliver
		}
	}
	return &Worker{
		cfg:      cfg,
		exec:     &Executor{PVWA: pvwa, Retry: cfg.Retry, Intents: intentsOf(streams)},
		streams:  streams,
		js:       js,
		log:      cfg.Logger.With().Str(logComponent, "worker").Logger(),
		finished: make(chan struct{}, 1),
		noisy:    &zerolog.BurstSampler{Burst: noisyBurst, Period: noisyPeriod},
	}, nil
}

// hold is the number of jobs to work on at once now.
func (w *Worker) hold() int {
	if w.cfg.RequestLimit == nil {
		return w.cfg.Concurrency
	}
	return min(HoldFor(w.cfg.RequestLimit()), w.cfg.Concurrency)
}

// waitRoom waits until fewer than hold jobs are in flight, or ctx ends. A
// job's end wakes it; so does a tick, for a limit that grew meanwhile.
func (w *Worker) waitRoom(ctx context.Context, tick <-chan time.Time) {
	for int(w.inFlight.Load()) >= w.hold() {
		select {
		case <-w.finished:
		case <-tick:
		case <-ctx.Done():
			return
		}
	}
}

// InFlight returns the number of jobs being worked on now.
func (w *Worker) InFlight() int { return int(w.inFlight.Load()) }

// Run consumes jobs until ctx ends, then shuts down in two phases: it stops
// taking jobs at once (buffered ones are handed back), lets jobs in flight
// finish for up to ShutdownTimeout, then cancels the rest, which are handed
// back too. It returns nil after a clean shutdown.
func (w *Worker) Run(ctx context.Context) error {
	// Short pull requests with frequent idle heartbeats: when the server
	// holding our pull request dies (a cluster node lost), the iterator
	// notices within seconds and pulls again from another node, instead
	// of waiting out the default 30 s expiry.
	it, err := w.streams.Workers.Messages(jetstream.PullMaxMessages(w.pullAhead()),
		jetstream.PullExpiry(10*time.Second), jetstream.PullHeartbeat(2*time.Second))
	if err != nil {
		return fmt.Errorf("consume jobs: %w", err)
	}
	// Jobs in flight outlive ctx by up to ShutdownTimeout.
	jobCtx, cancelJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelJobs()
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		w.log.Info().Int("in_flight", w.InFlight()).Dur("grace", w.cfg.ShutdownTimeout).Msg("stopping: no new jobs")
		it.Drain()
		t := time.NewTimer(w.cfg.ShutdownTimeout)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			w.log.Warn().Int("in_flight", w.InFlight()).Msg("shutdown timeout: handing back jobs in flight")
			cancelJobs()
		}
	}()

	// A job handed back while our pull request is still open at the server
	// comes straight back to it, and is handed back again, each time one
	// more delivery, until its deliveries run out and it is dead-lettered:
	// a job this worker never worked on would be reported failed. So the
	// jobs of a stopping worker are handed back only when the iterator is
	// closed, which it is once the server has seen the unsubscribe (Drain
	// flushes it) and everything it sent before has arrived.
	unsubscribed := make(chan struct{})
	var stopped []jetstream.Msg

	var g errgroup.Group
	g.SetLimit(w.cfg.Concurrency)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	w.log.Info().Int("concurrency", w.cfg.Concurrency).Bool("follows_request_limit", w.cfg.RequestLimit != nil).Msg("worker started")
	for {
		w.waitRoom(ctx, tick.C)
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				break
			}
			if ctx.Err() == nil {
				w.log.Warn().Err(err).Msg("fetching jobs")
			}
			continue
		}
		if ctx.Err() != nil {
			// Stopping: buffered jobs go back to the stream once the
			// iterator is closed (see unsubscribed).
			stopped = append(stopped, msg)
			continue
		}
		w.inFlight.Add(1) // counted from here, so waitRoom sees it at once
		g.Go(func() error {
			defer func() {
				w.inFlight.Add(-1)
				select {
				case w.finished <- struct{}{}:
				default:
				}
			}()
			w.handle(jobCtx, msg, unsubscribed)
			return nil
		})
	}
	close(unsubscribed)
	for _, msg := range stopped {
		_ = msg.Nak()
	}
	_ = g.Wait()
	close(done)
	w.log.Info().Msg("worker stopped")
	return nil
}

// handle works one message to its end: one result and one ack, nak or term.
// unsubscribed is closed when the iterator is: a job cut short by shutdown
// is handed back after that.
func (w *Worker) handle(ctx context.Context, msg jetstream.Msg, unsubscribed <-chan struct{}) {
	start := time.Now()
	meta, err := msg.Metadata()
	if err != nil {
		w.log.Error().Err(err).Msg("message without JetStream metadata")
		_ = msg.Term()
		return
	}
	job, err := jobs.DecodeJob(msg.Data())
	if err != nil {
		w.poison(ctx, msg, meta, err)
		return
	}
	log := w.log.With().Str(logRun, job.Run).Str(logSafe, job.Safe.Name).Uint64(logDelivery, meta.NumDelivered).Logger()
	w.cfg.Observer.JobStarted()

	stop := w.heartbeat(msg)
	res, attempts, err := w.execute(ctx, job, meta.NumDelivered)
	stop()

	switch {
	case err == nil:
	case ctx.Err() != nil:
		// Shutdown cut the job short: hand it back at once, untouched
		// deliveries aside.
		log.Info().Msg("handing back job cut short by shutdown")
		w.cfg.Observer.JobRetried(meta.NumDelivered)
		<-unsubscribed
		_ = msg.Nak()
		return
	case meta.NumDelivered >= uint64(w.cfg.MaxDeliver):
		log.Error().Err(err).Msg("job failed on its last delivery")
		res = failed(job, nil, fmt.Errorf("gave up after %d deliveries: %w", meta.NumDelivered, err))
		w.deadLetter(ctx, msg, res.Error)
	default:
		delay := w.cfg.Retry.Redeliver(meta.NumDelivered, err)
		sampled := log.Sample(w.noisy)
		sampled.Warn().Err(err).Dur("retry_in", delay).Msg("transient failure; job handed back")
		w.cfg.Observer.JobRetried(meta.NumDelivered)
		_ = msg.NakWithDelay(delay)
		return
	}
	res.Attempts = int(meta.NumDelivered)
	res.Worker = w.cfg.ID
	res.Time = time.Now().UTC()
	if err := w.publishResult(ctx, res); err != nil {
		// Without its result the job is not done: hand it back. The retry
		// re-reads the member, so nothing is written twice.
		log.Error().Err(err).Msg("publishing result failed; job handed back")
		w.cfg.Observer.JobRetried(meta.NumDelivered)
		_ = msg.NakWithDelay(w.cfg.Retry.Redeliver(meta.NumDelivered, err))
		return
	}
	if res.Status == jobs.StatusFailed && meta.NumDelivered >= uint64(w.cfg.MaxDeliver) {
		_ = msg.TermWithReason("failed: " + res.ErrorCode)
	} else if err := msg.Ack(); err != nil {
		log.Warn().Err(err).Msg("ack failed; the job may be redelivered and will find its work done")
	}
	ev := log.Debug()
	if res.Status == jobs.StatusFailed {
		sampled := log.Sample(w.noisy)
		ev = sampled.Warn().Str("error_code", res.ErrorCode).Str("error", res.Error)
	}
	ev.Str(logStatus, string(res.Status)).Int("attempts", attempts).Dur("took", time.Since(start)).Msg("job done")
	w.cfg.Observer.JobFinished(res.Status, time.Since(start))
}

// execute runs the executor and turns a panic into an error.
func (w *Worker) execute(ctx context.Context, job jobs.Job, delivery uint64) (res jobs.Result, attempts int, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return w.exec.ExecuteDelivery(ctx, job, delivery)
}

// intentsOf returns the streams' intent store, or nil (no intents).
func intentsOf(s *jobs.Streams) IntentStore {
	if s == nil || s.Intents == nil {
		return nil
	}
	return s.Intents
}

// heartbeat tells JetStream the job is alive until stop is called, so it is
// not redelivered while we work on it.
func (w *Worker) heartbeat(msg jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(w.cfg.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return func() { close(done) }
}

// publishResult publishes with a few retries; the result's Msg-ID makes the
// retries safe.
func (w *Worker) publishResult(ctx context.Context, res jobs.Result) error {
	var err error
	for i := 1; i <= 5; i++ {
		if _, err = jobs.PublishResult(ctx, w.js, res); err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff(i, 100*time.Millisecond, 2*time.Second)):
		}
	}
	return err
}

// poison dead-letters a message that is not a valid job and terminates it:
// retrying cannot fix it.
func (w *Worker) poison(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, err error) {
	reason := "malformed job: " + err.Error()
	w.log.Error().Str("subject", msg.Subject()).Uint64("stream_seq", meta.Sequence.Stream).Str("reason", reason).Msg("poison message dead-lettered")
	w.deadLetter(ctx, msg, reason)
	_ = msg.TermWithReason(truncate(reason, 200))
}

func (w *Worker) deadLetter(ctx context.Context, msg jetstream.Msg, reason string) {
	if err := jobs.DeadLetterMsg(ctx, w.js, msg, reason, w.cfg.ID); err != nil {
		w.log.Error().Err(err).Msg("dead-lettering failed")
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
