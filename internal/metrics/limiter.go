package metrics

import (
	"context"

	"github.com/safeperm/safeperm/internal/pam"
)

// Limiter wraps l so that every Wait is recorded: its duration in
// safeperm_rate_limit_wait_seconds (a wait that failed because ctx ended
// included) and one count in safeperm_rate_limit_waits_total. Wait's result
// is l's, unchanged. Limiter(nil) is nil, so a client without a limiter
// stays without one. The wrapper is safe for concurrent use if l is.
func (m *Metrics) Limiter(l pam.Limiter) pam.Limiter {
	if l == nil {
		return nil
	}
	return &timedLimiter{l: l, m: m}
}

// timedLimiter is the pam.Limiter Limiter returns.
type timedLimiter struct {
	l pam.Limiter
	m *Metrics
}

var _ pam.Limiter = (*timedLimiter)(nil)

// Wait waits on the wrapped limiter and records how long that took.
func (t *timedLimiter) Wait(ctx context.Context) error {
	start := t.m.now()
	err := t.l.Wait(ctx)
	t.m.waitSeconds.Observe(t.m.now().Sub(start).Seconds())
	t.m.waits.Inc()
	return err
}
