package jobs

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrStop, returned by a Follow or Replay callback, ends the loop without
// error.
var ErrStop = errors.New("stop following")

// Follow calls fn for every result of run, from the first stored one on,
// then for new ones as they arrive, until ctx ends (returns ctx.Err()) or
// fn returns ErrStop (returns nil) or another error (returned wrapped).
// fn is called from one goroutine, in stream order.
//
// Each Safe is reported once: a later result for a Safe already seen (a
// re-report outside the Duplicates window) is skipped, so the first result
// wins, matching what Tally counts. Results that do not decode are skipped.
// It uses an ordered consumer: nothing to ack, nothing left on the server.
func Follow(ctx context.Context, js jetstream.JetStream, run string, fn func(Result) error) error {
	return follow(ctx, js, run, false, []string{ResultsFilter(run)}, fn)
}

// Replay is Follow that stops (returning nil) after the last result stored
// when it started, for reports on finished or running runs.
func Replay(ctx context.Context, js jetstream.JetStream, run string, fn func(Result) error) error {
	return follow(ctx, js, run, true, []string{ResultsFilter(run)}, fn)
}

// ReplayStatuses is Replay restricted to the results with the given
// statuses (their subjects, so the others are never read): "planner status"
// reads only a run's failed and conflict results to group them by cause.
func ReplayStatuses(ctx context.Context, js jetstream.JetStream, run string, statuses []Status, fn func(Result) error) error {
	if err := CheckRunID(run); err != nil {
		return err
	}
	filters := make([]string, 0, len(statuses))
	for _, st := range statuses {
		if !st.Valid() {
			return fmt.Errorf("replay results of %s: unknown status %q", run, st)
		}
		filters = append(filters, ResultSubject(run, st))
	}
	if len(filters) == 0 {
		return nil
	}
	return follow(ctx, js, run, true, filters, fn)
}

func follow(ctx context.Context, js jetstream.JetStream, run string, stopAtEnd bool, filters []string, fn func(Result) error) error {
	if err := CheckRunID(run); err != nil {
		return err
	}
	if stopAtEnd {
		var n uint64
		for _, f := range filters {
			c, err := countResults(ctx, js, f)
			if err != nil {
				return err
			}
			n += c
		}
		if n == 0 {
			return nil
		}
	}
	c, err := js.OrderedConsumer(ctx, ResultsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: filters,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("follow results of %s: %w", run, err)
	}
	it, err := c.Messages()
	if err != nil {
		return fmt.Errorf("follow results of %s: %w", run, err)
	}
	defer it.Stop()
	seen := newKeySet()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return fmt.Errorf("follow results of %s: %w", run, err)
			}
			continue // transient (heartbeats, reconnects): the ordered consumer recovers
		}
		var pending uint64
		if md, err := msg.Metadata(); err == nil {
			pending = md.NumPending
		}
		if r, err := DecodeResult(msg.Data()); err == nil && r.Run == run && seen.add(r.Key()) {
			if err := fn(r); err != nil {
				if errors.Is(err, ErrStop) {
					return nil
				}
				return err
			}
		}
		if stopAtEnd && pending == 0 {
			return nil
		}
	}
}

// countResults returns how many messages ResultsStream holds on filter.
func countResults(ctx context.Context, js jetstream.JetStream, filter string) (uint64, error) {
	st, err := js.Stream(ctx, ResultsStream)
	if err != nil {
		return 0, fmt.Errorf("results stream: %w", err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return 0, fmt.Errorf("results stream info: %w", err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n, nil
}

// keySet remembers Safe keys by a 64-bit hash: 8 bytes per Safe instead of
// the key itself, so following a run of a million Safes stays small. Two
// keys colliding (odds about 1 in 40 million for a million Safes in a run)
// would hide one result.
type keySet struct {
	seed maphash.Seed
	m    map[uint64]struct{}
}

func newKeySet() *keySet { return &keySet{seed: maphash.MakeSeed(), m: make(map[uint64]struct{})} }

// add reports whether key was new.
func (s *keySet) add(key string) bool {
	h := maphash.String(s.seed, key)
	if _, ok := s.m[h]; ok {
		return false
	}
	s.m[h] = struct{}{}
	return true
}

// Tally counts results by Status, once per Safe: the first result for a
// Safe key counts, later ones are ignored. The zero value is not usable;
// use NewTally. Safe for concurrent use (Follow's callback adds while a UI
// reads).
type Tally struct {
	mu     sync.Mutex
	seen   *keySet
	counts map[Status]int
	done   int
}

// NewTally returns an empty Tally.
func NewTally() *Tally {
	return &Tally{seen: newKeySet(), counts: make(map[Status]int, len(allStatuses))}
}

// Add counts r unless its Safe was already counted, and reports whether it
// counted.
func (t *Tally) Add(r Result) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.seen.add(r.Key()) {
		return false
	}
	t.counts[r.Status]++
	t.done++
	return true
}

// Done returns how many Safes have a result.
func (t *Tally) Done() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.done
}

// Count returns how many Safes ended with status s.
func (t *Tally) Count(s Status) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counts[s]
}

// Counts returns a copy of the counts by Status (absent: zero).
func (t *Tally) Counts() map[Status]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.counts)
}
