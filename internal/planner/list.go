package planner

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/safeperm/safeperm/internal/pam"
)

// listRetries is how many transient failures in a row a listing survives.
const listRetries = 6

// listBackoff is the wait before the first retry; it doubles each time.
var listBackoff = 500 * time.Millisecond

// allSafesFrom yields every Safe the PVWA lists from offset from on, like
// Lister.Safes, but a transient failure (an HTML 500, a 429, a timeout, a
// reset) does not end it: after a backoff it resumes from the offset
// reached, so no Safe is skipped or yielded twice (the PVWA lists Safes in
// a stable order). Only a permanent error, listRetries transient ones in a
// row, or ctx ending stop it.
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
			d := listRetryDelay(failures, err)
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

// cpmPassPages is how many pages of the first pass are requested at once
// (the adaptive limit of the client decides how many are in flight).
const cpmPassPages = 16

// managingCPMs calls add with the managingCPM of the Safes the PVWA lists,
// each distinct value at least once, in the order they first appear in the
// listing. The order of the Safes does not matter to the first pass, so
// when the lister can fetch a page at an offset and the first page tells
// the total, the other pages are read side by side: the pass takes a few
// round trips instead of one per page, and the workers start that much
// sooner. Otherwise, or when the list grew meanwhile, it reads on in
// order. head is the first keepPages pages when they were read on their
// own: the second pass starts with them instead of reading them again
// (a Vault of up to keepPages pages is listed once, the workers' requests
// then have the PVWA to themselves).
func managingCPMs(ctx context.Context, l Lister, log zerolog.Logger, add func(managingCPM string)) (head []pam.Safe, err error) {
	resumeAt := 0
	if pl, ok := l.(PageLister); ok {
		if head, resumeAt, err = managingCPMsByPage(ctx, pl, log, add); err != nil {
			return nil, err
		}
		if resumeAt < 0 {
			return head, nil
		}
		head = nil
	}
	for s, err := range allSafesFrom(ctx, l, log, resumeAt) {
		if err != nil {
			return nil, err
		}
		add(s.ManagingCPM)
	}
	return nil, nil
}

// keepPages is how many pages of Safes the first pass keeps for the second:
// a few MiB at most.
const keepPages = 8

// managingCPMsByPage reads the pages side by side and keeps, per page, its
// distinct managingCPM values only (and the Safes of the first keepPages
// pages), so the pass holds little whatever the Vault's size. It returns
// the kept pages' Safes and -1 when it read them all,
// else the offset to read on from in order (0: the PVWA gave no total).
func managingCPMsByPage(ctx context.Context, pl PageLister, log zerolog.Logger, add func(string)) ([]pam.Safe, int, error) {
	first, err := pageWithRetries(ctx, pl, 0, log)
	if err != nil {
		return nil, 0, err
	}
	step := len(first.Safes)
	if !first.HasCount || step == 0 {
		return nil, 0, nil
	}
	for _, c := range distinctCPMs(first.Safes) {
		add(c)
	}
	if !first.More && first.Count <= step {
		return first.Safes, -1, nil
	}
	n := (first.Count - step + step - 1) / step
	pages := make([][]string, n)
	kept := make([][]pam.Safe, min(n, keepPages-1))
	var more bool
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cpmPassPages)
	for i := range n {
		g.Go(func() error {
			p, err := pageWithRetries(gctx, pl, step*(i+1), log)
			if err != nil {
				return err
			}
			if len(p.Safes) > 0 && p.Safes[0].Name == first.Safes[0].Name {
				return errOffsetIgnored
			}
			pages[i] = distinctCPMs(p.Safes)
			if i < len(kept) {
				kept[i] = p.Safes
			}
			if i == n-1 {
				more = p.More
			}
			return nil
		})
	}
	if err := g.Wait(); errors.Is(err, errOffsetIgnored) {
		log.Warn().Msg("the PVWA ignores the offset of the Safe list: reading it page after page")
		return nil, 0, nil
	} else if err != nil {
		return nil, 0, err
	}
	for _, cpms := range pages {
		for _, c := range cpms {
			add(c)
		}
	}
	if more {
		return nil, step * (n + 1), nil // the list grew since the first page
	}
	head := first.Safes
	for _, k := range kept {
		head = append(head, k...)
	}
	return head, -1, nil
}

// distinctCPMs returns the distinct managingCPM values of safes, in order.
func distinctCPMs(safes []pam.Safe) []string {
	var out []string
	for _, s := range safes {
		if !slices.Contains(out, s.ManagingCPM) {
			out = append(out, s.ManagingCPM)
		}
	}
	return out
}

// withHead yields head, then rest: the second pass starts with the page
// the first pass kept.
func withHead(head []pam.Safe, rest iter.Seq2[pam.Safe, error]) iter.Seq2[pam.Safe, error] {
	return func(yield func(pam.Safe, error) bool) {
		for _, s := range head {
			if !yield(s, nil) {
				return
			}
		}
		for s, err := range rest {
			if !yield(s, err) {
				return
			}
		}
	}
}

// listRetryDelay is the wait before retrying a listing after its
// failures-th transient failure in a row, err: listBackoff doubled each
// time with up to 50% jitter, or the PVWA's Retry-After when longer.
func listRetryDelay(failures int, err error) time.Duration {
	d := listBackoff << (failures - 1)
	d += time.Duration(rand.Int64N(int64(d)/2 + 1))
	if ra, ok := pam.RetryAfter(err); ok && ra > d {
		d = ra
	}
	return d
}

// errOffsetIgnored says a page at an offset began like the first page.
var errOffsetIgnored = errors.New("the PVWA ignored the offset")

// pageWithRetries fetches one page, retrying transient failures as
// allSafesFrom does.
func pageWithRetries(ctx context.Context, pl PageLister, offset int, log zerolog.Logger) (pam.SafesPage, error) {
	for failures := 1; ; failures++ {
		p, err := pl.SafesPage(ctx, pam.SafesOptions{Offset: offset})
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, pam.ErrTransient) || failures > listRetries || ctx.Err() != nil {
			return p, err
		}
		d := listRetryDelay(failures, err)
		log.Warn().Err(err).Int("offset", offset).Dur("retry_in", d).Msg("listing Safes failed; retrying the page")
		select {
		case <-ctx.Done():
			return p, fmt.Errorf("%w (while waiting to retry the listing after: %w)", ctx.Err(), err)
		case <-time.After(d):
		}
	}
}
