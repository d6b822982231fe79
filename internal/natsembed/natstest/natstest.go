// Package natstest starts an embedded JetStream server for a test, the way
// net/http/httptest starts an HTTP server: real nats-server, file storage in
// the test's temporary directory, torn down with the test.
package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/natsembed"
)

// Env is one embedded server and a client connection to it.
type Env struct {
	Server *natsembed.Server
	Conn   *nats.Conn
	JS     jetstream.JetStream
}

// Start starts an in-process server (listen "" for in-process only, or e.g.
// "127.0.0.1:0" to accept TCP clients too) and connects to it.
func Start(t testing.TB, listen string) *Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := natsembed.Start(ctx, natsembed.Options{StoreDir: t.TempDir(), Listen: listen})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := srv.Connect()
	if err != nil {
		srv.Shutdown()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		nc.Close()
		srv.Shutdown()
	})
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &Env{Server: srv, Conn: nc, JS: js}
}

// Setup runs jobs.Setup with DefaultConfig changed by mutate (may be nil).
func (e *Env) Setup(t testing.TB, mutate func(*jobs.Config)) *jobs.Streams {
	t.Helper()
	cfg := jobs.DefaultConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := jobs.Setup(ctx, e.JS, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
