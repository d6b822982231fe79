package jobs

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// Stream, consumer and bucket names. They are fixed: every safeperm process
// of a deployment must agree on them.
const (
	// JobsStream holds pending jobs (work-queue retention).
	JobsStream = "SAFEPERM_JOBS"
	// ResultsStream holds one result per job (limits retention, MaxAge).
	ResultsStream = "SAFEPERM_RESULTS"
	// DLQStream holds dead-lettered jobs (limits retention, MaxAge).
	DLQStream = "SAFEPERM_DLQ"
	// AdvisoriesStream captures the server's max-deliveries advisories for
	// JobsStream (work-queue retention), read by the dead-letter mover.
	AdvisoriesStream = "SAFEPERM_ADVISORIES"

	// WorkersConsumer is the durable pull consumer every worker shares.
	WorkersConsumer = "workers"
	// DLQMoverConsumer is the durable pull consumer on AdvisoriesStream that
	// every dead-letter mover shares, so each advisory is handled once.
	DLQMoverConsumer = "dlq-mover"

	// RunsBucket is the KV bucket holding run records, key "<run>".
	RunsBucket = "safeperm_runs"
	// LeasesBucket is the KV bucket holding planner leases, key "<run>".
	// It is separate from RunsBucket because per-key TTLs only expire in a
	// bucket with History 1 (verified on nats-server 2.15.2: with History 5
	// a key created with KeyTTL(1s) was still there after 12s).
	LeasesBucket = "safeperm_leases"
	// IntentsBucket is the KV bucket of write intents, key "<run>.<safeKey>":
	// the member state a worker read before it wrote (see Intents).
	IntentsBucket = "safeperm_intents"
)

// Subject prefixes. A full subject appends "<run>.<token>".
const (
	JobsSubjectPrefix    = "safeperm.jobs."
	ResultsSubjectPrefix = "safeperm.results."
	DLQSubjectPrefix     = "safeperm.dlq."
	// MaxDeliveriesAdvisorySubjects is what AdvisoriesStream captures: the
	// server's advisory when a JobsStream consumer gives up on a message.
	MaxDeliveriesAdvisorySubjects = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + JobsStream + ".>"
)

// ValidRunID reports whether id is a valid run id: 1 to 64 characters from
// [A-Za-z0-9_-] (^[A-Za-z0-9_-]{1,64}$). Such an id is a valid NATS subject
// token and KV key.
func ValidRunID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// CheckRunID returns an error naming id when it is not a valid run id.
func CheckRunID(id string) error {
	if !ValidRunID(id) {
		return fmt.Errorf("invalid run id %q: want 1-64 characters from [A-Za-z0-9_-]", id)
	}
	return nil
}

// NewRunID returns a fresh run id made of now in UTC and 6 random hex digits,
// e.g. "20261123T094512Z-3f9a2c". Ids sort by start time.
func NewRunID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// SafeKey returns the token that stands for a Safe in subjects, Msg-IDs and
// KV keys: the unpadded base64url encoding of the lower-cased Safe name, e.g.
// SafeKey("Linux Root") == "bGludXggcm9vdA". It uses only [A-Za-z0-9_-].
//
// Safe names are unique case-insensitively in the vault, so two Safes never
// share a key, and "Linux Root" and "LINUX ROOT" (the same Safe as reported
// by two PVWA calls) always do. The real name travels in the payload.
func SafeKey(safeName string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strings.ToLower(safeName)))
}

// JobSubject returns "safeperm.jobs.<run>.<safeKey>", the subject of the job
// for one Safe in one run.
func JobSubject(run, safeKey string) string {
	return JobsSubjectPrefix + run + "." + safeKey
}

// JobsFilter returns the subject filter matching every job of run.
func JobsFilter(run string) string { return JobsSubjectPrefix + run + ".*" }

// ResultSubject returns "safeperm.results.<run>.<status>".
func ResultSubject(run string, status Status) string {
	return ResultsSubjectPrefix + run + "." + string(status)
}

// ResultsFilter returns the subject filter matching every result of run.
func ResultsFilter(run string) string { return ResultsSubjectPrefix + run + ".*" }

// DLQSubject returns "safeperm.dlq.<run>.<safeKey>".
func DLQSubject(run, safeKey string) string {
	return DLQSubjectPrefix + run + "." + safeKey
}

// MsgID returns "<run>/<safeKey>", the Nats-Msg-Id of both the job and the
// result for one Safe in one run. JetStream drops a second publish with the
// same id inside the stream's Duplicates window, which makes re-planning and
// re-reporting idempotent.
func MsgID(run, safeKey string) string { return run + "/" + safeKey }

// ParseJobSubject splits "safeperm.jobs.<run>.<safeKey>" into its run and
// Safe key. ok is false for any other subject.
func ParseJobSubject(subject string) (run, safeKey string, ok bool) {
	rest, found := strings.CutPrefix(subject, JobsSubjectPrefix)
	if !found {
		return "", "", false
	}
	run, safeKey, found = strings.Cut(rest, ".")
	if !found || !ValidRunID(run) || safeKey == "" || strings.Contains(safeKey, ".") {
		return "", "", false
	}
	return run, safeKey, true
}
