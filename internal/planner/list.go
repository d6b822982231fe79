package planner

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

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
	return allSafesFrom(ctx, l, log, 0)
}

// allSafesFrom is allSafes from an offset.
func allSafesFrom(ctx context.Context, l Lister, log zerolog.Logger, from int) iter.Seq2[pam.Safe, error] {
	return func(yield func(pam.Safe, error) bool) {
		offset, failures := from, 0
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

// PageLister fetches one page of the Safe list at an offset, for the
// planner's first pass, which reads the pages side by side. *pam.Client
// has it.
type PageLister interface {
	SafesPage(ctx context.Context, opt pam.SafesOptions) (pam.SafesPage, error)
}

var _ PageLister = (*pam.Client)(nil)

// cpmPassPages is how many pages of the first pass are read at once: few
// enough that even a small PVWA (4 requests at once) takes them without
// refusing, and the pass holds that many pages at most.
const cpmPassPages = 4

// managingCPMs calls add with the managingCPM of every Safe the PVWA lists,
// in listing order. The order of the Safes does not matter to the first
// pass, so when the lister can fetch a page at an offset and the first page
// tells the total, the other pages are read cpmPassPages at a time: the
// pass takes a few round trips instead of one per page, and the workers
// start that much sooner. Otherwise, or when the list grew meanwhile, it
// reads on in order.
func managingCPMs(ctx context.Context, l Lister, log zerolog.Logger, add func(managingCPM string)) error {
	resumeAt := 0
	if pl, ok := l.(PageLister); ok {
		var err error
		if resumeAt, err = managingCPMsByPage(ctx, pl, log, add); err != nil {
			return err
		}
		if resumeAt < 0 {
			return nil
		}
	}
	for s, err := range allSafesFrom(ctx, l, log, resumeAt) {
		if err != nil {
			return err
		}
		add(s.ManagingCPM)
	}
	return nil
}

// managingCPMsByPage reads the pages side by side, cpmPassPages at a time. It returns -1 when it
// read them all, else the offset to read on from in order (0: the PVWA
// gave no total).
func managingCPMsByPage(ctx context.Context, pl PageLister, log zerolog.Logger, add func(string)) (int, error) {
	first, err := pageWithRetries(ctx, pl, 0, log)
	if err != nil {
		return 0, err
	}
	step := len(first.Safes)
	if !first.HasCount || step == 0 {
		return 0, nil
	}
	for _, s := range first.Safes {
		add(s.ManagingCPM)
	}
	if !first.More && first.Count <= step {
		return -1, nil
	}
	n := (first.Count - step + step - 1) / step
	// A batch of pages at a time, added in listing order before the next:
	// the pass holds cpmPassPages pages at most, whatever the Vault's size.
	for lo := 0; lo < n; lo += cpmPassPages {
		hi := min(n, lo+cpmPassPages)
		pages := make([][]string, hi-lo)
		var more bool
		g, gctx := errgroup.WithContext(ctx)
		for i := lo; i < hi; i++ {
			g.Go(func() error {
				p, err := pageWithRetries(gctx, pl, step*(i+1), log)
				if err != nil {
					return err
				}
				if len(p.Safes) > 0 && p.Safes[0].Name == first.Safes[0].Name {
					return errOffsetIgnored
				}
				cpms := make([]string, len(p.Safes))
				for k, s := range p.Safes {
					cpms[k] = s.ManagingCPM
				}
				pages[i-lo] = cpms
				if i == n-1 {
					more = p.More
				}
				return nil
			})
		}
		if err := g.Wait(); errors.Is(err, errOffsetIgnored) {
			log.Warn().Msg("the PVWA ignores the offset of the Safe list: reading it page after page")
			return 0, nil
		} else if err != nil {
			return 0, err
		}
		for _, cpms := range pages {
			for _, c := range cpms {
				add(c)
			}
		}
		if more {
			return step * (n + 1), nil // the list grew since the first page
		}
	}
	return -1, nil
}

// errOffsetIgnored says a page at an offset began like the first page.
var errOffsetIgnored = errors.New("the PVWA ignored the offset")

// pageWithRetries fetches one page, retrying transient failures as
// allSafes does.
func pageWithRetries(ctx context.Context, pl PageLister, offset int, log zerolog.Logger) (pam.SafesPage, error) {
	for failures := 1; ; failures++ {
		p, err := pl.SafesPage(ctx, pam.SafesOptions{Offset: offset})
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, pam.ErrTransient) || failures > listRetries || ctx.Err() != nil {
			return p, err
		}
		d := listBackoff << (failures - 1)
		d += time.Duration(rand.Int64N(int64(d)/2 + 1))
		if ra, ok := pam.RetryAfter(err); ok && ra > d {
			d = ra
		}
		log.Warn().Err(err).Int("offset", offset).Dur("retry_in", d).Msg("listing Safes failed; retrying the page")
		select {
		case <-ctx.Done():
			return p, fmt.Errorf("%w (while waiting to retry the listing after: %w)", ctx.Err(), err)
		case <-time.After(d):
		}
	}
}
