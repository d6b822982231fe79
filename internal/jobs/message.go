package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/safeperm/safeperm/internal/pam"
)

// Version is the major version of the Job, Result and Run JSON schemas this
// package writes and the only one it reads. Fields may be added within a
// major version (readers ignore unknown fields); removing or changing the
// meaning of a field needs a new major version.
const Version = 1

// ErrMalformed is wrapped by every error that says a message is not a valid
// Job or Result: not JSON, an unknown major version, a missing required
// field or an unknown enum value. A malformed job is permanent: dead-letter
// it and Term it, never retry it.
var ErrMalformed = errors.New("malformed message")

// Mode says what a run does to each Safe.
type Mode string

// The modes.
const (
	// ModeApply adds the missing permissions (read-modify-write).
	ModeApply Mode = "apply"
	// ModeCheck only reads and reports drift; it never writes.
	ModeCheck Mode = "check"
	// ModeRollback restores Job.Restore where the member still matches
	// Job.Expect. Reserved: the schema is fixed, workers may not support it
	// yet.
	ModeRollback Mode = "rollback"
)

// Valid reports whether m is one of the defined modes.
func (m Mode) Valid() bool {
	switch m {
	case ModeApply, ModeCheck, ModeRollback:
		return true
	}
	return false
}

// Status is the outcome of one job: the one closed set of outcomes used by
// the worker, the planner, reports, the watch view and metrics.
type Status string

// The outcomes.
const (
	// StatusApplied: the member lacked permissions (or was not a member) and
	// the worker wrote them.
	StatusApplied Status = "applied"
	// StatusUnchanged: the member already had every permission; nothing was
	// written.
	StatusUnchanged Status = "unchanged"
	// StatusDrift: check mode found permissions missing (Result.Missing).
	StatusDrift Status = "drift"
	// StatusSkipped: the Safe was deliberately left alone (Result.Reason),
	// e.g. excluded by scope or a system Safe. Published by the planner or
	// the worker.
	StatusSkipped Status = "skipped"
	// StatusFailed: the job could not be completed (Result.ErrorCode,
	// Result.Error), including jobs dead-lettered after MaxDeliver attempts.
	StatusFailed Status = "failed"
	// StatusConflict: the member changed under us (a concurrent edit, or a
	// rollback whose Expect no longer matches); nothing was overwritten.
	StatusConflict Status = "conflict"
)

var allStatuses = []Status{StatusApplied, StatusUnchanged, StatusDrift, StatusSkipped, StatusFailed, StatusConflict}

// AllStatuses returns every Status in a fixed order suitable for reports.
func AllStatuses() []Status { return append([]Status(nil), allStatuses...) }

// Valid reports whether s is one of the defined outcomes.
func (s Status) Valid() bool {
	switch s {
	case StatusApplied, StatusUnchanged, StatusDrift, StatusSkipped, StatusFailed, StatusConflict:
		return true
	}
	return false
}

// ErrorCodeMaxDeliveries is the Result.ErrorCode of a job the dead-letter
// mover gave up on after the workers consumer's MaxDeliver attempts.
const ErrorCodeMaxDeliveries = "MAX_DELIVERIES"

// SafeRef identifies a Safe.
type SafeRef struct {
	// URLID is the PVWA safeUrlId, used verbatim in request paths.
	URLID string `json:"urlId"`
	// Name is the Safe name (unique case-insensitively in the vault).
	Name string `json:"name"`
}

// MemberRef identifies the Safe member a run manages.
type MemberRef struct {
	// Name is the member name, e.g. "PSMAppUsers".
	Name string `json:"name"`
	// Type is the PVWA memberType: "User", "Group" or "Role".
	Type string `json:"type"`
	// SearchIn is the directory or "Vault" the member is looked up in when
	// it is added; empty lets the PVWA default apply.
	SearchIn string `json:"searchIn"`
}

// MemberState is a member as it was at one moment. A nil *MemberState means
// "not a member of the Safe".
type MemberState struct {
	// Permissions are the flags that were true.
	Permissions pam.PermSet `json:"permissions"`
	// Expiration is the membership expiration in Unix seconds; nil for none.
	Expiration *int64 `json:"expiration,omitempty"`
}

// Equal reports whether s and o describe the same state (both nil counts).
func (s *MemberState) Equal(o *MemberState) bool {
	if s == nil || o == nil {
		return s == o
	}
	if s.Permissions != o.Permissions {
		return false
	}
	if s.Expiration == nil || o.Expiration == nil {
		return s.Expiration == o.Expiration
	}
	return *s.Expiration == *o.Expiration
}

// Job asks a worker to ensure one member's permissions on one Safe.
type Job struct {
	// V is the schema major version, always Version.
	V int `json:"v"`
	// Run is the id of the run the job belongs to.
	Run string `json:"run"`
	// Mode is what to do.
	Mode Mode `json:"mode"`
	// Safe is the Safe to work on.
	Safe SafeRef `json:"safe"`
	// Member is the member to ensure.
	Member MemberRef `json:"member"`
	// Permissions are the flags the member must have (apply/check). Never
	// empty except in rollback jobs.
	Permissions pam.PermSet `json:"permissions"`
	// Restore is, for rollback, the state to put back (nil: remove the
	// member).
	Restore *MemberState `json:"restore,omitempty"`
	// Expect is, for rollback, the state the member must still be in for
	// the rollback to proceed; otherwise the result is StatusConflict.
	Expect *MemberState `json:"expect,omitempty"`
	// Created is when the planner made the job.
	Created time.Time `json:"created"`
}

// Key returns SafeKey(j.Safe.Name).
func (j Job) Key() string { return SafeKey(j.Safe.Name) }

// Subject returns the job's subject, JobSubject(j.Run, j.Key()).
func (j Job) Subject() string { return JobSubject(j.Run, j.Key()) }

// MsgID returns the job's Nats-Msg-Id, MsgID(j.Run, j.Key()).
func (j Job) MsgID() string { return MsgID(j.Run, j.Key()) }

// Validate checks every rule DecodeJob enforces. Errors wrap ErrMalformed.
func (j Job) Validate() error {
	var errs []error
	if j.V != Version {
		errs = append(errs, versionError(j.V))
	}
	if err := CheckRunID(j.Run); err != nil {
		errs = append(errs, err)
	}
	if !j.Mode.Valid() {
		errs = append(errs, fmt.Errorf("unknown mode %q", j.Mode))
	}
	if j.Safe.URLID == "" {
		errs = append(errs, errors.New("missing safe.urlId"))
	}
	if j.Safe.Name == "" {
		errs = append(errs, errors.New("missing safe.name"))
	}
	if j.Member.Name == "" {
		errs = append(errs, errors.New("missing member.name"))
	}
	if j.Member.Type == "" {
		errs = append(errs, errors.New("missing member.type"))
	}
	if j.Permissions.Len() == 0 && j.Mode != ModeRollback {
		errs = append(errs, errors.New("empty permissions"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: job: %w", ErrMalformed, errors.Join(errs...))
	}
	return nil
}

// Encode returns the JSON form of j after validating it.
func (j Job) Encode() ([]byte, error) {
	if err := j.Validate(); err != nil {
		return nil, err
	}
	b, err := appendJob(make([]byte, 0, jobSizeHint(&j)), &j)
	if err != nil {
		return nil, fmt.Errorf("%w: job: %w", ErrMalformed, err)
	}
	return b, nil
}

// DecodeJob parses and validates a job message. Unknown fields are ignored
// (forward compatibility); any other problem returns an error wrapping
// ErrMalformed.
func DecodeJob(data []byte) (Job, error) {
	var j Job
	if err := json.Unmarshal(data, &j); err != nil {
		return Job{}, fmt.Errorf("%w: job: %w", ErrMalformed, err)
	}
	if err := j.Validate(); err != nil {
		return Job{}, err
	}
	return j, nil
}

// Result reports the outcome of one job. Exactly one result per job reaches
// ResultsStream: it is published with the job's Msg-ID, so a redelivered job
// that already reported is dropped by JetStream.
type Result struct {
	// V is the schema major version, always Version.
	V int `json:"v"`
	// Run is the run id.
	Run string `json:"run"`
	// Mode is the job's mode.
	Mode Mode `json:"mode"`
	// Safe is the Safe the job was about.
	Safe SafeRef `json:"safe"`
	// Member is the member name.
	Member string `json:"member"`
	// Status is the outcome.
	Status Status `json:"status"`
	// Before is the member as read before any write (nil: not a member, or
	// not read).
	Before *MemberState `json:"before,omitempty"`
	// After is the member after the write (applied), or as read (others).
	After *MemberState `json:"after,omitempty"`
	// Missing lists, for drift, the flags the member lacks.
	Missing pam.PermSet `json:"missing,omitempty"`
	// ErrorCode is a stable machine-readable code for failed and conflict
	// results, e.g. ErrorCodeMaxDeliveries or a PVWA error code.
	ErrorCode string `json:"errorCode,omitempty"`
	// Error is the human-readable error of a failed or conflict result.
	Error string `json:"error,omitempty"`
	// Op is, for a failed result, the PVWA operation that failed: "GET
	// member", "PUT member", "POST member", "DELETE member" or "list
	// members"; empty when no PVWA call failed (MAX_DELIVERIES, RACE,
	// NOT_APPLIED). With ErrorCode it groups failures by cause.
	Op string `json:"op,omitempty"`
	// Reason says why a Safe was skipped.
	Reason string `json:"reason,omitempty"`
	// Attempts is the delivery count of the job when it finished.
	Attempts int `json:"attempts,omitempty"`
	// Worker identifies the process that produced the result.
	Worker string `json:"worker,omitempty"`
	// Time is when the result was produced.
	Time time.Time `json:"time"`
}

// Key returns SafeKey(r.Safe.Name).
func (r Result) Key() string { return SafeKey(r.Safe.Name) }

// Subject returns ResultSubject(r.Run, r.Status).
func (r Result) Subject() string { return ResultSubject(r.Run, r.Status) }

// MsgID returns MsgID(r.Run, r.Key()), the same id as the job's.
func (r Result) MsgID() string { return MsgID(r.Run, r.Key()) }

// Validate checks every rule DecodeResult enforces. Errors wrap ErrMalformed.
func (r Result) Validate() error {
	var errs []error
	if r.V != Version {
		errs = append(errs, versionError(r.V))
	}
	if err := CheckRunID(r.Run); err != nil {
		errs = append(errs, err)
	}
	if !r.Mode.Valid() {
		errs = append(errs, fmt.Errorf("unknown mode %q", r.Mode))
	}
	if r.Safe.Name == "" {
		errs = append(errs, errors.New("missing safe.name"))
	}
	if !r.Status.Valid() {
		errs = append(errs, fmt.Errorf("unknown status %q", r.Status))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: result: %w", ErrMalformed, errors.Join(errs...))
	}
	return nil
}

// Encode returns the JSON form of r after validating it.
func (r Result) Encode() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(r)
}

// DecodeResult parses and validates a result message. Unknown fields are
// ignored; any other problem returns an error wrapping ErrMalformed.
func DecodeResult(data []byte) (Result, error) {
	var r Result
	if err := json.Unmarshal(data, &r); err != nil {
		return Result{}, fmt.Errorf("%w: result: %w", ErrMalformed, err)
	}
	if err := r.Validate(); err != nil {
		return Result{}, err
	}
	return r, nil
}

// NewResult returns a Result for j with the identifying fields filled in
// (V, Run, Mode, Safe, Member) and the given status; the caller sets the
// rest.
func NewResult(j Job, status Status, now time.Time) Result {
	return Result{V: Version, Run: j.Run, Mode: j.Mode, Safe: j.Safe, Member: j.Member.Name, Status: status, Time: now}
}

func versionError(v int) error {
	if v == 0 {
		return errors.New("missing v")
	}
	return fmt.Errorf("unsupported version %d (this build reads %d)", v, Version)
}
