package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/pam"
)

// PVWA is what the worker needs of the PVWA client. *pam.Client has it.
type PVWA interface {
	Member(ctx context.Context, safeURLID, name string) (pam.Member, error)
	AddMember(ctx context.Context, safeURLID string, m pam.NewMember) (pam.Member, error)
	UpdateMember(ctx context.Context, safeURLID, name string, u pam.MemberUpdate) (pam.Member, error)
	DeleteMember(ctx context.Context, safeURLID, name string) error
}

var _ PVWA = (*pam.Client)(nil)

// maxRaces bounds how often one attempt may find the member changed under it
// (POST answered 409, PUT answered "not a member") and start over.
const maxRaces = 3

// errRace says the member changed between our read and our write; the
// attempt starts over at once with a fresh read.
var errRace = errors.New("member changed between read and write")

// Executor turns one job into one result with as few PVWA calls as possible:
// one GET for a compliant Safe, GET+PUT or GET+POST for a changed one.
// Transient failures are retried here a few times; what still fails is
// returned as an error for the caller to hand back to JetStream.
// It is safe for concurrent use.
type Executor struct {
	PVWA  PVWA
	Retry RetryPolicy
	// Intents, when set, records the member state before each write and is
	// consulted when a redelivered job finds its work already done, so the
	// result says "applied" with the true "before" even when the delivery
	// that wrote never reported. *jobs.Intents has it.
	Intents IntentStore
	// Sleep waits d or until ctx ends; nil means a real timer. Tests inject
	// a fake to make backoff instant.
	Sleep func(ctx context.Context, d time.Duration) error
}

// IntentStore keeps write intents; see Executor.Intents.
type IntentStore interface {
	Record(ctx context.Context, job jobs.Job, before *jobs.MemberState) error
	Recall(ctx context.Context, job jobs.Job) (before *jobs.MemberState, found bool, err error)
}

var _ IntentStore = (*jobs.Intents)(nil)

// progress is what one job execution learned across its attempts: the state
// before any write of ours, and whether a write was sent whose outcome may
// be unknown (an answer lost to a timeout or a 500 after the write).
type progress struct {
	read        bool
	before      *jobs.MemberState
	wrote       bool
	redelivered bool // an earlier delivery may have written
}

// Execute runs the job. It returns a final result (applied, unchanged, drift,
// failed, conflict) and a nil error, or a non-nil transient error when the
// job should be retried later. A failed result carries the PVWA ErrorCode.
func (e *Executor) Execute(ctx context.Context, job jobs.Job) (jobs.Result, int, error) {
	return e.ExecuteDelivery(ctx, job, 1)
}

// ExecuteDelivery is Execute for the given JetStream delivery of the job:
// from the second on, an earlier delivery may have written without
// reporting, which the write intent tells.
func (e *Executor) ExecuteDelivery(ctx context.Context, job jobs.Job, delivery uint64) (jobs.Result, int, error) {
	p := progress{redelivered: delivery > 1}
	attempts := 0
	for {
		attempts++
		res, err := e.attempt(ctx, job, &p)
		if err == nil {
			return res, attempts, nil
		}
		if ctx.Err() != nil {
			return jobs.Result{}, attempts, ctx.Err()
		}
		if !Retryable(err) {
			return failed(job, p.before, err), attempts, nil
		}
		if attempts >= e.Retry.attempts() {
			return jobs.Result{}, attempts, err
		}
		if err := e.sleep(ctx, e.Retry.Delay(attempts, err)); err != nil {
			return jobs.Result{}, attempts, err
		}
	}
}

// attempt is one read-decide-write cycle, repeated while the member changes
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

func (e *Executor) cycle(ctx context.Context, job jobs.Job, p *progress) (jobs.Result, error) {
	if job.Mode == jobs.ModeRollback {
		return e.rollback(ctx, job, p)
	}
	want := job.Permissions
	m, err := e.PVWA.Member(ctx, job.Safe.URLID, job.Member.Name)
	switch {
	case err == nil:
		cur := stateOf(m)
		if !p.read {
			p.read, p.before = true, cur
		}
		missing := m.Permissions.Missing(want)
		if missing == 0 {
			status := jobs.StatusUnchanged
			done, err := e.doneBefore(ctx, job, p)
			if err != nil {
				return jobs.Result{}, err
			}
			if done {
				// Our earlier write went through though its answer (or
				// its delivery's result) was lost.
				status = jobs.StatusApplied
			}
			return result(job, status, p.before, cur), nil
		}
		if job.Mode == jobs.ModeCheck {
			r := result(job, jobs.StatusDrift, cur, cur)
			r.Missing = missing
			return r, nil
		}
		if err := e.intend(ctx, job, p); err != nil {
			return jobs.Result{}, err
		}
		upd, err := e.PVWA.UpdateMember(ctx, job.Safe.URLID, m.Name, pam.UpdateOf(m, want))
		if errors.Is(err, pam.ErrMemberNotFound) {
			return jobs.Result{}, errRace
		}
		if err != nil {
			return jobs.Result{}, err
		}
		return applied(job, p.before, upd)
	case errors.Is(err, pam.ErrMemberNotFound):
		if !p.read {
			p.read, p.before = true, nil
		}
		if job.Mode == jobs.ModeCheck {
			r := result(job, jobs.StatusDrift, nil, nil)
			r.Missing = want
			return r, nil
		}
		if err := e.intend(ctx, job, p); err != nil {
			return jobs.Result{}, err
		}
		added, err := e.PVWA.AddMember(ctx, job.Safe.URLID, pam.NewMember{
			Name: job.Member.Name, Type: job.Member.Type, SearchIn: job.Member.SearchIn, Permissions: want,
		})
		if errors.Is(err, pam.ErrAlreadyMember) {
			// Added since we looked (another worker, an admin, or our own
			// earlier POST whose answer was lost): read it and PUT.
			return jobs.Result{}, errRace
		}
		if err != nil {
			return jobs.Result{}, err
		}
		return applied(job, p.before, added)
	default:
		return jobs.Result{}, err
	}
}

// intend records the write intent before the first write of this
// execution, then marks the write as sent.
func (e *Executor) intend(ctx context.Context, job jobs.Job, p *progress) error {
	if !p.wrote && e.Intents != nil {
		if err := e.Intents.Record(ctx, job, p.before); err != nil {
			return err
		}
	}
	p.wrote = true
	return nil
}

// doneBefore reports whether the state found was written by this job: by
// this execution, or, on a redelivery, by an earlier one that recorded an
// intent (whose "before" then replaces the one read now).
func (e *Executor) doneBefore(ctx context.Context, job jobs.Job, p *progress) (bool, error) {
	if p.wrote {
		return true, nil
	}
	if !p.redelivered || e.Intents == nil || job.Mode == jobs.ModeCheck {
		return false, nil
	}
	before, found, err := e.Intents.Recall(ctx, job)
	if err != nil || !found {
		return false, err
	}
	p.before, p.wrote = before, true
	return true, nil
}

// applied checks that the server's answer holds what we asked for: a PUT or
// POST answered 2xx without the flags would otherwise be reported done.
func applied(job jobs.Job, before *jobs.MemberState, after pam.Member) (jobs.Result, error) {
	if miss := after.Permissions.Missing(job.Permissions); miss != 0 {
		return jobs.Result{}, fmt.Errorf("%w: the PVWA answered the write without %s", errNotApplied, miss)
	}
	return result(job, jobs.StatusApplied, before, stateOf(after)), nil
}

// errNotApplied is a successful write whose answer lacks the flags; it is
// retried (a fresh read decides again) and never reported applied.
var errNotApplied = errors.New("write not applied")

func stateOf(m pam.Member) *jobs.MemberState {
	return &jobs.MemberState{Permissions: m.Permissions, Expiration: m.Expiration}
}

func result(job jobs.Job, status jobs.Status, before, after *jobs.MemberState) jobs.Result {
	return jobs.Result{
		V: jobs.Version, Run: job.Run, Mode: job.Mode, Safe: job.Safe, Member: job.Member.Name,
		Status: status, Before: before, After: after,
	}
}

func failed(job jobs.Job, before *jobs.MemberState, err error) jobs.Result {
	r := result(job, jobs.StatusFailed, before, before)
	r.ErrorCode = errorCode(err)
	r.Error = failureText(err)
	r.Op = opOf(err)
	return r
}

// opOf names the PVWA call that failed ("PUT member", "list members"), or
// "" when err is not a PVWA answer.
func opOf(err error) string {
	var ae *pam.APIError
	if !errors.As(err, &ae) || ae.Method == "" {
		return ""
	}
	if p := strings.TrimSuffix(strings.ToLower(ae.Path), "/"); ae.Method == "GET" && strings.HasSuffix(p, "/members") {
		return "list members"
	}
	return ae.Method + " member"
}

// failureText says in one line what failed and, for the failures an
// administrator meets, what it means. The Safe is in the result already, so
// PVWA answers are shown as method, status, code and message.
func failureText(err error) string {
	var ae *pam.APIError
	if !errors.As(err, &ae) {
		return err.Error()
	}
	what := ae.Method + " member: HTTP " + fmt.Sprint(ae.Status)
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
