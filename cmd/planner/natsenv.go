package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/cliconf"
	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/natsembed"
)

// natsEnv is a connection to JetStream with safeperm's streams: to the
// external servers of --nats-url, or to an embedded server storing under
// --data-dir.
type natsEnv struct {
	srv     *natsembed.Server // nil for external servers
	nc      *nats.Conn
	js      jetstream.JetStream
	streams *jobs.Streams
}

// connectTimeout bounds how long the planner commands try to reach the
// external NATS servers at start.
const connectTimeout = 20 * time.Second

// setupTimeout bounds the creation of the streams and buckets.
const setupTimeout = 60 * time.Second

// embeddedOptions says how to run the embedded server.
type embeddedOptions struct {
	DataDir string
	Listen  string
}

// openNATS connects and runs Setup (creating or updating the streams). The
// embedded server is started when ns names no server.
func openNATS(ctx context.Context, ns cliconf.NATSSettings, emb embeddedOptions, name string, log zerolog.Logger) (*natsEnv, error) {
	e := &natsEnv{}
	var err error
	cfg := jobs.DefaultConfig()
	if ns.Embedded() {
		dir, aerr := filepath.Abs(emb.DataDir)
		if aerr != nil {
			return nil, &cliconf.UsageError{Err: fmt.Errorf("--data-dir %q: %w", emb.DataDir, aerr)}
		}
		if merr := os.MkdirAll(dir, 0o700); merr != nil {
			return nil, &cliconf.UsageError{Err: fmt.Errorf("--data-dir %q: %w", emb.DataDir, merr)}
		}
		e.srv, err = natsembed.Start(ctx, natsembed.Options{StoreDir: dir, Listen: emb.Listen, Logger: log.Level(max(log.GetLevel(), zerolog.WarnLevel))})
		if err != nil {
			return nil, fmt.Errorf("start the embedded NATS server in %s: %w", dir, err)
		}
		if emb.Listen != "" {
			log.Info().Str("url", e.srv.ClientURL()).Msg("embedded NATS server listening: follow the run from another terminal with planner watch --nats-url")
		}
		e.nc, err = jobs.Connect(ctx, jobs.ConnectOptions{InProcess: e.srv, Name: name, Logger: log})
	} else {
		cfg.Replicas = ns.Replicas
		// A command line tool gives up on servers it cannot reach; the
		// workers, which are services, keep trying.
		cctx, cancel := context.WithTimeout(ctx, connectTimeout)
		e.nc, err = jobs.Connect(cctx, ns.ConnectOptions(name, log))
		cancel()
	}
	if err != nil {
		e.Close()
		return nil, &cliconf.ExitError{Code: cliconf.ExitUsage, Err: fmt.Errorf("connect to NATS: %w", err)}
	}
	if e.js, err = jetstream.New(e.nc); err != nil {
		e.Close()
		return nil, err
	}
	// Setup retries while the cluster is not ready; a configuration it can
	// never place (3 replicas on one server) must not hang the command.
	sctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	if e.streams, err = jobs.Setup(sctx, e.js, cfg); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Close drains the connection and stops the embedded server.
func (e *natsEnv) Close() {
	if e.nc != nil {
		_ = e.nc.Flush()
		e.nc.Close()
	}
	if e.srv != nil {
		e.srv.Shutdown()
	}
}
