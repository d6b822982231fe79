package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/policy"
)

// Version is the major version of the Job, Result and Run JSON schemas this
// package writes. Fields may be added within a major version (readers
// ignore unknown fields); removing or changing the meaning of a field needs
// a new major version. Version 2 carries policy rules: a job holds every
// rule that applies to its Safe, a result one entry per member.
const Version = 2

// versionV1 is the first schema: one member and one permission set per job.
// Results and run records of version 1 are still read (converted), so
// reports and rollbacks of runs made before the upgrade work; jobs of
// version 1 are refused (a worker must not guess what an old planner meant).
const versionV1 = 1

// ErrMalformed is wrapped by every error that says a message is not a valid
// Job or Result: not JSON, an unknown major version, a missing required
// field or an unknown enum value. A malformed job is permanent: dead-letter
// it and Term it, never retry it.
var ErrMalformed = errors.New("malformed message")

// Mode says what a run does to each Safe.
type Mode string

// The modes.
const (
	// ModeApply brings the members in line with the rules
	// (read-modify-write).
	ModeApply Mode = "apply"
	// ModeCheck only reads and reports what apply would change (drift);
	// it never writes.
	ModeCheck Mode = "check"
	// ModeRollback puts back each member of Job.Restore where it still
	// is as the run being undone left it.
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

// MemberRef identifies a Safe member and says how to add it: the policy's
// member type.
type MemberRef = policy.Member

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

// Restore is one member of a rollback job: put it back to To (nil: remove
// it) where it is still in Expect (nil: not a member), the state the run
// being undone left; anything else is a conflict and is left alone.
type Restore struct {
	// Rule names the rule(s) of the run being undone that changed the
	// member.
	Rule string `json:"rule,omitempty"`
	// Member is the member, with the type and directory to add it again.
	Member MemberRef `json:"member"`
	// To is the state to put back; nil removes the member (the run added
	// it).
	To *MemberState `json:"to"`
	// Expect is the state the member must still be in; nil means it must
	// still be absent (the run removed it).
	Expect *MemberState `json:"expect"`
}

// Job asks a worker to bring the members of one Safe in line with every
// rule that applies to it (apply, check), or to undo what a run did to them
// (rollback).
type Job struct {
	// V is the schema major version, always Version.
	V int `json:"v"`
	// Run is the id of the run the job belongs to.
	Run string `json:"run"`
	// Mode is what to do.
	Mode Mode `json:"mode"`
	// Safe is the Safe to work on.
	Safe SafeRef `json:"safe"`
	// Rules are the rules that apply to the Safe, in policy order (apply
	// and check; at least one).
	Rules []policy.Directive `json:"rules,omitempty"`
	// Restore lists, for rollback, the members to put back (at least one).
	Restore []Restore `json:"restore,omitempty"`
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
	switch {
	case j.Mode == ModeRollback:
		if len(j.Restore) == 0 {
			errs = append(errs, errors.New("rollback job without restore"))
		}
		for i, r := range j.Restore {
			if strings.TrimSpace(r.Member.Name) == "" {
				errs = append(errs, fmt.Errorf("restore[%d]: missing member.name", i))
			}
			if r.To != nil && r.Member.Type == "" {
				errs = append(errs, fmt.Errorf("restore[%d]: missing member.type", i))
			}
		}
	case len(j.Rules) == 0:
		errs = append(errs, errors.New("no rules"))
	default:
		for i, d := range j.Rules {
			if err := d.Validate(); err != nil {
				errs = append(errs, fmt.Errorf("rules[%d]: %w", i, err))
			}
		}
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
// (forward compatibility); any other problem, a job of another version
// included, returns an error wrapping ErrMalformed.
func DecodeJob(data []byte) (Job, error) {
	var j Job
	if err := json.Unmarshal(data, &j); err != nil {
		if v := peekVersion(data); v != 0 && v != Version {
			return Job{}, fmt.Errorf("%w: job: %w", ErrMalformed, versionError(v))
		}
		return Job{}, fmt.Errorf("%w: job: %w", ErrMalformed, err)
	}
	if err := j.Validate(); err != nil {
		return Job{}, err
	}
	return j, nil
}

// peekVersion returns the "v" of a JSON object, 0 when there is none.
func peekVersion(data []byte) int {
	var h struct {
		V int `json:"v"`
	}
	_ = json.Unmarshal(data, &h)
	return h.V
}

// MemberResult is what a job found and did for one member of its Safe.
type MemberResult struct {
	// Rule names the rule that concerns the member; several are joined
	// with commas.
	Rule string `json:"rule"`
	// Member is the member, with its type and directory when a rule gave
	// them (a rollback adds a removed member back with them).
	Member MemberRef `json:"member"`
	// Status is the member's outcome: applied, unchanged, drift (check
	// mode: it would change), skipped (never written, Reason says why),
	// failed or conflict (rollback: it changed since the run).
	Status Status `json:"status"`
	// Change is what was (or, in check mode, would be) done: ChangeAdd,
	// ChangeUpdate, ChangeRemove, or "" for nothing.
	Change Change `json:"change,omitempty"`
	// Before is the member as read before any write (nil: not a member).
	Before *MemberState `json:"before,omitempty"`
	// After is the member after the write, or as it would be (check), or
	// as read (unchanged and others); nil: not a member.
	After *MemberState `json:"after,omitempty"`
	// Added and Removed are the flags set and cleared (or that would be).
	Added   pam.PermSet `json:"added,omitzero"`
	Removed pam.PermSet `json:"removed,omitzero"`
	// ErrorCode and Error say why a failed or conflict member failed.
	ErrorCode string `json:"errorCode,omitempty"`
	Error     string `json:"error,omitempty"`
	// Reason says why a member was skipped or left as it is.
	Reason string `json:"reason,omitempty"`
}

// Change is what a job does to one member.
type Change string

// The changes.
const (
	// ChangeAdd: the member was not a member and is added.
	ChangeAdd Change = "add"
	// ChangeUpdate: the member's flags (or expiry) are rewritten.
	ChangeUpdate Change = "update"
	// ChangeRemove: the member is removed.
	ChangeRemove Change = "remove"
)

// ChangeOf returns the change from before to after and the flags added and
// removed.
func ChangeOf(before, after *MemberState) (Change, pam.PermSet, pam.PermSet) {
	switch {
	case before == nil && after == nil:
		return "", 0, 0
	case before == nil:
		return ChangeAdd, after.Permissions, 0
	case after == nil:
		return ChangeRemove, 0, before.Permissions
	case before.Equal(after):
		return "", 0, 0
	}
	return ChangeUpdate, after.Permissions &^ before.Permissions, before.Permissions &^ after.Permissions
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
	// Status is the Safe's outcome, the most telling of its members'
	// (SafeStatus); the subject and the counts use it.
	Status Status `json:"status"`
	// Members has one entry per member the rules concern (empty for a
	// Safe skipped by the planner, or a job that failed before reading).
	Members []MemberResult `json:"members,omitempty"`
	// ErrorCode is a stable machine-readable code for failed and conflict
	// results, e.g. ErrorCodeMaxDeliveries, ErrorCodePolicyConflict or a
	// PVWA error code.
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

// ErrorCodePolicyConflict is the Result.ErrorCode of a Safe on which two
// rules set the same flag of the same member to different values: nothing
// was written on it.
const ErrorCodePolicyConflict = "POLICY_CONFLICT"

// SafeStatus is the outcome of a Safe from its members' outcomes: failed,
// then conflict, drift, applied, unchanged, skipped, in that order of
// precedence. A Safe with no member entry is unchanged.
func SafeStatus(ms []MemberResult) Status {
	has := map[Status]bool{}
	for _, m := range ms {
		has[m.Status] = true
	}
	for _, s := range []Status{StatusFailed, StatusConflict, StatusDrift, StatusApplied, StatusUnchanged, StatusSkipped} {
		if has[s] {
			return s
		}
	}
	return StatusUnchanged
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
	for i, m := range r.Members {
		if !m.Status.Valid() {
			errs = append(errs, fmt.Errorf("members[%d]: unknown status %q", i, m.Status))
		}
		if m.Member.Name == "" {
			errs = append(errs, fmt.Errorf("members[%d]: missing member.name", i))
		}
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
// ignored; any other problem returns an error wrapping ErrMalformed. A
// version 1 result (one member per run) is converted: its member becomes
// the one entry of Members, under the rule name RuleV1.
func DecodeResult(data []byte) (Result, error) {
	if peekVersion(data) == versionV1 {
		return decodeResultV1(data)
	}
	var r Result
	if err := json.Unmarshal(data, &r); err != nil {
		return Result{}, fmt.Errorf("%w: result: %w", ErrMalformed, err)
	}
	if err := r.Validate(); err != nil {
		return Result{}, err
	}
	return r, nil
}

// RuleV1 is the rule name given to the member of a converted version 1
// result: runs of that version had one rule, from the --member and
// --permissions flags.
const RuleV1 = "flags"

// resultV1 is a version 1 result.
type resultV1 struct {
	Run       string       `json:"run"`
	Mode      Mode         `json:"mode"`
	Safe      SafeRef      `json:"safe"`
	Member    string       `json:"member"`
	Status    Status       `json:"status"`
	Before    *MemberState `json:"before"`
	After     *MemberState `json:"after"`
	Missing   pam.PermSet  `json:"missing"`
	ErrorCode string       `json:"errorCode"`
	Error     string       `json:"error"`
	Reason    string       `json:"reason"`
	Attempts  int          `json:"attempts"`
	Worker    string       `json:"worker"`
	Time      time.Time    `json:"time"`
}

func decodeResultV1(data []byte) (Result, error) {
	var o resultV1
	if err := json.Unmarshal(data, &o); err != nil {
		return Result{}, fmt.Errorf("%w: result (v1): %w", ErrMalformed, err)
	}
	r := Result{V: Version, Run: o.Run, Mode: o.Mode, Safe: o.Safe, Status: o.Status, ErrorCode: o.ErrorCode,
		Error: o.Error, Reason: o.Reason, Attempts: o.Attempts, Worker: o.Worker, Time: o.Time}
	if o.Member != "" && o.Status != StatusSkipped {
		m := MemberResult{Rule: RuleV1, Member: MemberRef{Name: o.Member}, Status: o.Status, Before: o.Before, After: o.After,
			ErrorCode: o.ErrorCode, Error: o.Error}
		switch o.Status {
		case StatusApplied:
			m.Change, m.Added, m.Removed = ChangeOf(o.Before, o.After)
		case StatusDrift:
			m.Added = o.Missing
			m.Change = ChangeUpdate
			if o.Before == nil {
				m.Change = ChangeAdd
			}
		}
		r.Members = []MemberResult{m}
	}
	if err := r.Validate(); err != nil {
		return Result{}, err
	}
	return r, nil
}

// NewResult returns a Result for j with the identifying fields filled in
// (V, Run, Mode, Safe) and the given status; the caller sets the rest.
func NewResult(j Job, status Status, now time.Time) Result {
	return Result{V: Version, Run: j.Run, Mode: j.Mode, Safe: j.Safe, Status: status, Time: now}
}

func versionError(v int) error {
	if v == 0 {
		return errors.New("missing v")
	}
	return fmt.Errorf("unsupported version %d (this build reads %d)", v, Version)
}
