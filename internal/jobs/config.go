package jobs

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Config sizes the streams, consumers and bucket that Setup creates. Start
// from DefaultConfig; Validate before use.
type Config struct {
	// Replicas is the replication factor of every stream and the bucket:
	// 1 for the embedded server, 3 for a cluster. Default 1.
	Replicas int
	// Storage is FileStorage (default) or MemoryStorage (benchmarks and
	// throwaway tests only: a restart loses every job).
	Storage jetstream.StorageType
	// AckWait is how long a worker may hold a job without acking (or
	// calling InProgress) before it is redelivered. Default 60s. There is
	// deliberately no BackOff: the server would replace AckWait with
	// BackOff[0]. Workers delay retries with NakWithDelay instead.
	AckWait time.Duration
	// MaxDeliver is how many deliveries a job gets (Naks count) before the
	// dead-letter mover takes it. Default 8.
	MaxDeliver int
	// MaxAckPending caps the jobs in flight across all worker processes: the
	// global concurrency against the PVWA. Default 1024.
	MaxAckPending int
	// Duplicates is the Msg-ID dedup window of the jobs, results and DLQ
	// streams. A job or result re-published within it is dropped. Default 2h.
	Duplicates time.Duration
	// MaxJobs caps the pending jobs; a planner publishing beyond it waits
	// (DiscardNew backpressure). Default 2,000,000.
	MaxJobs int64
	// ResultsMaxAge is how long results (and run records) are kept.
	// Default 30 days.
	ResultsMaxAge time.Duration
	// DLQMaxAge is how long dead letters (and unhandled advisories) are
	// kept. Default 30 days.
	DLQMaxAge time.Duration
	// RunsHistory is how many revisions of each run record the bucket keeps
	// (1..64). Default 5.
	RunsHistory int
	// AdminTimeout bounds each attempt of a JetStream admin call (stream,
	// consumer and bucket creation); Setup retries failed attempts until its
	// context ends. Default 5s.
	AdminTimeout time.Duration
}

// Defaults of Config, as set by DefaultConfig.
const (
	DefaultAckWait       = 60 * time.Second
	DefaultMaxDeliver    = 8
	DefaultMaxAckPending = 1024
	DefaultDuplicates    = 2 * time.Hour
	DefaultMaxJobs       = 2_000_000
	DefaultResultsMaxAge = 30 * 24 * time.Hour
	DefaultDLQMaxAge     = 30 * 24 * time.Hour
	DefaultRunsHistory   = 5
	DefaultAdminTimeout  = 5 * time.Second
)

// DefaultConfig returns the defaults for a single embedded server.
func DefaultConfig() Config {
	return Config{
		Replicas:      1,
		Storage:       jetstream.FileStorage,
		AckWait:       DefaultAckWait,
		MaxDeliver:    DefaultMaxDeliver,
		MaxAckPending: DefaultMaxAckPending,
		Duplicates:    DefaultDuplicates,
		MaxJobs:       DefaultMaxJobs,
		ResultsMaxAge: DefaultResultsMaxAge,
		DLQMaxAge:     DefaultDLQMaxAge,
		RunsHistory:   DefaultRunsHistory,
		AdminTimeout:  DefaultAdminTimeout,
	}
}

// ConfigError is one invalid Config field.
type ConfigError struct {
	Field string // e.g. "AckWait"
	Value any    // the rejected value
	Msg   string // the rule, e.g. "want at least 1s"
}

// Error names the field, its value and the rule it breaks.
func (e *ConfigError) Error() string {
	return fmt.Sprintf("jobs config: %s=%v: %s", e.Field, e.Value, e.Msg)
}

// Validate returns every invalid field at once (errors.Join of
// *ConfigError), or nil.
func (c Config) Validate() error {
	var errs []error
	bad := func(field string, value any, msg string) {
		errs = append(errs, &ConfigError{Field: field, Value: value, Msg: msg})
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		bad("Replicas", c.Replicas, "want 1..5")
	}
	if c.Storage != jetstream.FileStorage && c.Storage != jetstream.MemoryStorage {
		bad("Storage", c.Storage, "want file or memory")
	}
	if c.AckWait < time.Second {
		bad("AckWait", c.AckWait, "want at least 1s")
	}
	if c.MaxDeliver < 1 {
		bad("MaxDeliver", c.MaxDeliver, "want at least 1")
	}
	if c.MaxAckPending < 1 {
		bad("MaxAckPending", c.MaxAckPending, "want at least 1")
	}
	if c.Duplicates < time.Second {
		bad("Duplicates", c.Duplicates, "want at least 1s")
	}
	if c.MaxJobs < 1 {
		bad("MaxJobs", c.MaxJobs, "want at least 1")
	}
	if c.ResultsMaxAge < c.Duplicates {
		bad("ResultsMaxAge", c.ResultsMaxAge, fmt.Sprintf("want at least Duplicates (%s)", c.Duplicates))
	}
	if c.DLQMaxAge < c.Duplicates {
		bad("DLQMaxAge", c.DLQMaxAge, fmt.Sprintf("want at least Duplicates (%s)", c.Duplicates))
	}
	if c.RunsHistory < 1 || c.RunsHistory > 64 {
		bad("RunsHistory", c.RunsHistory, "want 1..64")
	}
	if c.AdminTimeout <= 0 {
		bad("AdminTimeout", c.AdminTimeout, "want > 0")
	}
	return errors.Join(errs...)
}

// maxJobBytes bounds one job message; real jobs are a few hundred bytes.
const maxJobBytes = 64 << 10

// JobsStreamConfig returns the configuration Setup applies to JobsStream.
func (c Config) JobsStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:                 JobsStream,
		Description:          "safeperm pending jobs, one per Safe per run",
		Subjects:             []string{JobsSubjectPrefix + ">"},
		Retention:            jetstream.WorkQueuePolicy,
		Storage:              c.Storage,
		Replicas:             c.Replicas,
		MaxMsgs:              c.MaxJobs,
		MaxMsgsPerSubject:    1, // at most one pending job per Safe per run
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		MaxMsgSize:           maxJobBytes,
		Duplicates:           c.Duplicates,
	}
}

// ResultsStreamConfig returns the configuration Setup applies to
// ResultsStream.
func (c Config) ResultsStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        ResultsStream,
		Description: "safeperm job results, one per Safe per run",
		Subjects:    []string{ResultsSubjectPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     c.Storage,
		Replicas:    c.Replicas,
		MaxAge:      c.ResultsMaxAge,
		Discard:     jetstream.DiscardOld,
		Duplicates:  c.Duplicates,
	}
}

// DLQStreamConfig returns the configuration Setup applies to DLQStream.
func (c Config) DLQStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        DLQStream,
		Description: "safeperm dead-lettered jobs",
		Subjects:    []string{DLQSubjectPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     c.Storage,
		Replicas:    c.Replicas,
		MaxAge:      c.DLQMaxAge,
		Discard:     jetstream.DiscardOld,
		Duplicates:  c.Duplicates,
	}
}

// AdvisoriesStreamConfig returns the configuration Setup applies to
// AdvisoriesStream. Only max-deliveries advisories are captured: terminated
// jobs were already dead-lettered by the worker before it called Term, and a
// second kind of advisory in this work queue would only be noise every mover
// has to ack.
func (c Config) AdvisoriesStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        AdvisoriesStream,
		Description: "max-deliveries advisories of " + JobsStream + ", for the dead-letter mover",
		Subjects:    []string{MaxDeliveriesAdvisorySubjects},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     c.Storage,
		Replicas:    c.Replicas,
		MaxAge:      c.DLQMaxAge,
		Discard:     jetstream.DiscardOld,
	}
}

// WorkersConsumerConfig returns the configuration of WorkersConsumer.
func (c Config) WorkersConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       WorkersConsumer,
		Description:   "safeperm workers (shared)",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    c.MaxDeliver,
		MaxAckPending: c.MaxAckPending,
		FilterSubject: JobsSubjectPrefix + ">",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		// No BackOff: see Config.AckWait.
	}
}

// DLQMoverConsumerConfig returns the configuration of DLQMoverConsumer.
// MaxDeliver is unlimited: an advisory the mover could not handle (JOBS
// unavailable) must be retried until it succeeds.
func (c Config) DLQMoverConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       DLQMoverConsumer,
		Description:   "safeperm dead-letter movers (shared)",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    -1,
		MaxAckPending: 64,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// RunsBucketConfig returns the configuration of RunsBucket. Records live as
// long as results: TTL = ResultsMaxAge after their last update.
func (c Config) RunsBucketConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      RunsBucket,
		Description: "safeperm run records",
		History:     uint8(c.RunsHistory),
		TTL:         c.ResultsMaxAge,
		Storage:     c.Storage,
		Replicas:    c.Replicas,
	}
}

// IntentsBucketConfig returns the configuration of IntentsBucket: one
// revision per key, kept a day (an intent only matters until its job's
// result is published).
func (c Config) IntentsBucketConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      IntentsBucket,
		Description: "safeperm write intents: member state before a write, by run and Safe",
		History:     1,
		TTL:         24 * time.Hour,
		Storage:     c.Storage,
		Replicas:    c.Replicas,
	}
}

// LeasesBucketConfig returns the configuration of LeasesBucket: History 1
// and LimitMarkerTTL, which per-key TTLs need to expire (see LeasesBucket).
func (c Config) LeasesBucketConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:         LeasesBucket,
		Description:    "safeperm planner leases (per-key TTL)",
		History:        1,
		Storage:        c.Storage,
		Replicas:       c.Replicas,
		LimitMarkerTTL: time.Minute,
	}
}
