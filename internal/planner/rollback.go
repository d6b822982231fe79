package planner

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/policy"
)

// RollbackSource plans the undoing of run of: one rollback job for every
// Safe on which that run changed a member (a member result applied), with
// one Restore per such member: put it back as it was before (Before; nil
// removes a member the run added, a member the run removed comes back with
// its flags and expiry) where it still is exactly as the run left it
// (After). Other Safes are not part of the rollback. It reads the results
// of run of with Replay, one at a time. fallback gives the type and
// directory of members whose result lacks them (results of version 1).
func RollbackSource(js jetstream.JetStream, of string, fallback jobs.MemberRef) Source {
	return func(ctx context.Context, p Plan, sink Sink) (Summary, error) {
		start := time.Now()
		sum := Summary{}
		now := time.Now().UTC()
		err := jobs.Replay(ctx, js, of, func(r jobs.Result) error {
			sum.Listed++
			var restore []jobs.Restore
			for _, m := range r.Members {
				if m.Status != jobs.StatusApplied {
					continue
				}
				member := m.Member
				if member.Type == "" && policy.SameMember(member.Name, fallback.Name) {
					member.Type, member.SearchIn = fallback.Type, fallback.SearchIn
				}
				restore = append(restore, jobs.Restore{Rule: m.Rule, Member: member, To: m.Before, Expect: m.After})
			}
			if len(restore) == 0 {
				return nil
			}
			job := jobs.Job{V: jobs.Version, Run: p.Run, Mode: jobs.ModeRollback, Safe: r.Safe, Restore: restore, Created: now}
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
