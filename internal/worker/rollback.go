package worker

import (
	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/pam"
)

// rollbackPlans makes one plan per member of a rollback job: put it back to
// Restore.To (nil: it was not a member, so it is removed; a member the run
// removed comes back with its exact flags and expiry), but only where it is
// still exactly as the run left it (Restore.Expect). settle reports any
// other state as a conflict and leaves the member alone.
func rollbackPlans(job jobs.Job, cur map[string]*pam.Member) []memberPlan {
	plans := make([]memberPlan, 0, len(job.Restore))
	for _, r := range job.Restore {
		plans = append(plans, memberPlan{rule: r.Rule, member: r.Member, cur: cur[key(r.Member.Name)],
			want: r.To, expect: r.Expect, rolling: true})
	}
	return plans
}
