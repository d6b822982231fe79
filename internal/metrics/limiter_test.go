package metrics

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/prometheus/client_golang/prometheus/testutil"

	sptest "github.com/safeperm/safeperm/internal/testutil"
)

// fakeClock is a clock that only moves when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// stepLimiter is a pam.Limiter that "waits" by moving a fake clock.
type stepLimiter struct {
	clock *fakeClock
	waits []time.Duration
	err   error
}

func (l *stepLimiter) Wait(context.Context) error {
	l.clock.t = l.clock.t.Add(l.waits[0])
	l.waits = l.waits[1:]
	return l.err
}

func TestLimiterRecordsWaits(t *testing.T) {
	t.Parallel()
	errCanceled := context.Canceled
	tests := []struct {
		name    string
		waits   []time.Duration
		err     error
		buckets map[string]float64 // le -> cumulative count
		sum     float64
	}{
		{
			name:    "free tokens and short waits",
			waits:   []time.Duration{0, 0, 20 * time.Millisecond, 200 * time.Millisecond},
			buckets: map[string]float64{"0.001": 2, "0.025": 3, "0.1": 3, "0.25": 4, "+Inf": 4},
			sum:     0.22,
		},
		{
			name:    "a failed wait is recorded too",
			waits:   []time.Duration{2 * time.Second},
			err:     errCanceled,
			buckets: map[string]float64{"1": 0, "2.5": 1, "+Inf": 1},
			sum:     2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := New("")
			clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
			m.now = clock.now
			l := m.Limiter(&stepLimiter{clock: clock, waits: tt.waits, err: tt.err})
			for range tt.waits {
				if err := l.Wait(t.Context()); !errors.Is(err, tt.err) {
					t.Fatalf("Wait = %v, want %v", err, tt.err)
				}
			}
			want := map[string]float64{
				"safeperm_rate_limit_waits_total":        float64(len(tt.waits)),
				"safeperm_rate_limit_wait_seconds_count": float64(len(tt.waits)),
				"safeperm_rate_limit_wait_seconds_sum":   tt.sum,
			}
			for le, n := range tt.buckets {
				want[`safeperm_rate_limit_wait_seconds_bucket{le="`+le+`"}`] = n
			}
			wantSamples(t, samples(t, exposition(t, m)), want)
		})
	}
}

// TestLimiterWithRate wraps a real golang.org/x/time/rate limiter of 40
// requests per second and a burst of 1.
func TestLimiterWithRate(t *testing.T) {
	t.Parallel()
	const n, every = 4, 25 * time.Millisecond
	m := New("w")
	l := m.Limiter(rate.NewLimiter(rate.Every(every), 1))
	ctx := sptest.Context(t, 10*time.Second)
	start := time.Now()
	for range n {
		if err := l.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)

	if got := testutil.ToFloat64(m.waits); got != n {
		t.Errorf("waits_total = %v, want %d", got, n)
	}
	got := samples(t, exposition(t, m))
	if c := got[`safeperm_rate_limit_wait_seconds_count{worker="w"}`]; c != n {
		t.Errorf("wait_seconds_count = %v, want %d", c, n)
	}
	// The first token is free; the other three each wait about 25ms. The
	// recorded total cannot exceed the wall time of the loop, and only a
	// badly starved test (time passing between the Waits) brings it far
	// under 75ms.
	sum := got[`safeperm_rate_limit_wait_seconds_sum{worker="w"}`]
	if lo := (3 * every / 2).Seconds(); sum < lo || sum > elapsed.Seconds() {
		t.Errorf("wait_seconds_sum = %vs, want between %vs and %vs", sum, lo, elapsed.Seconds())
	}
	if free := got[`safeperm_rate_limit_wait_seconds_bucket{worker="w",le="0.005"}`]; free < 1 {
		t.Errorf("%v waits under 5ms, want at least the burst token's", free)
	}

	// A wait that cannot finish before the deadline fails at once and is
	// still counted. (The deadline is a minute, not a millisecond: a
	// loaded machine can spend a millisecond before the first Wait, which
	// then fails too.)
	short, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := m.Limiter(rate.NewLimiter(rate.Every(time.Hour), 1)).Wait(short); err != nil {
		t.Fatalf("first Wait of a fresh limiter: %v", err)
	}
	hourly := m.Limiter(rate.NewLimiter(rate.Every(time.Hour), 0))
	if err := hourly.Wait(short); err == nil {
		t.Error("Wait on an exhausted limiter succeeded, want an error")
	}
	if got := testutil.ToFloat64(m.waits); got != n+2 {
		t.Errorf("waits_total = %v after two more waits, want %d", got, n+2)
	}
}

func TestLimiterNil(t *testing.T) {
	t.Parallel()
	if l := New("").Limiter(nil); l != nil {
		t.Errorf("Limiter(nil) = %v, want nil so that pam stays unlimited", l)
	}
}
