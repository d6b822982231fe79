package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Headers of a dead letter in DLQStream. The body is the job's original
// payload, byte for byte (it may not even be JSON).
const (
	// HeaderDLQReason says why the job was dead-lettered.
	HeaderDLQReason = "Safeperm-Dlq-Reason"
	// HeaderDLQSubject is the job's original subject.
	HeaderDLQSubject = "Safeperm-Dlq-Subject"
	// HeaderDLQStreamSeq is the job's sequence in JobsStream.
	HeaderDLQStreamSeq = "Safeperm-Dlq-Stream-Seq"
	// HeaderDLQDeliveries is how many times the job had been delivered.
	HeaderDLQDeliveries = "Safeperm-Dlq-Deliveries"
	// HeaderDLQTime is when it was dead-lettered (RFC 3339, UTC).
	HeaderDLQTime = "Safeperm-Dlq-Time"
	// HeaderDLQBy identifies the worker or mover that dead-lettered it.
	HeaderDLQBy = "Safeperm-Dlq-By"
)

// DeadLetterInfo describes a dead letter: the metadata kept in its headers.
type DeadLetterInfo struct {
	// Reason says why, e.g. "malformed: ..." or "max deliveries (8)".
	Reason string
	// Subject is the job's original subject.
	Subject string
	// StreamSeq is the job's sequence in JobsStream. Required: it makes the
	// dead letter's Msg-ID ("dlq/<seq>"), so dead-lettering is idempotent.
	StreamSeq uint64
	// Deliveries is how many times the job had been delivered.
	Deliveries uint64
	// By identifies who dead-lettered it.
	By string
	// Time is when; zero means now.
	Time time.Time
}

// DeadLetter stores data (a job's raw payload) in DLQStream on
// DLQSubject(run, safeKey) taken from info.Subject, with the metadata in
// headers and Msg-ID "dlq/<StreamSeq>", retrying transient errors. It is
// idempotent within the Duplicates window. Workers call it for a job they
// will Term (malformed, permanently failing) before calling
// TermWithReason: Term deletes the job from the work queue, so this is the
// only copy left.
func DeadLetter(ctx context.Context, js jetstream.JetStream, data []byte, info DeadLetterInfo) error {
	if info.StreamSeq == 0 {
		return errors.New("dead letter: StreamSeq is required")
	}
	if info.Time.IsZero() {
		info.Time = time.Now()
	}
	run, key, ok := ParseJobSubject(info.Subject)
	if !ok {
		run, key = "_", "_" // not a job subject: keep it, file it apart
	}
	id := "dlq/" + strconv.FormatUint(info.StreamSeq, 10)
	msg := &nats.Msg{
		Subject: DLQSubject(run, key),
		Data:    data,
		Header: nats.Header{
			jetstream.MsgIDHeader: {id},
			HeaderDLQReason:       {info.Reason},
			HeaderDLQSubject:      {info.Subject},
			HeaderDLQStreamSeq:    {strconv.FormatUint(info.StreamSeq, 10)},
			HeaderDLQDeliveries:   {strconv.FormatUint(info.Deliveries, 10)},
			HeaderDLQTime:         {info.Time.UTC().Format(time.RFC3339Nano)},
			HeaderDLQBy:           {info.By},
		},
	}
	err := retry(ctx, "dead letter "+id, 5*time.Second, 10, func(ctx context.Context) error {
		_, err := js.PublishMsg(ctx, msg)
		return err
	})
	if err != nil {
		return &PublishError{Subject: msg.Subject, MsgID: id, Err: err}
	}
	return nil
}

// DeadLetterMsg is DeadLetter for a job message a worker holds: the subject,
// stream sequence and delivery count come from msg. It does not Term msg.
func DeadLetterMsg(ctx context.Context, js jetstream.JetStream, msg jetstream.Msg, reason, by string) error {
	md, err := msg.Metadata()
	if err != nil {
		return fmt.Errorf("dead letter: %w", err)
	}
	return DeadLetter(ctx, js, msg.Data(), DeadLetterInfo{
		Reason: reason, Subject: msg.Subject(), StreamSeq: md.Sequence.Stream,
		Deliveries: md.NumDelivered, By: by,
	})
}

// ParseDeadLetterHeader reads the DeadLetterInfo back from a dead letter's
// headers (for tools listing the DLQ). Missing or unparsable numbers and
// times are left zero.
func ParseDeadLetterHeader(h nats.Header) DeadLetterInfo {
	info := DeadLetterInfo{
		Reason:  h.Get(HeaderDLQReason),
		Subject: h.Get(HeaderDLQSubject),
		By:      h.Get(HeaderDLQBy),
	}
	info.StreamSeq, _ = strconv.ParseUint(h.Get(HeaderDLQStreamSeq), 10, 64)
	info.Deliveries, _ = strconv.ParseUint(h.Get(HeaderDLQDeliveries), 10, 64)
	info.Time, _ = time.Parse(time.RFC3339Nano, h.Get(HeaderDLQTime))
	return info
}

// maxDeliverAdvisoryType is the "type" of a max-deliveries advisory.
const maxDeliverAdvisoryType = "io.nats.jetstream.advisory.v1.max_deliver"

// maxDeliverAdvisory is the part of the server's advisory the mover needs.
type maxDeliverAdvisory struct {
	Type       string `json:"type"`
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// RunDeadLetterMover moves jobs the workers consumer gave up on (MaxDeliver
// reached) to the DLQ. It consumes AdvisoriesStream through the shared
// durable DLQMoverConsumer, so run one in every worker process: each
// advisory is handled by one of them. For each max-deliveries advisory it
//
//  1. reads the job from JobsStream by sequence (gone already: ack, done);
//  2. dead-letters it with reason "max deliveries (N)";
//  3. if the job decodes, publishes a StatusFailed result with ErrorCode
//     ErrorCodeMaxDeliveries and the job's Msg-ID, which JetStream drops if
//     the job already reported;
//  4. deletes the job from JobsStream (it stays there otherwise: a work
//     queue keeps max-delivered messages);
//  5. acks the advisory.
//
// Every step is idempotent, so a crash anywhere is repaired by the
// redelivered advisory. A step that fails transiently Naks the advisory
// with a delay. One race remains by design: a worker whose last attempt is
// still running past AckWait may apply the change after the failed result
// was published; its own result is then dropped as a duplicate. Keep
// AckWait well above the worst job time (and heartbeat with InProgress).
//
// It returns nil when ctx ends, or an error if the consumer disappears.
func RunDeadLetterMover(ctx context.Context, js jetstream.JetStream, s *Streams, log zerolog.Logger) error {
	host, _ := os.Hostname()
	m := &mover{js: js, s: s, by: "dlq-mover/" + host, log: log.With().Str("component", "dlq-mover").Logger()}
	it, err := s.DLQMover.Messages(jetstream.PullMaxMessages(16))
	if err != nil {
		return fmt.Errorf("dlq mover: %w", err)
	}
	defer it.Stop()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
				errors.Is(err, jetstream.ErrConsumerNotFound) {
				return fmt.Errorf("dlq mover: %w", err)
			}
			m.log.Warn().Err(err).Msg("reading advisories")
			continue
		}
		m.handle(ctx, msg)
	}
}

type mover struct {
	js  jetstream.JetStream
	s   *Streams
	by  string
	log zerolog.Logger
}

func (m *mover) handle(ctx context.Context, msg jetstream.Msg) {
	var adv maxDeliverAdvisory
	if err := json.Unmarshal(msg.Data(), &adv); err != nil || adv.Type != maxDeliverAdvisoryType ||
		adv.Stream != JobsStream || adv.StreamSeq == 0 {
		m.log.Warn().Str("subject", msg.Subject()).Bytes("advisory", msg.Data()).Msg("ignoring unexpected advisory")
		_ = msg.Ack()
		return
	}
	if err := m.move(ctx, adv); err != nil {
		if ctx.Err() != nil {
			_ = msg.Nak() // shutting down: let another mover take it now
			return
		}
		delay := 5 * time.Second
		if md, merr := msg.Metadata(); merr == nil {
			delay = min(time.Duration(md.NumDelivered)*5*time.Second, 5*time.Minute)
		}
		m.log.Error().Err(err).Uint64("seq", adv.StreamSeq).Dur("retry_in", delay).Msg("moving dead job")
		_ = msg.NakWithDelay(delay)
		return
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := msg.DoubleAck(actx); err != nil {
		// Harmless: the redelivered advisory finds the job gone.
		m.log.Warn().Err(err).Uint64("seq", adv.StreamSeq).Msg("acking advisory")
	}
}

func (m *mover) move(ctx context.Context, adv maxDeliverAdvisory) error {
	seq := adv.StreamSeq
	var raw *jetstream.RawStreamMsg
	err := retry(ctx, "get job", 5*time.Second, 5, func(ctx context.Context) error {
		var err error
		raw, err = m.s.Jobs.GetMsg(ctx, seq)
		return err
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		m.log.Debug().Uint64("seq", seq).Msg("dead job already gone")
		return nil
	}
	if err != nil {
		return err
	}
	reason := fmt.Sprintf("max deliveries (%d)", adv.Deliveries)
	if err := DeadLetter(ctx, m.js, raw.Data, DeadLetterInfo{
		Reason: reason, Subject: raw.Subject, StreamSeq: seq, Deliveries: adv.Deliveries, By: m.by,
	}); err != nil {
		return err
	}
	log := m.log.With().Uint64("seq", seq).Str("subject", raw.Subject).Logger()
	if job, err := DecodeJob(raw.Data); err == nil {
		r := NewResult(job, StatusFailed, time.Now().UTC())
		r.ErrorCode = ErrorCodeMaxDeliveries
		r.Error = fmt.Sprintf("gave up after %d deliveries; job moved to %s", adv.Deliveries, DLQStream)
		r.Attempts = int(adv.Deliveries)
		r.Worker = m.by
		dup, err := PublishResult(ctx, m.js, r)
		if err != nil {
			return err
		}
		log = log.With().Str("run", job.Run).Str("safe", job.Safe.Name).Bool("already_reported", dup).Logger()
	} else {
		log.Warn().Err(err).Msg("dead job is malformed; no result published")
	}
	err = retry(ctx, "delete job", 5*time.Second, 5, func(ctx context.Context) error {
		return m.s.Jobs.DeleteMsg(ctx, seq)
	})
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return err
	}
	log.Warn().Str("reason", reason).Msg("job dead-lettered")
	return nil
}
