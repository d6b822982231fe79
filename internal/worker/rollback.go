package worker

import (
	"context"
	"errors"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/pam"
)

// rollback restores the member to job.Restore (nil: it was not a member, so
// it is removed), but only where it still holds exactly job.Expect, what the
// run being undone left. Anything else is a conflict and is left alone.
func (e *Executor) rollback(ctx context.Context, job jobs.Job, p *progress) (jobs.Result, error) {
	m, err := e.PVWA.Member(ctx, job.Safe.URLID, job.Member.Name)
	var cur *jobs.MemberState
	switch {
	case err == nil:
		cur = stateOf(m)
	case errors.Is(err, pam.ErrMemberNotFound):
	default:
		return jobs.Result{}, err
	}
	if !p.read {
		p.read, p.before = true, cur
	}
	if sameState(cur, job.Restore) {
		status := jobs.StatusUnchanged
		done, err := e.doneBefore(ctx, job, p)
		if err != nil {
			return jobs.Result{}, err
		}
		if done {
			status = jobs.StatusApplied
		}
		return result(job, status, p.before, cur), nil
	}
	if !sameState(cur, job.Expect) {
		r := result(job, jobs.StatusConflict, cur, cur)
		r.Reason = "member changed since the run; left alone"
		return r, nil
	}
	if err := e.intend(ctx, job, p); err != nil {
		return jobs.Result{}, err
	}
	if job.Restore == nil {
		err := e.PVWA.DeleteMember(ctx, job.Safe.URLID, m.Name)
		if err != nil && !errors.Is(err, pam.ErrMemberNotFound) {
			return jobs.Result{}, err
		}
		return result(job, jobs.StatusApplied, p.before, nil), nil
	}
	upd, err := e.PVWA.UpdateMember(ctx, job.Safe.URLID, m.Name, pam.MemberUpdate{
		Permissions:      job.Restore.Permissions,
		ExtraPermissions: m.ExtraPermissions,
		Expiration:       job.Restore.Expiration,
	})
	if errors.Is(err, pam.ErrMemberNotFound) {
		return jobs.Result{}, errRace
	}
	if err != nil {
		return jobs.Result{}, err
	}
	return result(job, jobs.StatusApplied, p.before, stateOf(upd)), nil
}

// sameState compares two member states; nil means "not a member".
func sameState(a, b *jobs.MemberState) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	if a.Permissions != b.Permissions {
		return false
	}
	if (a.Expiration == nil) != (b.Expiration == nil) {
		return false
	}
	return a.Expiration == nil || *a.Expiration == *b.Expiration
}
