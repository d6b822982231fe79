package jobs

import (
	"context"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// SetLeasePublish makes the leases of r publish their writes (acquire,
// takeover, renewals) with publish instead of JetStream's PublishMsg, so a
// test can lose an acknowledgement. Call it before r's first AcquireLease.
func SetLeasePublish(r *Runs, publish func(context.Context, *nats.Msg, ...jetstream.PublishOpt) (*jetstream.PubAck, error)) {
	r.publishLease = publish
}
