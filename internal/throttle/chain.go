package throttle

import (
	"context"
	"errors"
	"sync"
)

// Chain is a Limiter that waits on every limiter added to it, in order.
// Limiters may be added while it is in use, so a PVWA client can be built
// before the NATS-backed Budget exists (the worker logs on first). The zero
// value waits on nothing.
type Chain struct {
	mu sync.RWMutex
	ls []Limiter
}

// Add appends l; nil is ignored.
func (c *Chain) Add(l Limiter) {
	if l == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ls = append(c.ls, l)
}

// Wait waits on each limiter in turn and returns the first error. A Budget
// that was closed (ErrClosed) no longer limits: the worker left it, and its
// last requests (the PVWA logoff) still go out.
func (c *Chain) Wait(ctx context.Context) error {
	c.mu.RLock()
	ls := c.ls
	c.mu.RUnlock()
	for _, l := range ls {
		if err := l.Wait(ctx); err != nil && !errors.Is(err, ErrClosed) {
			return err
		}
	}
	return nil
}
