package throttle

import (
	"context"
	"math"
	"sync"
	"time"
)

// pacer is a token bucket whose rate, burst and validity can change while
// callers wait. Unlike golang.org/x/time/rate it never hands out a slot in
// the future: only one waiter at a time holds a "turn" and re-reads the rate
// whenever it changes, so a lower rate applies to every request granted
// after the change, however many goroutines were already waiting. That is
// what keeps the sum of the workers' grants within the budget across joins.
//
// A rate of 0 blocks every waiter; +Inf grants at once. Grants also stop at
// validUntil (when not zero): a worker whose heartbeat could not be renewed
// must stop before the others count it out. The bucket starts empty.
type pacer struct {
	now func() time.Time

	turn chan struct{} // capacity 1: the waiter that may take the next token

	mu         sync.Mutex
	rate       float64 // tokens per second
	burst      float64
	tokens     float64
	last       time.Time // when tokens was last brought up to date
	validUntil time.Time
	closed     bool
	changed    chan struct{} // closed and replaced on every change
}

func newPacer(now func() time.Time) *pacer {
	return &pacer{
		now:     now,
		turn:    make(chan struct{}, 1),
		last:    now(),
		changed: make(chan struct{}),
	}
}

// advanceLocked adds the tokens earned since p.last at the current rate.
func (p *pacer) advanceLocked(now time.Time) {
	if now.Before(p.last) {
		return
	}
	if p.rate > 0 && !math.IsInf(p.rate, 1) {
		p.tokens = math.Min(p.burst, p.tokens+p.rate*now.Sub(p.last).Seconds())
	}
	p.last = now
}

// notifyLocked wakes the waiter holding the turn so it re-reads the state.
func (p *pacer) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// set changes the rate and burst. Tokens earned so far at the old rate are
// kept, up to the new burst.
func (p *pacer) set(rate, burst float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.advanceLocked(p.now())
	p.rate, p.burst = rate, math.Max(1, burst)
	p.tokens = math.Min(p.tokens, p.burst)
	p.notifyLocked()
}

// setValidUntil changes the time from which nothing is granted.
func (p *pacer) setValidUntil(t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.validUntil = t
	p.notifyLocked()
}

// close makes every current and future wait fail with ErrClosed.
func (p *pacer) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		p.notifyLocked()
	}
}

// effective is the rate granted at now: 0 while closed or expired.
func (p *pacer) effective() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.effectiveLocked(p.now())
}

func (p *pacer) effectiveLocked(now time.Time) float64 {
	if p.closed || (!p.validUntil.IsZero() && !now.Before(p.validUntil)) {
		return 0
	}
	return p.rate
}

// wait blocks until a token is granted, ctx ends or the pacer is closed.
func (p *pacer) wait(ctx context.Context) error {
	select {
	case p.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.turn }()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return ErrClosed
		}
		now := p.now()
		p.advanceLocked(now)
		rate := p.effectiveLocked(now)
		switch {
		case math.IsInf(rate, 1):
			p.mu.Unlock()
			return nil
		case rate > 0 && p.tokens >= 1:
			p.tokens--
			p.mu.Unlock()
			return nil
		}
		changed := p.changed
		var timeout <-chan time.Time
		if rate > 0 {
			d := time.Duration((1 - p.tokens) / rate * float64(time.Second))
			if !p.validUntil.IsZero() {
				d = min(d, p.validUntil.Sub(now))
			}
			if timer == nil {
				timer = time.NewTimer(max(d, 0))
			} else {
				timer.Reset(max(d, 0))
			}
			timeout = timer.C
		}
		p.mu.Unlock()
		select {
		case <-timeout:
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
