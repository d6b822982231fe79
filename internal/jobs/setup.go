package jobs

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Streams holds handles on everything Setup created. The handles are safe
// for concurrent use; their cached info is a snapshot from Setup.
type Streams struct {
	// Config is the configuration Setup applied.
	Config Config
	// Jobs is JobsStream; Workers is its shared pull consumer.
	Jobs    jetstream.Stream
	Workers jetstream.Consumer
	// Results is ResultsStream.
	Results jetstream.Stream
	// DLQ is DLQStream.
	DLQ jetstream.Stream
	// Advisories is AdvisoriesStream; DLQMover is its shared pull consumer.
	Advisories jetstream.Stream
	DLQMover   jetstream.Consumer
	// Runs is the run record and lease store over RunsBucket and
	// LeasesBucket.
	Runs *Runs
	// Intents is the write-intent store over IntentsBucket.
	Intents *Intents
}

// Setup creates or updates every stream, consumer and KV bucket
// safeperm needs, so it is idempotent and safe to run from every process at
// start-up (concurrent calls converge on the same configuration). Each admin
// call gets cfg.AdminTimeout per attempt and is retried with backoff while
// the error is transient (e.g. a cluster still electing its meta leader)
// until ctx ends; bound ctx accordingly (e.g. 30-60s for a fresh cluster).
//
// Every process of a deployment should pass the same Config: the last
// Setup wins. A configuration the server cannot apply in place (changing Storage, or
// the retention of an existing stream) returns an error; fix it by hand.
func Setup(ctx context.Context, js jetstream.JetStream, cfg Config) (*Streams, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Streams{Config: cfg}
	stream := func(sc jetstream.StreamConfig, out *jetstream.Stream) error {
		return retry(ctx, "create stream "+sc.Name, cfg.AdminTimeout, 0, func(ctx context.Context) error {
			st, err := js.CreateOrUpdateStream(ctx, sc)
			if err == nil {
				*out = st
			}
			return err
		})
	}
	consumer := func(st jetstream.Stream, cc jetstream.ConsumerConfig, out *jetstream.Consumer) error {
		return retry(ctx, "create consumer "+cc.Durable, cfg.AdminTimeout, 0, func(ctx context.Context) error {
			c, err := st.CreateOrUpdateConsumer(ctx, cc)
			if err == nil {
				*out = c
			}
			return err
		})
	}
	bucket := func(kc jetstream.KeyValueConfig, out *jetstream.KeyValue) error {
		return retry(ctx, "create bucket "+kc.Bucket, cfg.AdminTimeout, 0, func(ctx context.Context) error {
			kv, err := js.CreateOrUpdateKeyValue(ctx, kc)
			if err == nil {
				*out = kv
			}
			return err
		})
	}
	var runsKV, leasesKV, intentsKV jetstream.KeyValue
	steps := []func() error{
		func() error { return stream(cfg.JobsStreamConfig(), &s.Jobs) },
		func() error { return consumer(s.Jobs, cfg.WorkersConsumerConfig(), &s.Workers) },
		func() error { return stream(cfg.ResultsStreamConfig(), &s.Results) },
		func() error { return stream(cfg.DLQStreamConfig(), &s.DLQ) },
		func() error { return stream(cfg.AdvisoriesStreamConfig(), &s.Advisories) },
		func() error { return consumer(s.Advisories, cfg.DLQMoverConsumerConfig(), &s.DLQMover) },
		func() error { return bucket(cfg.RunsBucketConfig(), &runsKV) },
		func() error { return bucket(cfg.LeasesBucketConfig(), &leasesKV) },
		func() error { return bucket(cfg.IntentsBucketConfig(), &intentsKV) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, fmt.Errorf("jobs setup: %w", err)
		}
	}
	s.Runs = NewRuns(js, runsKV, leasesKV)
	s.Intents = &Intents{kv: intentsKV}
	return s, nil
}
