package jobs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// errCodeStoreFailed is the JetStream error code of a publish the stream's
// limits refused with DiscardNew: "maximum messages exceeded" (the stream is
// full) or "maximum messages per subject exceeded" (a job for that Safe is
// already pending). nats.go has no constant for it.
const errCodeStoreFailed jetstream.ErrorCode = 10077

// backoff yields growing, jittered delays: min, 2·min, … capped at max, each
// scaled by a random factor in [0.75, 1.25).
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(minDelay, maxDelay time.Duration) *backoff {
	return &backoff{min: minDelay, max: maxDelay}
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return time.Duration(float64(b.cur) * (0.75 + rand.Float64()/2))
}

func (b *backoff) reset() { b.cur = 0 }

// sleep waits d or until ctx ends, returning ctx.Err() in that case.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// apiCode returns the JetStream error code of err, or 0.
func apiCode(err error) jetstream.ErrorCode {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode
	}
	return 0
}

// transient reports whether err may go away by itself: timeouts, a lost or
// reconnecting connection, no responders (no stream leader yet) and server
// side 5xx API errors (leader elections, "JetStream system temporarily
// unavailable"). Client errors (4xx) and a closed connection are permanent.
func transient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return false
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, jetstream.ErrTooManyStalledMsgs),
		errors.Is(err, jetstream.ErrAsyncPublishTimeout),
		errors.Is(err, jetstream.ErrNoHeartbeat):
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		if apiErr.ErrorCode == errCodeNoPeers {
			// A cluster still forming, or a node down: placement succeeds
			// once enough peers are back. (Asking a lone server for 3
			// replicas stays refused; callers bound their context.)
			return true
		}
		return apiErr.Code >= 500 && apiErr.ErrorCode != errCodeStoreFailed
	}
	return false
}

// errCodeNoPeers is JetStream's "no suitable peers for placement" (HTTP-like
// code 400).
const errCodeNoPeers jetstream.ErrorCode = 10005

// retry runs fn with a fresh attemptTimeout context until it succeeds,
// fails with a non-transient error, maxAttempts is reached (0: no limit)
// or ctx ends. The returned error names what and wraps the last failure.
func retry(ctx context.Context, what string, attemptTimeout time.Duration, maxAttempts int, fn func(context.Context) error) error {
	bo := newBackoff(50*time.Millisecond, 2*time.Second)
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := fn(actx)
		cancel()
		if err == nil {
			return nil
		}
		if !transient(err) || ctx.Err() != nil || (maxAttempts > 0 && attempt >= maxAttempts) {
			return fmt.Errorf("%s (attempt %d): %w", what, attempt, err)
		}
		if serr := sleep(ctx, bo.next()); serr != nil {
			return fmt.Errorf("%s (attempt %d): %w", what, attempt, err)
		}
	}
}
