package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Intents records, before a worker writes a member, the state it read, so
// that the job's result can still say what changed when the write went
// through but the worker died (or its answer was lost) before the result
// was published: the redelivered job finds the member compliant and, with
// the intent, reports "applied" with the true "before" instead of
// "unchanged". Keys are "<run>.<safeKey>"; a nil state (not a member) is
// stored as {"absent":true}.
type Intents struct {
	kv jetstream.KeyValue
}

type intent struct {
	V      int          `json:"v"`
	Absent bool         `json:"absent,omitempty"`
	Before *MemberState `json:"before,omitempty"`
}

func intentKey(run, safeKey string) string { return run + "." + safeKey }

// Record stores before (nil: not a member) as job's write intent.
func (in *Intents) Record(ctx context.Context, job Job, before *MemberState) error {
	b, err := json.Marshal(intent{V: Version, Absent: before == nil, Before: before})
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
func (in *Intents) Recall(ctx context.Context, job Job) (before *MemberState, found bool, err error) {
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
	if it.Absent {
		return nil, true, nil
	}
	return it.Before, true, nil
}
