package planner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/safeperm/safeperm/internal/jobs"
)

// ErrRunFinished is returned when asked to plan a run id whose record says
// it already ended: its results are final and re-planning would mix runs.
var ErrRunFinished = errors.New("run already finished")

// ErrLeaseLost is returned when the planner lost its lease on the run while
// publishing (another planner took it over, or NATS was unreachable for
// most of the lease's lifetime).
var ErrLeaseLost = errors.New("planner lease lost")

// Source publishes the jobs (and skipped results) of a run to sink.
type Source func(ctx context.Context, p Plan, sink Sink) (Summary, error)

// SafesSource plans from the PVWA's Safe list: Publish.
func SafesSource(safes Lister) Source {
	return func(ctx context.Context, p Plan, sink Sink) (Summary, error) { return Publish(ctx, p, safes, sink) }
}

// LeaseTTL is how long a planner's lease on its run outlives the planner's
// last renewal.
const LeaseTTL = 30 * time.Second

// recordEvery is how many Safes are listed between run record updates.
const recordEvery = 2000

// Start plans run p.Run end to end: it creates the run record (or resumes an
// unfinished one with the same id: every job is re-published and JetStream
// drops those it already has), takes the run's lease so that a second
// planner for the same id stops at once, publishes, and records the final
// counts with PlanningDone. holder identifies this process.
//
// On error the run record gets state failed, unless the error is that
// another planner holds the lease.
func Start(ctx context.Context, js jetstream.JetStream, st *jobs.Streams, src Source, p Plan, params jobs.RunParams, holder string) (jobs.Run, Summary, error) {
	runs := st.Runs
	rec := jobs.Run{V: jobs.Version, ID: p.Run, Mode: p.Mode, State: jobs.RunPlanning, Params: params, Started: time.Now().UTC()}
	err := runs.Create(ctx, rec)
	switch {
	case errors.Is(err, jobs.ErrRunExists):
		old, _, gerr := runs.Get(ctx, p.Run)
		if gerr != nil {
			return rec, Summary{}, fmt.Errorf("read run %s: %w", p.Run, gerr)
		}
		if old.State.Final() {
			return old, Summary{}, fmt.Errorf("%w: run %s is %s; choose another --run-id", ErrRunFinished, p.Run, old.State)
		}
		if old.Mode != p.Mode || digestOf(old.Params) != digestOf(params) || old.Params.RollbackOf != params.RollbackOf {
			return old, Summary{}, fmt.Errorf("run %s exists with other parameters (mode %s, policy %s); choose another --run-id",
				p.Run, old.Mode, describePolicy(old.Params))
		}
		p.Logger.Info().Str("run", p.Run).Str("state", string(old.State)).Msg("resuming the planning of an existing run")
	case err != nil:
		return rec, Summary{}, fmt.Errorf("create run %s: %w", p.Run, err)
	}

	lease, err := runs.AcquireLease(ctx, p.Run, holder, LeaseTTL)
	if err != nil {
		return rec, Summary{}, fmt.Errorf("take the planner lease on run %s: %w", p.Run, err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = lease.Release(rctx)
	}()

	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-lease.Lost():
			cancel(ErrLeaseLost)
		case <-pctx.Done():
		}
	}()

	userProgress := p.Progress
	p.ProgressEvery = recordEvery
	p.Progress = func(s Summary) {
		if _, err := runs.Update(pctx, p.Run, func(r *jobs.Run) error {
			r.Planned, r.Skipped = s.Planned, s.SkippedTotal()
			r.Published = s.Publish.Total()
			return nil
		}); err != nil {
			p.Logger.Warn().Err(err).Msg("updating the run record")
		}
		if userProgress != nil {
			userProgress(s)
		}
	}

	sum, err := src(pctx, p, NATSSink{Publisher: jobs.NewPublisher(js, p.Logger, jobs.PublisherOptions{}), JS: js})
	if err != nil {
		if cause := context.Cause(pctx); errors.Is(cause, ErrLeaseLost) {
			err = fmt.Errorf("%w: %w", cause, err)
		}
		rec, _ = fail(runs, p.Run, err)
		return rec, sum, err
	}
	rec, err = runs.Update(ctx, p.Run, func(r *jobs.Run) error {
		r.Planned, r.Skipped, r.Published = sum.Planned, sum.SkippedTotal(), sum.Publish.Total()
		r.PlanningDone = true
		if r.State == jobs.RunPlanning {
			r.State = jobs.RunRunning
		}
		if r.Expected() == 0 {
			r.State, r.Ended = jobs.RunDone, time.Now().UTC()
		}
		return nil
	})
	if err != nil {
		return rec, sum, fmt.Errorf("record the end of planning for run %s: %w", p.Run, err)
	}
	return rec, sum, nil
}

// digestOf is the digest of a run's policy, "" when it has none.
func digestOf(p jobs.RunParams) string {
	if p.Policy == nil {
		return ""
	}
	return p.Policy.Digest
}

// describePolicy names a run's policy for an error message.
func describePolicy(p jobs.RunParams) string {
	switch {
	case p.Policy == nil && p.RollbackOf != "":
		return "rollback of " + p.RollbackOf
	case p.Policy == nil:
		return "none"
	case p.Policy.File != "":
		return fmt.Sprintf("%s (rules %s)", p.Policy.File, strings.Join(p.Policy.Rules, ", "))
	}
	return fmt.Sprintf("from flags: %s for %s", p.Permissions, p.Member.Name)
}

// fail marks the run failed with err, best effort.
func fail(runs *jobs.Runs, id string, cause error) (jobs.Run, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return runs.Update(ctx, id, func(r *jobs.Run) error {
		if !r.State.Final() {
			r.State, r.Ended, r.Error = jobs.RunFailed, time.Now().UTC(), cause.Error()
		}
		return nil
	})
}

// Finish marks run id done (all results in), unless it already ended. Any
// process that saw the last result may call it; it is idempotent.
func Finish(ctx context.Context, runs *jobs.Runs, id string) (jobs.Run, error) {
	return runs.Update(ctx, id, func(r *jobs.Run) error {
		if !r.State.Final() {
			r.State, r.Ended = jobs.RunDone, time.Now().UTC()
		}
		return nil
	})
}
