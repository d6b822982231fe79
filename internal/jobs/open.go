package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Open binds to the streams, consumers and buckets an earlier Setup created,
// without creating or changing any stream: what a worker whose NATS user may
// not administer streams does (deploy/nats/accounts.conf). While something
// is missing (the planner has not run Setup yet) it logs and waits, retrying
// every few seconds until ctx ends. The consumers are looked up, not
// created. The returned Config is DefaultConfig with the streams' actual
// settings where they matter to workers (AckWait, MaxDeliver are read from
// the consumer by callers).
func Open(ctx context.Context, js jetstream.JetStream, log zerolog.Logger) (*Streams, error) {
	s := &Streams{Config: DefaultConfig()}
	var warned bool
	for {
		err := open(ctx, js, s)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) && !errors.Is(err, jetstream.ErrConsumerNotFound) &&
			!errors.Is(err, jetstream.ErrBucketNotFound) && !transient(err) {
			return nil, fmt.Errorf("jobs open: %w", err)
		}
		if !warned {
			log.Warn().Err(err).Msg("waiting for the safeperm streams (a planner or `planner setup` creates them)")
			warned = true
		}
		if serr := sleep(ctx, 2*time.Second); serr != nil {
			return nil, fmt.Errorf("jobs open: %w (last: %w)", serr, err)
		}
	}
}

func open(ctx context.Context, js jetstream.JetStream, s *Streams) error {
	actx, cancel := context.WithTimeout(ctx, s.Config.AdminTimeout)
	defer cancel()
	var err error
	if s.Jobs, err = js.Stream(actx, JobsStream); err != nil {
		return fmt.Errorf("stream %s: %w", JobsStream, err)
	}
	if s.Workers, err = s.Jobs.Consumer(actx, WorkersConsumer); err != nil {
		return fmt.Errorf("consumer %s: %w", WorkersConsumer, err)
	}
	if s.Results, err = js.Stream(actx, ResultsStream); err != nil {
		return fmt.Errorf("stream %s: %w", ResultsStream, err)
	}
	if s.DLQ, err = js.Stream(actx, DLQStream); err != nil {
		return fmt.Errorf("stream %s: %w", DLQStream, err)
	}
	if s.Advisories, err = js.Stream(actx, AdvisoriesStream); err != nil {
		return fmt.Errorf("stream %s: %w", AdvisoriesStream, err)
	}
	if s.DLQMover, err = s.Advisories.Consumer(actx, DLQMoverConsumer); err != nil {
		return fmt.Errorf("consumer %s: %w", DLQMoverConsumer, err)
	}
	if s.Runs, err = OpenRuns(actx, js); err != nil {
		return err
	}
	kv, err := js.KeyValue(actx, IntentsBucket)
	if err != nil {
		return fmt.Errorf("open bucket %s: %w", IntentsBucket, err)
	}
	s.Intents = &Intents{kv: kv}
	return nil
}
