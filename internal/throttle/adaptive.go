package throttle

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"math"
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
	// ReasonTooMany is a 429 Too Many Requests answer.
	ReasonTooMany = "429"
	// ReasonServerError is a 5xx answer.
	ReasonServerError = "5xx"
	// ReasonLatency is a smoothed round trip above LatencyFactor times the
	// baseline (the least round trip seen lately).
	ReasonLatency = "latency"
	// ReasonTimeout is a request that timed out (the client's Timeout or a
	// network timeout; a caller's cancellation is not a signal).
	ReasonTimeout = "timeout"
)

// Defaults of AdaptiveOptions.
const (
	DefaultInitialLimit   = 8
	DefaultMinLimit       = 1
	DefaultMaxLimit       = 256
	DefaultBackoff        = 0.7
	DefaultLatencyFactor  = 2.0
	DefaultProbeAfter     = 256
	DefaultMaxRetryAfter  = 5 * time.Minute
	DefaultBaselineWindow = 30 * time.Second
	// minLatencySamples is how many successful round trips are needed
	// before latency can count as a throttle signal.
	minLatencySamples = 20
	// latencySlack is the least rise over the baseline that counts as a
	// latency signal, so that sub-millisecond noise on a fast server is not
	// mistaken for queueing.
	latencySlack = 10 * time.Millisecond
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
	// Min <= Initial <= Max).
	Initial, Min, Max int
	// Limiter, when set, is waited on before each request, after a slot is
	// taken (so requests cannot pile up behind slots and then burst): the
	// shared *Budget.
	Limiter Limiter
	// OnLimit, when set, is called with the new limit after every change,
	// in order (the last call has the current limit); for a gauge. It may
	// call Limit and InFlight. It must be fast.
	OnLimit func(limit int)
	// OnThrottle, when set, is called for every request that signalled
	// overload, with one of the Reason* constants; for a counter. It must
	// be safe for concurrent use and fast.
	OnThrottle func(reason string)
	// Logger receives limit changes (debug) and Retry-After pauses (info);
	// the zero value logs nothing.
	Logger zerolog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time

	// Backoff is the multiplicative decrease on overload, in (0,1)
	// (default DefaultBackoff).
	Backoff float64
	// LatencyFactor: a smoothed round trip above LatencyFactor times the
	// baseline counts as overload (default DefaultLatencyFactor; > 1).
	LatencyFactor float64
	// ProbeAfter is how many successes the limit stays just below the limit
	// that last caused overload before trying one more (default
	// DefaultProbeAfter). It sets the throttled fraction once adapted:
	// about one to three throttled calls per ProbeAfter successes.
	ProbeAfter int
	// MaxRetryAfter caps the pause a Retry-After header can impose
	// (default DefaultMaxRetryAfter).
	MaxRetryAfter time.Duration
	// BaselineWindow is how long a least round trip stays the latency
	// baseline (default DefaultBaselineWindow): the baseline is the least
	// round trip of the current and the previous window, so it follows a
	// server that became lastingly slower.
	BaselineWindow time.Duration
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
	if o.Backoff <= 0 || o.Backoff >= 1 {
		o.Backoff = DefaultBackoff
	}
	if o.LatencyFactor <= 1 {
		o.LatencyFactor = DefaultLatencyFactor
	}
	if o.ProbeAfter <= 0 {
		o.ProbeAfter = DefaultProbeAfter
	}
	if o.MaxRetryAfter <= 0 {
		o.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if o.BaselineWindow <= 0 {
		o.BaselineWindow = DefaultBaselineWindow
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Adaptive is an adaptive concurrency limit (AIMD) for the requests of one
// worker to the PVWA, with a shared Retry-After pause and an optional rate
// Limiter, applied as http.RoundTripper middleware by Wrap. All methods are
// safe for concurrent use; one Adaptive may wrap several transports, which
// then share its limit.
type Adaptive struct {
	o   AdaptiveOptions
	log zerolog.Logger

	hookMu sync.Mutex // orders OnLimit calls

	mu          sync.Mutex
	limit       int
	held        int        // slots taken and not released
	active      int        // requests sent, headers not yet received
	waiters     *list.List // of chan struct{}, FIFO
	successes   int        // since the last change of limit
	peakActive  int        // since the last change of limit
	ceiling     int        // limit that last caused overload; 0 = unknown
	probeGap    int        // successes per +1 at ceiling-1 and above
	lastDecr    time.Time  // requests sent before it cannot decrease again
	pausedUntil time.Time
	srtt        time.Duration // smoothed round trip of successes
	samples     int
	minCur      time.Duration // least round trip of this baseline window
	minPrev     time.Duration // of the previous one
	windowStart time.Time
}

// NewAdaptive returns an Adaptive at o.Initial.
func NewAdaptive(o AdaptiveOptions) *Adaptive {
	o.defaults()
	return &Adaptive{
		o:           o,
		log:         o.Logger.With().Str(logComponent, "adaptive").Logger(),
		limit:       o.Initial,
		waiters:     list.New(),
		windowStart: o.Now(),
	}
}

// Limit is the current concurrency limit.
func (a *Adaptive) Limit() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.limit
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
	if err := a.before(ctx); err != nil {
		if req.Body != nil {
			_ = req.Body.Close() // RoundTrip must close it, even on error
		}
		return nil, err
	}
	sent := a.o.Now()
	resp, err := t.next.RoundTrip(req)
	a.after(ctx, sent, resp, err, latencySample(req))
	return resp, err
}

// latencySample reports whether req's round trip feeds the latency signal.
// Only reads of the API do: a logon or token request (often answered by
// another component, much faster or slower) would set a baseline the
// member requests can never meet, and writes cost more than reads on the
// PVWA, so mixing them would look like queueing whenever the share of
// changed Safes rises. Every job reads, so reads are never scarce.
func latencySample(req *http.Request) bool {
	if req.Method != http.MethodGet {
		return false
	}
	p := strings.ToLower(req.URL.Path)
	return !strings.Contains(p, "/auth/") && !strings.Contains(p, "/oauth2/")
}

// before takes a slot and waits for the pause and the Limiter. On error no
// slot is held.
func (a *Adaptive) before(ctx context.Context) error {
	if err := a.waitPause(ctx); err != nil {
		return err
	}
	if err := a.acquire(ctx); err != nil {
		return err
	}
	if a.o.Limiter != nil {
		if err := a.o.Limiter.Wait(ctx); err != nil {
			a.release(false)
			return err
		}
	}
	// A pause may have begun while waiting; the Limiter's grant is then
	// used when it ends.
	if err := a.waitPause(ctx); err != nil {
		a.release(false)
		return err
	}
	a.mu.Lock()
	a.active++
	a.peakActive = max(a.peakActive, a.active)
	a.mu.Unlock()
	return nil
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
	if a.held < a.limit && a.waiters.Len() == 0 {
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
	for a.held < a.limit && a.waiters.Len() > 0 {
		ch := a.waiters.Remove(a.waiters.Front()).(chan struct{})
		a.held++
		close(ch)
	}
}

// release gives a slot back; sent says whether its request went out.
func (a *Adaptive) release(sent bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.held--
	if sent {
		a.active--
	}
	a.grantLocked()
}

// after releases the slot and adapts the limit to what the answer says.
func (a *Adaptive) after(ctx context.Context, sent time.Time, resp *http.Response, err error, sample bool) {
	now := a.o.Now()
	rtt := now.Sub(sent)
	reason := ""
	switch {
	case err != nil:
		if !isTimeout(ctx, err) {
			a.release(true)
			return // refused connection, caller's cancellation...: no signal
		}
		reason = ReasonTimeout
	case resp.StatusCode == http.StatusTooManyRequests:
		reason = ReasonTooMany
	case resp.StatusCode >= 500:
		reason = ReasonServerError
	}
	var pause time.Duration
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		pause = min(retryAfter(resp.Header.Get("Retry-After"), now), a.o.MaxRetryAfter)
	}

	a.mu.Lock()
	a.held--
	a.active--
	if reason == "" && sample {
		a.sampleLocked(now, rtt)
		base := a.baselineLocked()
		if a.samples >= minLatencySamples && a.srtt > max(time.Duration(a.o.LatencyFactor*float64(base)), base+latencySlack) {
			reason = ReasonLatency
		}
	}
	if pause > 0 && now.Add(pause).After(a.pausedUntil) {
		a.pausedUntil = now.Add(pause)
	}
	old := a.limit
	switch {
	case reason == "":
		a.increaseLocked()
	case sent.After(a.lastDecr):
		// At most one decrease per round trip: answers to requests sent
		// before the last decrease say nothing about the new limit.
		if a.ceiling > 0 && a.limit >= a.ceiling && a.limit > a.o.Min {
			// A probe above the last good limit failed: the capacity has
			// not grown, so step back to the limit that worked instead of
			// cutting by Backoff (which costs about a tenth of the
			// throughput on every probe). Another overload before the
			// next probe is a real drop and is cut by Backoff.
			a.ceiling = a.limit
			a.limit--
		} else {
			a.ceiling = a.limit
			a.limit = max(a.o.Min, int(math.Floor(float64(a.limit)*a.o.Backoff)))
		}
		a.probeGap = a.o.ProbeAfter
		a.successes, a.peakActive = 0, a.active
		a.lastDecr = now
	}
	limit := a.limit
	a.grantLocked()
	a.mu.Unlock()

	if reason != "" && a.o.OnThrottle != nil {
		a.o.OnThrottle(reason)
	}
	if pause > 0 {
		a.log.Info().Dur("pause", pause).Int("status", resp.StatusCode).Msg("PVWA asked to retry later; pausing new requests")
	}
	if limit != old {
		a.log.Debug().Int("limit", limit).Int("was", old).Str("reason", reason).Msg("concurrency limit changed")
		a.notifyLimit()
	}
}

// increaseLocked counts a success and adds 1 to the limit after a window
// of limit successes, if the limit was in use (at least half of it in
// flight at some point). At ceiling-1 and above, the limit that last
// caused overload, it waits probeGap successes instead, halving the gap at
// each step, then forgets the ceiling.
func (a *Adaptive) increaseLocked() {
	a.successes++
	need := a.limit
	probing := a.ceiling > 0 && a.limit >= a.ceiling-1
	if probing {
		need = max(a.probeGap, a.limit)
	}
	if a.successes < need || a.limit >= a.o.Max {
		return
	}
	used := a.peakActive*2 >= a.limit
	a.successes, a.peakActive = 0, a.active
	if !used {
		return
	}
	a.limit++
	if probing {
		a.probeGap /= 2
		if a.probeGap <= a.limit {
			a.ceiling = 0
		}
	}
}

// sampleLocked folds a successful round trip into the smoothed round trip
// and the baseline.
func (a *Adaptive) sampleLocked(now time.Time, rtt time.Duration) {
	rtt = max(rtt, time.Microsecond)
	a.samples++
	if a.srtt == 0 {
		a.srtt = rtt
	} else {
		// Smooth over about two windows (2×limit answers), so a pause of
		// the client (GC, CPU) is not mistaken for queueing at the server.
		a.srtt += (rtt - a.srtt) / time.Duration(min(64, max(8, 2*a.limit)))
	}
	if now.Sub(a.windowStart) >= a.o.BaselineWindow {
		a.minPrev, a.minCur, a.windowStart = a.minCur, 0, now
	}
	if a.minCur == 0 || rtt < a.minCur {
		a.minCur = rtt
	}
}

// baselineLocked is the least round trip of this and the last window.
func (a *Adaptive) baselineLocked() time.Duration {
	if a.minPrev == 0 {
		return a.minCur
	}
	return min(a.minCur, a.minPrev)
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
	return fmt.Sprintf("adaptive{limit=%d inflight=%d held=%d waiting=%d ceiling=%d srtt=%s baseline=%s}",
		a.limit, a.active, a.held, a.waiters.Len(), a.ceiling, a.srtt, a.baselineLocked())
}
