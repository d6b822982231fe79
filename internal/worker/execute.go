package worker

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"strings"
	"time"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/policy"
)

// PVWA is what the worker needs of the PVWA client. *pam.Client has it.
type PVWA interface {
	Member(ctx context.Context, safeURLID, name string) (pam.Member, error)
	Members(ctx context.Context, safeURLID string, opt ...pam.MembersOptions) iter.Seq2[pam.Member, error]
	AddMember(ctx context.Context, safeURLID string, m pam.NewMember) (pam.Member, error)
	UpdateMember(ctx context.Context, safeURLID, name string, u pam.MemberUpdate) (pam.Member, error)
	DeleteMember(ctx context.Context, safeURLID, name string) error
}

var _ PVWA = (*pam.Client)(nil)

// maxRaces bounds how often one attempt may find a member changed under it
// (POST answered 409, PUT answered "not a member") and start over.
const maxRaces = 3

// errRace says a member changed between our read and our write; the
// attempt starts over at once with a fresh read.
var errRace = errors.New("member changed between read and write")

// Executor turns one job into one result with as few PVWA calls as
// possible: one read for the Safe (GET of the member when the rules
// concern one member, one listing of the members when they concern
// several), then one write per member that must change, none for a
// compliant Safe. Transient failures are retried here a few times; what
// still fails is returned as an error for the caller to hand back to
// JetStream. It is safe for concurrent use.
type Executor struct {
	PVWA  PVWA
	Retry RetryPolicy
	// Intents, when set, records the members' states before the writes and
	// is consulted when a redelivered job finds its work already done, so
	// the result says "applied" with the true "before" even when the
	// delivery that wrote never reported. *jobs.Intents has it.
	Intents IntentStore
	// Sleep waits d or until ctx ends; nil means a real timer. Tests inject
	// a fake to make backoff instant.
	Sleep func(ctx context.Context, d time.Duration) error
}

// IntentStore keeps write intents; see Executor.Intents.
type IntentStore interface {
	Record(ctx context.Context, job jobs.Job, before jobs.Intent) error
	Recall(ctx context.Context, job jobs.Job) (before jobs.Intent, found bool, err error)
}

var _ IntentStore = (*jobs.Intents)(nil)

// progress is what one job execution learned across its attempts: each
// member's state before any write of ours, which writes were sent (their
// outcome may be unknown: an answer lost to a timeout or a 500 after the
// write), what the last attempt decided, and the members the listing did
// not show that must be read one by one.
type progress struct {
	before      map[string]*jobs.MemberState // by key(name): first read
	read        map[string]bool
	wrote       map[string]bool
	written     map[string]*jobs.MemberState // state the PVWA answered our write with
	recalled    jobs.Intent                  // by key(name), from an earlier delivery
	recallDone  bool
	redelivered bool // an earlier delivery may have written
	single      map[string]bool
	last        []memberPlan // what the last attempt decided, for a failed result
}

func newProgress(delivery uint64) *progress {
	return &progress{
		before: map[string]*jobs.MemberState{}, read: map[string]bool{}, wrote: map[string]bool{},
		written: map[string]*jobs.MemberState{}, single: map[string]bool{}, redelivered: delivery > 1,
	}
}

// key is the map key of a member name: the Vault compares names ignoring
// case.
func key(name string) string { return strings.ToLower(strings.TrimSpace(name)) }

// memberPlan is one member of the Safe as an attempt sees it.
type memberPlan struct {
	rule    string
	member  policy.Member
	cur     *pam.Member // nil: not a member
	want    *jobs.MemberState
	after   []string // members whose write must succeed first
	note    string
	expect  *jobs.MemberState // rollback: the state the run left
	rolling bool              // rollback entry
}

// Execute runs the job. It returns a final result (applied, unchanged, drift,
// skipped, failed, conflict) and a nil error, or a non-nil transient error
// when the job should be retried later. A failed result carries the PVWA
// ErrorCode.
func (e *Executor) Execute(ctx context.Context, job jobs.Job) (jobs.Result, int, error) {
	return e.ExecuteDelivery(ctx, job, 1)
}

// ExecuteDelivery is Execute for the given JetStream delivery of the job:
// from the second on, an earlier delivery may have written without
// reporting, which the write intent tells.
func (e *Executor) ExecuteDelivery(ctx context.Context, job jobs.Job, delivery uint64) (jobs.Result, int, error) {
	p := newProgress(delivery)
	attempts := 0
	for {
		attempts++
		res, err := e.attempt(ctx, job, p)
		if err == nil {
			return res, attempts, nil
		}
		if ctx.Err() != nil {
			return jobs.Result{}, attempts, ctx.Err()
		}
		if !Retryable(err) {
			return failed(job, p, err), attempts, nil
		}
		if attempts >= e.Retry.attempts() {
			return jobs.Result{}, attempts, err
		}
		if err := e.sleep(ctx, e.Retry.Delay(attempts, err)); err != nil {
			return jobs.Result{}, attempts, err
		}
	}
}

// attempt is one read-decide-write cycle, repeated while a member changes
// under it.
func (e *Executor) attempt(ctx context.Context, job jobs.Job, p *progress) (jobs.Result, error) {
	for race := 0; ; race++ {
		res, err := e.cycle(ctx, job, p)
		if !errors.Is(err, errRace) {
			return res, err
		}
		if race >= maxRaces {
			return jobs.Result{}, fmt.Errorf("%w (%d times)", err, race+1)
		}
	}
}

// cycle reads the members, decides, writes what must change and reports.
func (e *Executor) cycle(ctx context.Context, job jobs.Job, p *progress) (jobs.Result, error) {
	var names []string
	if job.Mode == jobs.ModeRollback {
		for _, r := range job.Restore {
			names = append(names, r.Member.Name)
		}
	} else {
		names = policy.Members(job.Rules)
	}
	cur, err := e.read(ctx, job.Safe.URLID, names, p)
	if err != nil {
		return jobs.Result{}, err
	}
	var plans []memberPlan
	if job.Mode == jobs.ModeRollback {
		plans = rollbackPlans(job, cur)
	} else {
		var conflict *policy.SafeConflict
		plans, conflict = decide(job, cur)
		if conflict != nil {
			return conflicted(job, cur, conflict), nil
		}
	}
	p.last = plans
	return e.settle(ctx, job, plans, p)
}

// read reads the members named: one GET when there is one, else one
// listing of the Safe's members (predefined users included), plus a GET
// for each member an earlier attempt found missing from the listing though
// the PVWA said it was there. It records each member's first state in p.
func (e *Executor) read(ctx context.Context, safe string, names []string, p *progress) (map[string]*pam.Member, error) {
	cur := make(map[string]*pam.Member, len(names))
	one := func(name string) error {
		m, err := e.PVWA.Member(ctx, safe, name)
		switch {
		case err == nil:
			cur[key(name)] = &m
		case errors.Is(err, pam.ErrMemberNotFound):
			cur[key(name)] = nil
		default:
			return err
		}
		return nil
	}
	if len(names) == 1 {
		if err := one(names[0]); err != nil {
			return nil, err
		}
	} else {
		want := make(map[string]bool, len(names))
		for _, n := range names {
			want[key(n)] = true
			cur[key(n)] = nil
		}
		for m, err := range e.PVWA.Members(ctx, safe, pam.MembersOptions{IncludePredefined: true}) {
			if err != nil {
				return nil, err
			}
			if k := key(m.Name); want[k] {
				cur[k] = &m
			}
		}
		for _, n := range names {
			if p.single[key(n)] && cur[key(n)] == nil {
				if err := one(n); err != nil {
					return nil, err
				}
			}
		}
	}
	for k, m := range cur {
		if !p.read[k] {
			p.read[k], p.before[k] = true, stateOf(m)
		}
	}
	return cur, nil
}

// decide turns the job's rules and the members read into one plan per
// member the rules manage.
func decide(job jobs.Job, cur map[string]*pam.Member) ([]memberPlan, *policy.SafeConflict) {
	targets, conflict := policy.Evaluate(job.Rules, func(name string) *policy.State {
		m := cur[key(name)]
		if m == nil {
			return nil
		}
		return &policy.State{Permissions: m.Permissions, Expiration: m.Expiration}
	})
	if conflict != nil {
		return nil, conflict
	}
	plans := make([]memberPlan, 0, len(targets))
	for _, t := range targets {
		mp := memberPlan{rule: strings.Join(t.Rules, ","), member: t.Member, cur: cur[key(t.Member.Name)], after: t.After, note: t.Note}
		if t.Want != nil {
			mp.want = &jobs.MemberState{Permissions: t.Want.Permissions, Expiration: t.Want.Expiration}
		}
		plans = append(plans, mp)
	}
	return plans, nil
}

// settle writes what the plans ask for (apply, rollback) or reports it
// (check), and builds the result.
func (e *Executor) settle(ctx context.Context, job jobs.Job, plans []memberPlan, p *progress) (jobs.Result, error) {
	res := jobs.NewResult(job, jobs.StatusUnchanged, time.Time{})
	out := make([]jobs.MemberResult, len(plans))
	var writes []int
	for i, mp := range plans {
		k := key(mp.member.Name)
		cur := stateOf(mp.cur)
		mr := jobs.MemberResult{Rule: mp.rule, Member: mp.member, Before: cur, After: cur, Reason: mp.note}
		if mr.Member.Type == "" && mp.cur != nil {
			// A copy source: the rules do not say its type, the PVWA
			// does (a rollback needs it to add the member back).
			mr.Member.Type = mp.cur.Type
		}
		switch {
		case cur.Equal(mp.want):
			mr.Status = jobs.StatusUnchanged
			before, done, err := e.doneBefore(ctx, job, k, p)
			if err != nil {
				return jobs.Result{}, err
			}
			if done && !before.Equal(cur) {
				// Our earlier write went through though its answer (or
				// its delivery's result) was lost.
				mr.Status, mr.Before, mr.Reason = jobs.StatusApplied, before, ""
				mr.Change, mr.Added, mr.Removed = jobs.ChangeOf(before, cur)
			}
		case mp.rolling && !cur.Equal(mp.expect):
			mr.Status = jobs.StatusConflict
			mr.Reason = "member changed since the run; left alone"
		case mp.cur != nil && mp.cur.IsPredefined:
			mr.Status = jobs.StatusSkipped
			mr.Reason = "predefined user (isPredefinedUser): never written"
		case job.Mode == jobs.ModeCheck:
			mr.Status, mr.After = jobs.StatusDrift, mp.want
			mr.Change, mr.Added, mr.Removed = jobs.ChangeOf(cur, mp.want)
		default:
			writes = append(writes, i)
		}
		out[i] = mr
	}
	if len(writes) > 0 {
		if err := e.intend(ctx, job, plans, writes, p); err != nil {
			return jobs.Result{}, err
		}
	}
	// Members others wait for go first; a copy source is removed only once
	// its target is as the rule wants it.
	for pass := 0; pass < 2; pass++ {
		for _, i := range writes {
			mp := plans[i]
			if (len(mp.after) > 0) != (pass == 1) {
				continue
			}
			after, err := e.write(ctx, job.Safe.URLID, mp, p)
			if err != nil {
				return jobs.Result{}, err
			}
			mr := &out[i]
			mr.Status, mr.After, mr.Reason = jobs.StatusApplied, after, ""
			mr.Before = p.before[key(mp.member.Name)]
			if b, ok := p.recalled[key(mp.member.Name)]; ok {
				mr.Before = b
			}
			mr.Change, mr.Added, mr.Removed = jobs.ChangeOf(mr.Before, after)
		}
	}
	res.Members = out
	res.Status = jobs.SafeStatus(out)
	return res, nil
}

// write makes one member as mp wants it: DELETE, POST or PUT, and checks
// the answer. It returns the member's state after the write (nil:
// removed).
func (e *Executor) write(ctx context.Context, safe string, mp memberPlan, p *progress) (*jobs.MemberState, error) {
	k := key(mp.member.Name)
	p.wrote[k] = true
	switch {
	case mp.want == nil:
		err := e.PVWA.DeleteMember(ctx, safe, mp.cur.Name)
		if err != nil && !errors.Is(err, pam.ErrMemberNotFound) {
			return nil, err
		}
		p.written[k] = nil
		return nil, nil
	case mp.cur == nil:
		added, err := e.PVWA.AddMember(ctx, safe, pam.NewMember{
			Name: mp.member.Name, Type: mp.member.Type, SearchIn: mp.member.SearchIn,
			Permissions: mp.want.Permissions, Expiration: mp.want.Expiration,
		})
		if errors.Is(err, pam.ErrAlreadyMember) {
			// Added since we looked (another worker, an admin, our own
			// earlier POST whose answer was lost), or a member the
			// listing does not show: read it on its own and start over.
			p.single[k] = true
			return nil, errRace
		}
		if err != nil {
			return nil, err
		}
		return answered(mp, nil, added, p)
	default:
		upd, err := e.PVWA.UpdateMember(ctx, safe, mp.cur.Name, pam.MemberUpdate{
			Permissions: mp.want.Permissions, ExtraPermissions: mp.cur.ExtraPermissions, Expiration: mp.want.Expiration,
		})
		if errors.Is(err, pam.ErrMemberNotFound) {
			return nil, errRace
		}
		if err != nil {
			return nil, err
		}
		return answered(mp, mp.cur, upd, p)
	}
}

// answered checks that the server's answer holds what we asked for: a PUT
// or POST answered 2xx without a wanted flag, or still with a flag we
// removed, would otherwise be reported done.
func answered(mp memberPlan, cur *pam.Member, got pam.Member, p *progress) (*jobs.MemberState, error) {
	removed := pam.PermSet(0)
	if cur != nil {
		removed = cur.Permissions &^ mp.want.Permissions
	}
	if miss := got.Permissions.Missing(mp.want.Permissions); miss != 0 {
		return nil, fmt.Errorf("%w: the PVWA answered the write of %q without %s", errNotApplied, mp.member.Name, miss)
	}
	if kept := got.Permissions & removed; kept != 0 {
		return nil, fmt.Errorf("%w: the PVWA answered the write of %q still with %s", errNotApplied, mp.member.Name, kept)
	}
	st := stateOf(&got)
	p.written[key(mp.member.Name)] = st
	return st, nil
}

// intend records the write intent before the first write of this
// execution: the state before of every member about to be written (those
// an earlier delivery recorded keep their older state).
func (e *Executor) intend(ctx context.Context, job jobs.Job, plans []memberPlan, writes []int, p *progress) error {
	if e.Intents == nil || job.Mode == jobs.ModeCheck {
		return nil
	}
	if err := e.recall(ctx, job, p); err != nil {
		return err
	}
	in := jobs.Intent{}
	for k, st := range p.recalled {
		in[k] = st
	}
	fresh := false
	for _, i := range writes {
		k := key(plans[i].member.Name)
		if _, ok := in[k]; !ok {
			in[k] = p.before[k]
			fresh = true
		}
		if !p.wrote[k] {
			fresh = true
		}
	}
	if !fresh {
		return nil
	}
	return e.Intents.Record(ctx, job, in)
}

// recall reads the intent of an earlier delivery once.
func (e *Executor) recall(ctx context.Context, job jobs.Job, p *progress) error {
	if p.recallDone || !p.redelivered || e.Intents == nil {
		p.recallDone = true
		return nil
	}
	in, found, err := e.Intents.Recall(ctx, job)
	if err != nil {
		return err
	}
	p.recallDone = true
	if found {
		p.recalled = jobs.Intent{}
		for n, st := range in {
			p.recalled[key(n)] = st
		}
	}
	return nil
}

// doneBefore reports whether a member found as wanted was made so by this
// job: by this execution's write, or, on a redelivery, by an earlier one
// that recorded an intent. before is then its state before that write.
func (e *Executor) doneBefore(ctx context.Context, job jobs.Job, k string, p *progress) (before *jobs.MemberState, done bool, err error) {
	if b, ok := p.recalled[k]; ok {
		return b, true, nil
	}
	if p.wrote[k] {
		return p.before[k], true, nil
	}
	if job.Mode == jobs.ModeCheck {
		return nil, false, nil
	}
	if err := e.recall(ctx, job, p); err != nil {
		return nil, false, err
	}
	if b, ok := p.recalled[k]; ok {
		return b, true, nil
	}
	return nil, false, nil
}

// errNotApplied is a successful write whose answer does not hold what was
// written; it is retried (a fresh read decides again) and never reported
// applied.
var errNotApplied = errors.New("write not applied")

func stateOf(m *pam.Member) *jobs.MemberState {
	if m == nil {
		return nil
	}
	return &jobs.MemberState{Permissions: m.Permissions, Expiration: m.Expiration}
}

// conflicted is the result of a Safe whose rules disagree: failed, with
// every member as read, nothing written.
func conflicted(job jobs.Job, cur map[string]*pam.Member, c *policy.SafeConflict) jobs.Result {
	r := jobs.NewResult(job, jobs.StatusFailed, time.Time{})
	r.ErrorCode = jobs.ErrorCodePolicyConflict
	r.Error = c.Error() + "; nothing was written on this Safe (planner policy check shows such pairs)"
	for _, n := range policy.Members(job.Rules) {
		st := stateOf(cur[key(n)])
		r.Members = append(r.Members, jobs.MemberResult{Rule: rulesOf(job.Rules, n), Member: memberOf(job.Rules, n),
			Status: jobs.StatusFailed, Before: st, After: st, ErrorCode: r.ErrorCode, Error: c.Error()})
	}
	return r
}

// failed is the result of a job that failed for good: the members written
// before the failure are applied, those that did not need a write
// unchanged, the others failed with the error.
func failed(job jobs.Job, p *progress, err error) jobs.Result {
	r := jobs.NewResult(job, jobs.StatusFailed, time.Time{})
	r.ErrorCode = errorCode(err)
	r.Error = failureText(err)
	r.Op = opOf(err)
	if p == nil || len(p.last) == 0 {
		for _, n := range memberNames(job) {
			st := (*jobs.MemberState)(nil)
			if p != nil {
				st = p.before[key(n)]
			}
			r.Members = append(r.Members, jobs.MemberResult{Rule: rulesOf(job.Rules, n), Member: memberOf(job.Rules, n),
				Status: jobs.StatusFailed, Before: st, After: st, ErrorCode: r.ErrorCode, Error: r.Error})
		}
		return r
	}
	for _, mp := range p.last {
		k := key(mp.member.Name)
		before := p.before[k]
		if b, ok := p.recalled[k]; ok {
			before = b
		}
		cur := stateOf(mp.cur)
		mr := jobs.MemberResult{Rule: mp.rule, Member: mp.member, Before: before, After: cur}
		switch after, wrote := p.written[k]; {
		case wrote:
			mr.Status, mr.After = jobs.StatusApplied, after
			mr.Change, mr.Added, mr.Removed = jobs.ChangeOf(before, after)
		case cur.Equal(mp.want) && !p.wrote[k]:
			mr.Status = jobs.StatusUnchanged
		default:
			mr.Status, mr.ErrorCode, mr.Error = jobs.StatusFailed, r.ErrorCode, r.Error
		}
		r.Members = append(r.Members, mr)
	}
	return r
}

// memberNames are the members a job concerns, for a result made before
// anything was read.
func memberNames(job jobs.Job) []string {
	if job.Mode == jobs.ModeRollback {
		var out []string
		for _, r := range job.Restore {
			out = append(out, r.Member.Name)
		}
		return out
	}
	return policy.Members(job.Rules)
}

// rulesOf names the rules concerning member n, comma-separated.
func rulesOf(ds []policy.Directive, n string) string {
	var out []string
	for _, d := range ds {
		if policy.SameMember(d.Member.Name, n) || policy.SameMember(d.Source, n) {
			out = append(out, d.Rule)
		}
	}
	return strings.Join(out, ",")
}

// memberOf is member n as the rules describe it.
func memberOf(ds []policy.Directive, n string) policy.Member {
	for _, d := range ds {
		if policy.SameMember(d.Member.Name, n) {
			return d.Member
		}
	}
	return policy.Member{Name: n}
}

// failureText says in one line what failed and, for the failures an
// administrator meets, what it means. The Safe is in the result already, so
// PVWA answers are shown as method, status, code and message.
func failureText(err error) string {
	var ae *pam.APIError
	if !errors.As(err, &ae) {
		return err.Error()
	}
	what := opOf(err) + ": HTTP " + fmt.Sprint(ae.Status)
	if ae.Code != "" {
		what += " " + ae.Code
	}
	if ae.Message != "" {
		what += ": " + ae.Message
	}
	switch {
	case errors.Is(err, pam.ErrSafeNotFound):
		return what + " (the Safe was deleted, or the API user is no longer a member)"
	case errors.Is(err, pam.ErrUnknownPrincipal):
		return what + " (the vault does not know this member name, or its type differs)"
	case errors.Is(err, pam.ErrForbidden):
		return what + " (the API user lacks View or Manage Safe Members on this Safe)"
	case errors.Is(err, pam.ErrBadRequest):
		return what + " (the PVWA rejected the request)"
	}
	return what
}

// opOf names the PVWA operation of a failed call: "GET member", "list
// members", "PUT member", "POST member" or "DELETE member"; "" when err is
// not a PVWA answer.
func opOf(err error) string {
	var ae *pam.APIError
	if !errors.As(err, &ae) {
		return ""
	}
	if ae.Method == http.MethodGet {
		// .../Safes/{id}/Members is the listing, .../Safes/{id}/Members/{name}/
		// one member (ids and names are escaped: no "/" inside).
		path := strings.ToLower(strings.Trim(ae.Path, "/"))
		if i := strings.LastIndex(path, "safes/"); i >= 0 {
			if parts := strings.Split(path[i+len("safes/"):], "/"); len(parts) == 2 && parts[1] == "members" {
				return "list members"
			}
		}
	}
	return ae.Method + " member"
}

// errorCode is the PVWA ErrorCode of err, or a stable code of our own.
func errorCode(err error) string {
	if c := pam.ErrorCode(err); c != "" {
		return c
	}
	switch {
	case errors.Is(err, errRace):
		return "RACE"
	case errors.Is(err, errNotApplied):
		return "NOT_APPLIED"
	case errors.Is(err, pam.ErrTransient):
		return "TRANSIENT"
	case errors.Is(err, context.DeadlineExceeded):
		return "TIMEOUT"
	}
	return "ERROR"
}

func (e *Executor) sleep(ctx context.Context, d time.Duration) error {
	if e.Sleep != nil {
		return e.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
