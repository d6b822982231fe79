package planner

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/safeperm/safeperm/internal/jobs"
)

// RollbackSource plans the undoing of run of: one rollback job for every
// Safe that run changed (status applied), restoring the member as it was
// before (Restore, nil: remove the member the run added) where it still
// holds exactly what the run left (Expect). Other Safes are not part of the
// rollback. It reads the results of run of with Replay, one at a time.
func RollbackSource(js jetstream.JetStream, of string) Source {
	return func(ctx context.Context, p Plan, sink Sink) (Summary, error) {
		start := time.Now()
		sum := Summary{}
		now := time.Now().UTC()
		err := jobs.Replay(ctx, js, of, func(r jobs.Result) error {
			sum.Listed++
			if r.Status != jobs.StatusApplied || r.After == nil {
				return nil
			}
			job := jobs.Job{V: jobs.Version, Run: p.Run, Mode: jobs.ModeRollback, Safe: r.Safe, Member: p.Member,
				Permissions: p.Permissions, Restore: r.Before, Expect: r.After, Created: now}
			if err := sink.PublishJob(ctx, job); err != nil {
				return fmt.Errorf("publish rollback job for Safe %q: %w", r.Safe.Name, err)
			}
			sum.Planned++
			return nil
		})
		if err != nil {
			return sum, fmt.Errorf("read the results of run %s: %w", of, err)
		}
		stats, err := sink.Flush(ctx)
		sum.Publish = stats
		if err != nil {
			return sum, fmt.Errorf("publish rollback jobs: %w", err)
		}
		sum.Took = time.Since(start)
		p.Logger.Info().Str("run", p.Run).Str("rollback_of", of).Int("results", sum.Listed).Int("planned", sum.Planned).Msg("rollback planned")
		return sum, nil
	}
}
