package worker

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/safeperm/safeperm/internal/pam"
)

// RetryPolicy says how often and how long a worker retries a transient
// failure itself before handing the job back to JetStream, and how long
// JetStream then waits before delivering it again.
type RetryPolicy struct {
	// Attempts is the number of tries inside one delivery (default 5).
	Attempts int
	// Base and Max bound the exponential backoff between tries
	// (defaults 50ms and 10s); each delay gets up to 50% jitter. A 5xx
	// is most often an error of that one request (the adaptive limiter
	// backs off by itself when errors become many), so the first retries
	// come soon: 50, 100, 200, 400 ms, plus jitter, before the job is
	// handed back to JetStream.
	Base, Max time.Duration
	// RedeliverBase and RedeliverMax bound the delay of NakWithDelay by
	// delivery number (defaults 2s and 2m).
	RedeliverBase, RedeliverMax time.Duration
	// MaxRetryAfter caps how long a Retry-After is honoured inside the
	// worker; a longer one hands the job back with that delay (default 30s).
	MaxRetryAfter time.Duration
}

// DefaultRetryPolicy returns the defaults documented on RetryPolicy.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{Attempts: 5, Base: 50 * time.Millisecond, Max: 10 * time.Second,
		RedeliverBase: 2 * time.Second, RedeliverMax: 2 * time.Minute, MaxRetryAfter: 30 * time.Second}
}

func (r RetryPolicy) attempts() int {
	if r.Attempts < 1 {
		return 1
	}
	return r.Attempts
}

// Delay is the wait before try attempt+1 after err: the server's Retry-After
// when it gave one, else exponential backoff with jitter.
func (r RetryPolicy) Delay(attempt int, err error) time.Duration {
	if d, ok := pam.RetryAfter(err); ok {
		return min(d, r.MaxRetryAfter)
	}
	if errors.Is(err, pam.ErrThrottled) {
		// A 429 without Retry-After: the adaptive limiter has already cut
		// the requests in flight, and the retry queues behind it, so a
		// short jittered pause is enough; a long one only idles the slot.
		return time.Duration(rand.Int64N(int64(throttledPause) + 1))
	}
	return backoff(attempt, r.Base, r.Max)
}

// throttledPause bounds the pause before retrying a 429 that came without
// Retry-After.
const throttledPause = 20 * time.Millisecond

// Redeliver is the delay for NakWithDelay after the given delivery failed.
func (r RetryPolicy) Redeliver(delivery uint64, err error) time.Duration {
	if d, ok := pam.RetryAfter(err); ok && d > r.MaxRetryAfter {
		return d
	}
	return backoff(int(min(delivery, 30)), r.RedeliverBase, r.RedeliverMax)
}

// backoff returns base*2^(n-1) capped at max, with up to +50% jitter so
// workers that failed together do not retry together.
func backoff(n int, base, max time.Duration) time.Duration {
	if base <= 0 {
		base = 100 * time.Millisecond
	}
	if max < base {
		max = base
	}
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return d + time.Duration(rand.Int64N(int64(d)/2+1))
}

// Retryable reports whether err may go away when the same step is tried
// again: PVWA transient errors (5xx, 429, timeouts, resets), a lost session
// that re-logon could not restore yet, a race with another writer, and a
// write whose answer lacked the flags.
func Retryable(err error) bool {
	switch {
	case errors.Is(err, pam.ErrPermanent):
		return false
	case errors.Is(err, pam.ErrTransient), errors.Is(err, pam.ErrUnauthorized),
		errors.Is(err, errRace), errors.Is(err, errNotApplied):
		return true
	}
	// Unknown errors (decoding, I/O) are retried: the job is idempotent and
	// the delivery limit bounds it.
	return true
}
