package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Intents records, before a worker writes the members of a Safe, the
// states it read, so that the job's result can still say what changed when
// a write went through but the worker died (or its answer was lost) before
// the result was published: the redelivered job finds the members
// compliant and, with the intent, reports them "applied" with the true
// "before" instead of "unchanged". Keys are "<run>.<safeKey>"; the value
// lists each member about to be written with its state before (absent:
// not a member).
type Intents struct {
	kv jetstream.KeyValue
}

type intent struct {
	V       int            `json:"v"`
	Members []intentMember `json:"members"`
}

type intentMember struct {
	Name   string       `json:"name"`
	Absent bool         `json:"absent,omitempty"`
	Before *MemberState `json:"before,omitempty"`
}

// Intent is the state of each member before a job's writes, by member name
// as given to Record. A nil state means "not a member".
type Intent map[string]*MemberState

func intentKey(run, safeKey string) string { return run + "." + safeKey }

// Record stores the states before (by member name; nil: not a member) as
// job's write intent, replacing any earlier one: pass every member the
// job's writes may touch, those recalled from an earlier delivery
// included.
func (in *Intents) Record(ctx context.Context, job Job, before Intent) error {
	it := intent{V: Version}
	for name, st := range before {
		it.Members = append(it.Members, intentMember{Name: name, Absent: st == nil, Before: st})
	}
	slices.SortFunc(it.Members, func(a, b intentMember) int { return strings.Compare(a.Name, b.Name) })
	b, err := json.Marshal(it)
	if err != nil {
		return err
	}
	if _, err := in.kv.Put(ctx, intentKey(job.Run, job.Key()), b); err != nil {
		return fmt.Errorf("record write intent: %w", err)
	}
	return nil
}

// Recall returns job's write intent: found is false when no worker
// recorded one (nothing was ever about to be written).
func (in *Intents) Recall(ctx context.Context, job Job) (before Intent, found bool, err error) {
	e, err := in.kv.Get(ctx, intentKey(job.Run, job.Key()))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read write intent: %w", err)
	}
	var it intent
	if err := json.Unmarshal(e.Value(), &it); err != nil {
		return nil, false, fmt.Errorf("%w: write intent: %w", ErrMalformed, err)
	}
	if it.V != Version {
		// An intent of another version describes a job this build does
		// not run: there is nothing to recall.
		return nil, false, nil
	}
	before = Intent{}
	for _, m := range it.Members {
		if m.Absent {
			before[m.Name] = nil
		} else {
			before[m.Name] = m.Before
		}
	}
	return before, true, nil
}
