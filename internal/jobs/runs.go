package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/safeperm/safeperm/internal/pam"
)

// RunState is where a run is in its life.
type RunState string

// The run states. A run moves planning → running → done, or ends in failed
// or canceled from any earlier state.
const (
	// RunPlanning: the planner is paging Safes and publishing jobs.
	RunPlanning RunState = "planning"
	// RunRunning: every job is published (PlanningDone); workers are
	// processing them.
	RunRunning RunState = "running"
	// RunDone: a result arrived for every job (Done == Expected).
	RunDone RunState = "done"
	// RunFailed: planning stopped on an error (Run.Error); jobs already
	// published still run.
	RunFailed RunState = "failed"
	// RunCanceled: an operator stopped the run.
	RunCanceled RunState = "canceled"
)

// Valid reports whether s is one of the defined states.
func (s RunState) Valid() bool {
	switch s {
	case RunPlanning, RunRunning, RunDone, RunFailed, RunCanceled:
		return true
	}
	return false
}

// Final reports whether s is a state a run never leaves.
func (s RunState) Final() bool { return s == RunDone || s == RunFailed || s == RunCanceled }

// RunParams records what the run was asked to do, for reports and audits.
type RunParams struct {
	// Policy describes the policy the run applies (nil for a rollback,
	// and for runs of version 1).
	Policy *PolicyParams `json:"policy,omitempty"`
	// Member and Permissions are, for a run from the --member and
	// --permissions flags (a one-rule policy), that member and those flags.
	Member      MemberRef   `json:"member,omitzero"`
	Permissions pam.PermSet `json:"permissions,omitzero"`
	// Include and Exclude name the scope files used, if any.
	Include string `json:"include,omitempty"`
	Exclude string `json:"exclude,omitempty"`
	// PVWAHost is the PVWA host name (no credentials, no path).
	PVWAHost string `json:"pvwaHost,omitempty"`
	// PVWAFlags are the planner's PVWA flags ("--pvwa-url", "https://…",
	// "--auth", "ldap", "--user", "svc_safeperm", …), never a secret (no
	// secret is ever a flag), so the commands that follow a run can print
	// the exact "planner rollback" of it from any machine.
	PVWAFlags []string `json:"pvwaFlags,omitempty"`
	// PlannerHost identifies the planner process (host name and pid).
	PlannerHost string `json:"plannerHost,omitempty"`
	// Rate is the global PVWA request rate limit in requests per second;
	// 0 means unlimited.
	Rate float64 `json:"rate,omitempty"`
	// RollbackOf is, for a rollback run, the id of the run it undoes.
	RollbackOf string `json:"rollbackOf,omitempty"`
}

// PolicyParams identifies the policy of a run.
type PolicyParams struct {
	// File is the policy file's path as given ("" for the flags).
	File string `json:"file,omitempty"`
	// Digest is policy.Policy.Digest: the same rules give the same digest.
	Digest string `json:"digest"`
	// Rules are the rules' names, in order.
	Rules []string `json:"rules"`
	// AllowRemovals is set when the run may remove members.
	AllowRemovals bool `json:"allowRemovals,omitempty"`
}

// Run is the run record kept in RunsBucket under the run id.
type Run struct {
	// V is the schema major version, always Version.
	V int `json:"v"`
	// ID is the run id (see NewRunID).
	ID string `json:"id"`
	// Mode is the mode of every job of the run.
	Mode Mode `json:"mode"`
	// State is where the run is.
	State RunState `json:"state"`
	// Params is what the run was asked to do.
	Params RunParams `json:"params"`
	// Planned counts the jobs the planner decided to publish so far.
	Planned int `json:"planned"`
	// Published counts the jobs JetStream confirmed (including those it
	// reported as already published or already pending). Equal to Planned
	// once PlanningDone, unless the planner failed.
	Published int `json:"published"`
	// Skipped counts the skipped results the planner published itself
	// (Safes it decided not to send to workers).
	Skipped int `json:"skipped"`
	// PlanningDone is set once every job and skipped result is published;
	// only then are Published and Skipped final.
	PlanningDone bool `json:"planningDone"`
	// Started is when the run was created; Ended when it reached a final
	// state (zero until then).
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended,omitzero"`
	// Error says why the run failed.
	Error string `json:"error,omitempty"`
	// Done and Counts are the Safes with a result, in all and by status, as
	// last recorded by a process following the run (planner run --watch,
	// planner watch) every few seconds and at its end. The results stream
	// is the source of truth; these let a KV reader see progress.
	Done   int            `json:"done,omitempty"`
	Counts map[Status]int `json:"counts,omitempty"`
}

// Expected returns how many results the run will produce: one per published
// job plus the planner's skipped results. Final only once PlanningDone.
func (r *Run) Expected() int { return r.Published + r.Skipped }

// Errors of Runs.
var (
	// ErrRunExists is returned by Runs.Create when the id is taken.
	ErrRunExists = errors.New("run already exists")
	// ErrRunNotFound is returned when there is no record for a run id.
	ErrRunNotFound = errors.New("run not found")
	// ErrLeaseHeld is returned by Runs.AcquireLease when another holder
	// has the lease.
	ErrLeaseHeld = errors.New("lease held by another holder")
)

// Runs stores run records in RunsBucket and planner leases in
// LeasesBucket. It is safe for concurrent use, including by many
// processes: every write is a compare-and-swap.
type Runs struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	leases jetstream.KeyValue

	// publishLease publishes lease writes; nil means js.PublishMsg. Tests
	// replace it (export_test.go) to lose an acknowledgement on purpose.
	publishLease func(context.Context, *nats.Msg, ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// NewRuns returns a Runs over the buckets runs (RunsBucket) and leases
// (LeasesBucket, or any bucket with History 1 and LimitMarkerTTL). js is
// the JetStream context they were opened with; lease writes publish
// through it, and lease reads ask the stream leader over js.Conn().
func NewRuns(js jetstream.JetStream, runs, leases jetstream.KeyValue) *Runs {
	return &Runs{js: js, kv: runs, leases: leases}
}

// OpenRuns binds to the existing buckets (created by Setup).
func OpenRuns(ctx context.Context, js jetstream.JetStream) (*Runs, error) {
	kv, err := js.KeyValue(ctx, RunsBucket)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", RunsBucket, err)
	}
	leases, err := js.KeyValue(ctx, LeasesBucket)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", LeasesBucket, err)
	}
	return NewRuns(js, kv, leases), nil
}

// Bucket returns the underlying KV bucket, e.g. to Watch run records.
func (r *Runs) Bucket() jetstream.KeyValue { return r.kv }

func (r *Runs) encode(run *Run) ([]byte, error) {
	run.V = Version
	if err := CheckRunID(run.ID); err != nil {
		return nil, err
	}
	if !run.Mode.Valid() {
		return nil, fmt.Errorf("run %s: unknown mode %q", run.ID, run.Mode)
	}
	if !run.State.Valid() {
		return nil, fmt.Errorf("run %s: unknown state %q", run.ID, run.State)
	}
	return json.Marshal(run)
}

func decodeRun(data []byte) (Run, error) {
	var run Run
	if err := json.Unmarshal(data, &run); err != nil {
		return Run{}, fmt.Errorf("%w: run: %w", ErrMalformed, err)
	}
	if run.V != Version && run.V != versionV1 { // a v1 record has the same fields, less the policy
		return Run{}, fmt.Errorf("%w: run: %w", ErrMalformed, versionError(run.V))
	}
	return run, nil
}

// Create stores a new run record; ErrRunExists if the id is taken. V is
// set for the caller; State defaults to RunPlanning and Started to now.
func (r *Runs) Create(ctx context.Context, run Run) error {
	if run.State == "" {
		run.State = RunPlanning
	}
	if run.Started.IsZero() {
		run.Started = time.Now().UTC()
	}
	data, err := r.encode(&run)
	if err != nil {
		return err
	}
	if _, err := r.kv.Create(ctx, run.ID, data); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("create run %s: %w", run.ID, ErrRunExists)
		}
		return fmt.Errorf("create run %s: %w", run.ID, err)
	}
	return nil
}

// Get returns the run record and its revision (for callers doing their own
// CAS with the bucket). ErrRunNotFound if there is none.
func (r *Runs) Get(ctx context.Context, id string) (Run, uint64, error) {
	if err := CheckRunID(id); err != nil {
		return Run{}, 0, err
	}
	e, err := r.kv.Get(ctx, id)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return Run{}, 0, fmt.Errorf("get run %s: %w", id, ErrRunNotFound)
		}
		return Run{}, 0, fmt.Errorf("get run %s: %w", id, err)
	}
	run, err := decodeRun(e.Value())
	if err != nil {
		return Run{}, 0, fmt.Errorf("get run %s: %w", id, err)
	}
	return run, e.Revision(), nil
}

// Update reads the run, applies fn and writes it back if nobody wrote in
// between; on a conflict it re-reads and calls fn again, so fn must only
// depend on the *Run it is given. If fn returns an error nothing is
// written and Update returns it. Returns the record as written. Changing
// the ID inside fn is an error.
func (r *Runs) Update(ctx context.Context, id string, fn func(*Run) error) (Run, error) {
	bo := newBackoff(time.Millisecond, 100*time.Millisecond)
	for {
		run, rev, err := r.Get(ctx, id)
		if err != nil {
			return Run{}, err
		}
		if err := fn(&run); err != nil {
			return Run{}, err
		}
		if run.ID != id {
			return Run{}, fmt.Errorf("update run %s: fn changed the id to %q", id, run.ID)
		}
		data, err := r.encode(&run)
		if err != nil {
			return Run{}, err
		}
		_, err = r.kv.Update(ctx, id, data, rev)
		if err == nil {
			return run, nil
		}
		// Not ErrKeyExists: replicated streams report CAS conflicts with a
		// different code that only ErrKeyRevisionMismatch matches.
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return Run{}, fmt.Errorf("update run %s: %w", id, err)
		}
		if err := sleep(ctx, bo.next()); err != nil {
			return Run{}, fmt.Errorf("update run %s: %w", id, err)
		}
	}
}

// List returns every run record, oldest id first (ids made by NewRunID sort
// by start time). Records that do not decode are skipped.
func (r *Runs) List(ctx context.Context) ([]Run, error) {
	w, err := r.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	defer func() { _ = w.Stop() }()
	var runs []Run
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("list runs: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("list runs: watcher closed")
			}
			if e == nil { // all current values delivered
				slices.SortFunc(runs, func(a, b Run) int { return strings.Compare(a.ID, b.ID) })
				return runs, nil
			}
			if run, err := decodeRun(e.Value()); err == nil {
				runs = append(runs, run)
			}
		}
	}
}
