package planner

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"time"

	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/pam"
)

// listRetries is how many transient failures in a row a listing survives.
const listRetries = 6

// listBackoff is the wait before the first retry; it doubles each time.
var listBackoff = 500 * time.Millisecond

// allSafes yields every Safe the PVWA lists, like Lister.Safes, but a
// transient failure (an HTML 500, a 429, a timeout, a reset) does not end
// it: after a backoff it resumes from the offset reached, so no Safe is
// skipped or yielded twice (the PVWA lists Safes in a stable order). Only
// a permanent error, listRetries transient ones in a row, or ctx ending
// stop it.
func allSafes(ctx context.Context, l Lister, log zerolog.Logger) iter.Seq2[pam.Safe, error] {
	return func(yield func(pam.Safe, error) bool) {
		offset, failures := 0, 0
		for {
			var err error
			for s, e := range l.Safes(ctx, pam.SafesOptions{Offset: offset}) {
				if e != nil {
					err = e
					break
				}
				offset++
				failures = 0
				if !yield(s, nil) {
					return
				}
			}
			if err == nil {
				return
			}
			failures++
			if !errors.Is(err, pam.ErrTransient) || failures > listRetries || ctx.Err() != nil {
				yield(pam.Safe{}, err)
				return
			}
			d := listBackoff << (failures - 1)
			d += time.Duration(rand.Int64N(int64(d)/2 + 1))
			if ra, ok := pam.RetryAfter(err); ok && ra > d {
				d = ra
			}
			log.Warn().Err(err).Int("offset", offset).Dur("retry_in", d).Msg("listing Safes failed; resuming")
			select {
			case <-ctx.Done():
				yield(pam.Safe{}, fmt.Errorf("%w (while waiting to resume the listing after: %w)", ctx.Err(), err))
				return
			case <-time.After(d):
			}
		}
	}
}
