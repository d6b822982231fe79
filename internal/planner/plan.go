// Package planner plans safeperm runs: it pages through every Safe the PVWA
// shows, decides for each whether it is in scope, publishes one job per
// in-scope Safe and one skipped result per other Safe, and records the run.
// It never holds the Safe list: one page of Safes at a time, plus the set of
// CPM names.
package planner

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/policy"
	"github.com/safeperm/safeperm/internal/scope"
)

// Lister pages through the Safes the caller can see. *pam.Client has it.
type Lister interface {
	Safes(ctx context.Context, opt pam.SafesOptions) iter.Seq2[pam.Safe, error]
}

var _ Lister = (*pam.Client)(nil)

// Sink takes the planner's output. NATSSink is the real one.
type Sink interface {
	PublishJob(ctx context.Context, job jobs.Job) error
	PublishResult(ctx context.Context, res jobs.Result) (bool, error)
	Flush(ctx context.Context) (jobs.PublishStats, error)
}

// NATSSink publishes jobs through a jobs.Publisher and results straight to
// JetStream.
type NATSSink struct {
	*jobs.Publisher
	JS jetstream.JetStream
}

// PublishResult publishes res with its run/Safe Msg-ID; dup reports that
// JetStream already had it.
func (s NATSSink) PublishResult(ctx context.Context, res jobs.Result) (dup bool, err error) {
	return jobs.PublishResult(ctx, s.JS, res)
}

var _ Sink = NATSSink{}

// Plan is what one run is to do.
type Plan struct {
	Run  string
	Mode jobs.Mode
	// Policy holds the rules; each job carries those that apply to its
	// Safe. A rollback plan has none.
	Policy *policy.Policy
	// Filter decides the scope. Its Internal gets the CPMs found in the
	// Safes' managingCPM values during the first pass.
	Filter scope.Filter
	Logger zerolog.Logger
	// Progress, when set, is called every ProgressEvery Safes listed.
	Progress      func(Summary)
	ProgressEvery int
}

// Summary counts what planning did.
type Summary struct {
	// Listed is the number of Safes the PVWA showed.
	Listed int
	// Planned is the number of jobs published (in-scope Safes).
	Planned int
	// Skipped counts the Safes out of scope by reason.
	Skipped map[scope.Reason]int
	// NoRule counts the Safes in scope to which no rule of the policy
	// applies; they are reported skipped too.
	NoRule int
	// Unmatched lists include-list names that matched no Safe.
	Unmatched []string
	// CPMs are the CPM user names whose Safes were treated as internal.
	CPMs []string
	// Publish counts what JetStream did with the jobs.
	Publish jobs.PublishStats
	// Took is how long planning took.
	Took time.Duration
}

// SkippedTotal is the number of Safes reported skipped by the planner:
// out of scope, or no rule applies.
func (s Summary) SkippedTotal() int {
	n := s.NoRule
	for _, v := range s.Skipped {
		n += v
	}
	return n
}

// Publish runs the two passes. The first pass reads every Safe's managingCPM
// to learn the CPM users (a CPM's Safes may be listed before any Safe that
// names the CPM); the second decides and publishes. Both hold one page at a
// time. It returns once JetStream has acknowledged every job.
func Publish(ctx context.Context, p Plan, safes Lister, sink Sink) (Summary, error) {
	start := time.Now()
	sum := Summary{Skipped: map[scope.Reason]int{}}
	log := p.Logger.With().Str("run", p.Run).Str("component", "planner").Logger()
	internal := p.Filter.Internal
	if internal == nil {
		internal = scope.NewInternal(nil, nil)
		p.Filter.Internal = internal
	}

	head, err := managingCPMs(ctx, safes, log, internal.AddCPMsFrom)
	if err != nil {
		return sum, fmt.Errorf("list Safes (CPM pass): %w", err)
	}
	sum.CPMs = internal.CPMs()
	log.Info().Strs("cpms", sum.CPMs).Msg("CPM users found")
	if err := refuseCPMMembers(p.Policy, sum.CPMs); err != nil {
		return sum, err
	}

	every := p.ProgressEvery
	if every <= 0 {
		every = 1000
	}
	now := time.Now().UTC()
	for s, err := range withHead(head, allSafesFrom(ctx, safes, log, len(head))) {
		if err != nil {
			return sum, fmt.Errorf("list Safes: %w", err)
		}
		sum.Listed++
		ref := jobs.SafeRef{URLID: s.URLID, Name: s.Name}
		d := p.Filter.Decide(s.Name)
		var rules []policy.Directive
		if d.In {
			rules = p.Policy.Applies(s.Name, s.ManagingCPM)
		}
		if len(rules) > 0 {
			job := jobs.Job{V: jobs.Version, Run: p.Run, Mode: p.Mode, Safe: ref, Rules: rules, Created: now}
			if err := sink.PublishJob(ctx, job); err != nil {
				return sum, fmt.Errorf("publish job for Safe %q: %w", s.Name, err)
			}
			sum.Planned++
		} else {
			reason := noRuleReason
			if !d.In {
				reason = d.Reason.String()
				if d.Detail != "" {
					reason += ": " + d.Detail
				}
				sum.Skipped[d.Reason]++
			} else {
				sum.NoRule++
			}
			res := jobs.Result{V: jobs.Version, Run: p.Run, Mode: p.Mode, Safe: ref,
				Status: jobs.StatusSkipped, Reason: reason, Worker: "planner", Time: now}
			if _, err := sink.PublishResult(ctx, res); err != nil {
				return sum, fmt.Errorf("publish skipped result for Safe %q: %w", s.Name, err)
			}
		}
		if p.Progress != nil && sum.Listed%every == 0 {
			p.Progress(sum)
		}
	}
	stats, err := sink.Flush(ctx)
	sum.Publish = stats
	if err != nil {
		return sum, fmt.Errorf("publish jobs: %w", err)
	}
	if p.Filter.Include != nil {
		sum.Unmatched = p.Filter.Include.Unmatched()
	}
	sum.Took = time.Since(start)
	log.Info().Int("listed", sum.Listed).Int("planned", sum.Planned).Int("skipped", sum.SkippedTotal()).
		Int("duplicates", stats.Duplicates).Dur("took", sum.Took).Msg("planning done")
	return sum, nil
}

// ErrPolicyRefused is wrapped by the error of a plan whose policy names a
// member that must never be changed and that only the PVWA could tell: a
// CPM user found in the Safes' managingCPM. Nothing was published.
var ErrPolicyRefused = errors.New("policy refused")

// refuseCPMMembers refuses a policy naming one of the CPM users the Vault
// showed (as member or copy source): safeperm never changes CPM users.
func refuseCPMMembers(pol *policy.Policy, cpms []string) error {
	if pol == nil {
		return nil
	}
	var probs []string
	for _, r := range pol.Rules {
		for _, name := range []string{r.Member.Name, r.Source} {
			for _, c := range cpms {
				if name != "" && policy.SameMember(name, c) {
					probs = append(probs, fmt.Sprintf("rule %q names %q, a CPM user (it manages Safes, as their managingCPM shows); safeperm does not change CPM users", r.Name, name))
				}
			}
		}
	}
	if len(probs) > 0 {
		return fmt.Errorf("%w: %s", ErrPolicyRefused, strings.Join(probs, "; "))
	}
	return nil
}

// noRuleReason is the reason of a Safe in scope that no rule applies to.
const noRuleReason = "no rule of the policy applies"

// ErrNothingListed is returned when the PVWA showed no Safe at all, which
// almost always means the user is a member of none.
var ErrNothingListed = errors.New("the PVWA listed no Safe: is the user a member of the Safes (with View and Manage Safe Members)?")
