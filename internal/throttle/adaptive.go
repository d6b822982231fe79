package throttle

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Reasons passed to AdaptiveOptions.OnThrottle.
const (
	// ReasonTooMany is a refusal for load: a 429 Too Many Requests or a 503
	// Service Unavailable answer without Retry-After.
	ReasonTooMany = "429"
	// ReasonRetryAfter is such a refusal with Retry-After: new requests
	// pause until then.
	ReasonRetryAfter = "retry-after"
	// ReasonServerError is a backoff because server errors (5xx other than
	// 503 and 504) became a large share of the answers (ErrorBackoff). A
	// single 5xx is an error to retry, not a signal.
	ReasonServerError = "5xx"
	// ReasonLatency is a decrease because the requests queued at the server:
	// the mean round trip of a round rose above Target times the unloaded
	// round trip.
	ReasonLatency = "latency"
	// ReasonTimeout is a request that timed out (the client's Timeout, a
	// network timeout or a 504; a caller's cancellation is not a signal).
	ReasonTimeout = "timeout"
)

// Defaults of AdaptiveOptions.
const (
	DefaultInitialLimit  = 2
	DefaultMinLimit      = 1
	DefaultMaxLimit      = 256
	DefaultTarget        = 1.1
	DefaultBackoff       = 0.7
	DefaultProbeAfter    = 64
	DefaultProbeInterval = 10 * time.Second
	DefaultErrorBackoff  = 0.25
	DefaultMaxRetryAfter = 5 * time.Minute
	DefaultDrainInterval = 30 * time.Second
)

// Limiter is what AdaptiveOptions.Limiter (and pam.Config.Limiter) wait on
// before each request; *Budget and *rate.Limiter satisfy it.
type Limiter interface {
	Wait(ctx context.Context) error
}

// AdaptiveOptions configure NewAdaptive. Zero fields take the defaults.
type AdaptiveOptions struct {
	// Initial, Min and Max bound the concurrency limit: the number of
	// requests through the middleware that may be in flight at once
	// (defaults DefaultInitialLimit, DefaultMinLimit, DefaultMaxLimit;
	// Min <= Initial <= Max). Slow start doubles the limit every round
	// trip from Initial; a small Initial keeps the first round trips of
	// clients that start together free of queueing, which is when they
	// measure the server's unloaded latency.
	Initial, Min, Max int
	// Limiter, when set, is waited on before each request, after a slot is
	// taken (so requests cannot pile up behind slots and then burst): the
	// shared *Budget.
	Limiter Limiter
	// OnLimit, when set, is called with the new limit after every change,
	// in order (the last call has the current limit); for a gauge. It may
	// call Limit and InFlight. It must be fast.
	OnLimit func(limit int)
	// OnThrottle, when set, is called for every signal that lowered (or
	// would have lowered) the limit or paused requests, with one of the
	// Reason* constants; for a counter. It must be safe for concurrent use
	// and fast.
	OnThrottle func(reason string)
	// Logger receives limit changes (debug), Retry-After pauses (info) and
	// backoffs for server errors (warn); the zero value logs nothing.
	Logger zerolog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Rand, when set, draws the jitter of drains, probes and pauses in
	// [0,1) (default math/rand/v2's); it must be safe for concurrent use.
	Rand func() float64

	// Target is the round trip aimed at, as a multiple of the unloaded
	// round trip: the queue the limit keeps at the server, shared by every
	// client that runs this loop, is about Target-1 service times (default
	// DefaultTarget; > 1).
	Target float64
	// Backoff is the multiplicative decrease on a timeout or a 504, in
	// (0,1) (default DefaultBackoff).
	Backoff float64
	// After a refusal the limit stays just below the limit that was
	// refused (the ceiling), and tries one more (a probe) after at least
	// ProbeAfter successes (and a round trip's worth) and a wait:
	// ProbeInterval at first, twice as long after each probe that is
	// refused (up to four times ProbeInterval), half as long after one
	// that held (defaults DefaultProbeAfter and DefaultProbeInterval).
	// Three probes in a row that held forget the ceiling. The probes set
	// the throttled fraction once adapted: one refusal each, or a few
	// when several clients share the server (a probe that takes the slot
	// of another client is answered by refusals to that one).
	ProbeAfter    int
	ProbeInterval time.Duration
	// ErrorBackoff is the share of server errors among the answers (over
	// about the last 50) above which the limit backs off, in proportion,
	// and a warning is logged (default DefaultErrorBackoff).
	ErrorBackoff float64
	// MaxRetryAfter caps the pause a Retry-After header can impose
	// (default DefaultMaxRetryAfter).
	MaxRetryAfter time.Duration
	// RetryRefused, when positive, sends a request without a body that
	// the server refused at once for load (a 429 or 503 without
	// Retry-After) again, up to that many times, after a pause (a round
	// trip, doubling up to a second), before its answer is returned: for a
	// caller whose own retry waits long (the planner's Safe listing backs
	// off half a second and more), a refusal that says only "not now" is
	// best retried in the limiter, which knows when a slot may be free. 0
	// returns every answer as it is.
	RetryRefused int
	// DrainInterval is how often, at most, the limit is halved for one
	// round trip so that the queue at the server empties and the unloaded
	// round trip is measured again (default DefaultDrainInterval, with
	// ±20% jitter; the first drain comes a few rounds after slow start
	// ends on latency). A drain is skipped when a round saw no queue
	// since the last.
	DrainInterval time.Duration
}

func (o *AdaptiveOptions) defaults() {
	if o.Min <= 0 {
		o.Min = DefaultMinLimit
	}
	if o.Max <= 0 {
		o.Max = max(DefaultMaxLimit, o.Min)
	}
	if o.Max < o.Min {
		o.Max = o.Min
	}
	if o.Initial <= 0 {
		o.Initial = DefaultInitialLimit
	}
	o.Initial = min(max(o.Initial, o.Min), o.Max)
	if o.Target <= 1 {
		o.Target = DefaultTarget
	}
	if o.Backoff <= 0 || o.Backoff >= 1 {
		o.Backoff = DefaultBackoff
	}
	if o.ProbeAfter <= 0 {
		o.ProbeAfter = DefaultProbeAfter
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = DefaultProbeInterval
	}
	if o.ErrorBackoff <= 0 || o.ErrorBackoff >= 1 {
		o.ErrorBackoff = DefaultErrorBackoff
	}
	if o.MaxRetryAfter <= 0 {
		o.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if o.DrainInterval <= 0 {
		o.DrainInterval = DefaultDrainInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
}

// Adaptive limits the requests of one client to the PVWA in flight at once,
// finding the server's capacity on its own, and honours Retry-After; it is
// applied as http.RoundTripper middleware by Wrap. See the package
// documentation for the control loop. All methods are safe for concurrent
// use; one Adaptive may wrap several transports, which then share its
// limit.
type Adaptive struct {
	o   AdaptiveOptions
	log zerolog.Logger

	hookMu sync.Mutex // orders OnLimit calls

	mu          sync.Mutex
	limit       float64 // the control variable; Limit is its floor
	held        int     // slots taken and not released
	active      int     // requests sent, headers not yet received
	waiters     *list.List
	pausedUntil time.Time

	startup  bool      // slow start: grows per success until a signal
	lastDecr time.Time // answers to requests sent before it cannot decrease
	round    round

	floor      time.Duration // least sampled round trip
	base       time.Duration // unloaded mean round trip (0: not yet known)
	ssSum      time.Duration // sampled round trips of slow start's rounds
	ssN        int
	baseSeen   time.Time // last round that saw no queue
	stuck      int       // rounds at the minimum with a queue
	stuckSince time.Time

	ceiling     float64 // limit at the last refusal, 0 = none
	lastRefused time.Time
	probing     bool          // the limit is above ceiling-1 by a probe
	probeWait   time.Duration // between probes
	probeAt     time.Time     // the last probe or refusal
	probeOK     int           // probes in a row that held
	successes   int           // since the last probe or refusal
	rate        rateWindow
	starving    int // refusals in a row with nothing of ours at the server

	errRate  float64 // average of "server error" over the recent answers
	answers  int     // answers seen, for errMinAnswers
	erroring bool    // backing off for errors
	lastWarn time.Time

	drainAt    time.Time // earliest start of the next drain; zero = none yet
	firstDrain int       // rounds until the first drain (0: none pending)
	mustDrain  bool      // the next drain is the first: not skipped
	draining   bool
	drainStart time.Time
	drainSum   time.Duration // sampled round trips of requests sent since
	drainN     int
	restore    float64 // limit to go back to after the drain
	drainedAt  time.Time
}

// NewAdaptive returns an Adaptive at o.Initial, in slow start.
func NewAdaptive(o AdaptiveOptions) *Adaptive {
	o.defaults()
	now := o.Now()
	return &Adaptive{
		o:         o,
		log:       o.Logger.With().Str(logComponent, "adaptive").Logger(),
		limit:     float64(o.Initial),
		waiters:   list.New(),
		startup:   true,
		round:     round{start: now},
		probeWait: o.ProbeInterval,
	}
}

// Limit is the current concurrency limit.
func (a *Adaptive) Limit() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.effLocked()
}

// effLocked is the limit in whole requests.
func (a *Adaptive) effLocked() int {
	return min(max(int(a.limit), a.o.Min), a.o.Max)
}

// InFlight is the number of requests sent and waiting for their answer's
// headers (not counting those waiting for the Limiter or a pause).
func (a *Adaptive) InFlight() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.active
}

// PausedUntil is the end of the current Retry-After pause (zero or in the
// past when there is none).
func (a *Adaptive) PausedUntil() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pausedUntil
}

// Wrap returns next (http.DefaultTransport when nil) behind the limit: each
// request waits for the pause to end, for a slot, for the Limiter, then
// goes; its slot is released, exactly once, when next.RoundTrip returns
// (the answer's headers arrived, or an error). Bodies are neither read nor
// buffered. The answer is returned as it is: retrying is the caller's job.
func (a *Adaptive) Wrap(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &adaptiveTransport{a: a, next: next}
}

type adaptiveTransport struct {
	a    *Adaptive
	next http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t *adaptiveTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	a, ctx := t.a, req.Context()
	for retries := 0; ; retries++ {
		out, err := a.before(ctx)
		if err != nil {
			if req.Body != nil {
				_ = req.Body.Close() // RoundTrip must close it, even on error
			}
			return nil, err
		}
		out.sample = latencySample(req)
		resp, err := t.next.RoundTrip(req)
		a.after(ctx, out, resp, err)
		if retries >= a.o.RetryRefused || !refusedNow(resp, err) || (req.Body != nil && req.Body != http.NoBody) {
			return resp, err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		if err := a.retryPause(ctx, retries); err != nil {
			return nil, err
		}
	}
}

// refusedNow reports an answer that refused the request for load without
// saying when to come back.
func refusedNow(resp *http.Response, err error) bool {
	return err == nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) &&
		strings.TrimSpace(resp.Header.Get("Retry-After")) == ""
}

// retryPause waits before RetryRefused sends a refused request again: a
// round trip at first, twice as long at each retry, up to a second, with
// jitter. A server that keeps refusing is full of other requests; trying
// again at once would only add refusals.
func (a *Adaptive) retryPause(ctx context.Context, retries int) error {
	a.mu.Lock()
	d := min(max(a.base, a.floor, time.Millisecond)<<min(retries, 10), time.Second)
	d = time.Duration((0.5 + a.o.Rand()) * float64(d))
	a.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// latencySample reports whether req's round trip feeds the latency signal.
// Only reads of one object do: a logon or token request (often answered by
// another component, much faster or slower) or a page of a list (a page of
// 1,000 Safes costs the PVWA far more than one member) would set a
// baseline the member requests can never meet, and writes cost more than
// reads on the PVWA, so mixing them would look like queueing whenever the
// share of changed Safes rises. Every job reads, so reads are never scarce.
func latencySample(req *http.Request) bool {
	if req.Method != http.MethodGet {
		return false
	}
	p := strings.ToLower(strings.TrimSuffix(req.URL.Path, "/"))
	return !strings.Contains(p, "/auth/") && !strings.Contains(p, "/oauth2/") &&
		!strings.HasSuffix(p, "/safes") && !strings.HasSuffix(p, "/members")
}

// outbound is a request on its way: when it was sent, with how many of
// ours in flight, and whether its round trip is a latency sample.
type outbound struct {
	sent     time.Time
	inFlight int
	sample   bool
}

// before takes a slot and waits for the pause and the Limiter. On error no
// slot is held.
func (a *Adaptive) before(ctx context.Context) (outbound, error) {
	if err := a.waitPause(ctx); err != nil {
		return outbound{}, err
	}
	if err := a.acquire(ctx); err != nil {
		return outbound{}, err
	}
	if a.o.Limiter != nil {
		if err := a.o.Limiter.Wait(ctx); err != nil {
			a.release()
			return outbound{}, err
		}
	}
	// A pause may have begun while waiting; the Limiter's grant is then
	// used when it ends.
	if err := a.waitPause(ctx); err != nil {
		a.release()
		return outbound{}, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.active++
	a.round.peakActive = max(a.round.peakActive, a.active)
	return outbound{sent: a.o.Now(), inFlight: a.active}, nil
}

// waitPause blocks until no Retry-After pause is in force.
func (a *Adaptive) waitPause(ctx context.Context) error {
	for {
		a.mu.Lock()
		d := a.pausedUntil.Sub(a.o.Now())
		a.mu.Unlock()
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// acquire takes a slot, first come first served.
func (a *Adaptive) acquire(ctx context.Context) error {
	a.mu.Lock()
	if a.held < a.effLocked() && a.waiters.Len() == 0 {
		a.held++
		a.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	el := a.waiters.PushBack(ch)
	a.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		a.mu.Lock()
		defer a.mu.Unlock()
		select {
		case <-ch: // granted just now: give it back
			a.held--
			a.grantLocked()
		default:
			a.waiters.Remove(el)
		}
		return ctx.Err()
	}
}

// grantLocked hands free slots to waiters in order.
func (a *Adaptive) grantLocked() {
	for a.held < a.effLocked() && a.waiters.Len() > 0 {
		ch := a.waiters.Remove(a.waiters.Front()).(chan struct{})
		a.held++
		close(ch)
	}
}

// release gives back a slot whose request was not sent.
func (a *Adaptive) release() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.held--
	a.grantLocked()
}

// answer kinds
const (
	kindOK      = iota // any answer but those below, 4xx included
	kindError          // a 5xx other than 503 and 504: retry, not a signal
	kindRefused        // 429 or 503: the server refused for load
	kindTimeout        // timeout or 504
	kindNone           // no answer for a reason that says nothing (cancelled, refused connection)
)

// classify sorts an answer.
func classify(ctx context.Context, resp *http.Response, err error) int {
	switch {
	case err != nil:
		if isTimeout(ctx, err) {
			return kindTimeout
		}
		return kindNone
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		return kindRefused
	case resp.StatusCode == http.StatusGatewayTimeout:
		return kindTimeout
	case resp.StatusCode >= 500:
		return kindError
	}
	return kindOK
}

// event is what after decided under the lock, for the hooks and logs it
// calls after unlocking.
type event struct {
	reasons  []string
	pause    time.Duration
	newPause bool
	round    *round // ended by this answer
	roundQ   float64
	status   int
	old      int
	limit    int
	why      string
	warn     string
	info     string
}

// after releases the slot and adapts the limit to what the answer says.
func (a *Adaptive) after(ctx context.Context, out outbound, resp *http.Response, err error) {
	now := a.o.Now()
	kind := classify(ctx, resp, err)
	var ev event
	if kind == kindRefused {
		ev.status = resp.StatusCode
		ev.pause = min(retryAfter(resp.Header.Get("Retry-After"), now), a.o.MaxRetryAfter)
	}

	a.mu.Lock()
	activeBefore := a.active
	a.held--
	a.active--
	ev.old = a.effLocked()
	if kind != kindNone {
		a.answerLocked(now, out, kind, activeBefore, &ev)
	}
	if ev.pause > 0 {
		ev.newPause = !a.pausedUntil.After(now)
		if now.Add(ev.pause).After(a.pausedUntil) {
			a.pausedUntil = now.Add(ev.pause)
		}
	}
	ev.limit = a.effLocked()
	a.grantLocked()
	a.mu.Unlock()

	if a.o.OnThrottle != nil {
		for _, r := range ev.reasons {
			a.o.OnThrottle(r)
		}
	}
	if r := ev.round; r != nil && a.log.GetLevel() <= zerolog.TraceLevel {
		a.log.Trace().Float64("q", ev.roundQ).Int("samples", r.samples).Int("answers", r.answers).Int("drops", r.drops).
			Dur("mean", time.Duration(r.mean())).Int("peak", r.peakActive).Int("limit", ev.limit).Msg("round")
	}
	if ev.newPause {
		a.log.Info().Dur("pause", ev.pause).Int("status", ev.status).Msg("PVWA asked to retry later; pausing new requests")
	}
	if ev.warn != "" {
		a.log.Warn().Int("limit", ev.limit).Msg(ev.warn)
	}
	if ev.info != "" {
		a.log.Info().Int("limit", ev.limit).Msg(ev.info)
	}
	if ev.limit != ev.old {
		a.log.Debug().Int("limit", ev.limit).Int("was", ev.old).Str("why", ev.why).Msg("concurrency limit changed")
		a.notifyLimit()
	}
}

// notifyLimit calls OnLimit with the current limit; hookMu makes the last
// call carry the last value.
func (a *Adaptive) notifyLimit() {
	if a.o.OnLimit == nil {
		return
	}
	a.hookMu.Lock()
	defer a.hookMu.Unlock()
	a.o.OnLimit(a.Limit())
}

// isTimeout reports a request that timed out, as opposed to one its caller
// cancelled.
func isTimeout(ctx context.Context, err error) bool {
	if errors.Is(ctx.Err(), context.Canceled) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// retryAfter parses a Retry-After value, delay-seconds or an HTTP date,
// into a duration from now; 0 when absent, invalid or past.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, math.MaxInt64/int64(time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// String describes the limiter's state, for logs and debugging.
func (a *Adaptive) String() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return fmt.Sprintf("adaptive{limit=%d (%.2f) inflight=%d held=%d waiting=%d startup=%t ceiling=%.0f base=%s floor=%s errors=%.3f}",
		a.effLocked(), a.limit, a.active, a.held, a.waiters.Len(), a.startup, a.ceiling, a.base, a.floor, a.errRate)
}
