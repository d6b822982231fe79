package jobs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/secret"
)

// ConnectOptions says how to reach NATS. Credentials are never logged.
type ConnectOptions struct {
	// URLs lists the servers, e.g. "nats://n1:4222"; several give
	// failover. Ignored when InProcess is set.
	URLs []string
	// InProcess connects to an embedded server through an in-process pipe
	// (pass the *natsembed.Server); no URL or TCP port is involved.
	InProcess nats.InProcessConnProvider
	// Name is the connection name the server shows, e.g. "safeperm-worker".
	Name string
	// CredsFile is a NATS credentials (JWT + seed) file.
	CredsFile string
	// User and Password authenticate with user/password.
	User     string
	Password secret.Value
	// TLSCA is a CA bundle to verify the server; TLSCert and TLSKey are a
	// client certificate for mutual TLS.
	TLSCA, TLSCert, TLSKey string
	// ReconnectWait is the pause between reconnect attempts; default 1s.
	// Reconnects never stop (MaxReconnects -1): JetStream work resumes when
	// the cluster is back.
	ReconnectWait time.Duration
	// ConnectTimeout bounds each connection attempt; default 5s.
	ConnectTimeout time.Duration
	// Logger receives disconnect, reconnect, close and async error events.
	Logger zerolog.Logger
}

// Connect opens a connection with safeperm's defaults: unlimited reconnects
// and connection events logged. The first connection is retried with
// backoff while no server answers (e.g. NATS still starting) until ctx ends;
// authentication and TLS errors fail at once. The caller Drains or Closes
// the connection.
func Connect(ctx context.Context, o ConnectOptions) (*nats.Conn, error) {
	if o.InProcess == nil && len(o.URLs) == 0 {
		return nil, errors.New("nats connect: no URLs")
	}
	if o.ReconnectWait <= 0 {
		o.ReconnectWait = time.Second
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	log := o.Logger.With().Str("component", "nats").Logger()
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(o.ReconnectWait),
		nats.Timeout(o.ConnectTimeout),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err == nil && nc.IsClosed() {
				return // our own Close, not an outage
			}
			ev := log.Warn()
			if err != nil {
				ev = ev.Err(err)
			}
			ev.Str("url", nc.ConnectedUrlRedacted()).Msg("disconnected from NATS")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str("url", nc.ConnectedUrlRedacted()).Uint64("reconnects", nc.Stats().Reconnects).Msg("reconnected to NATS")
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			ev := log.Debug()
			if err := nc.LastError(); err != nil {
				ev = log.Warn().Err(err)
			}
			ev.Msg("NATS connection closed")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := log.Error().Err(err)
			if sub != nil {
				ev = ev.Str("subscription", sub.Subject)
			}
			ev.Msg("NATS async error")
		}),
	}
	if o.InProcess != nil {
		opts = append(opts, nats.InProcessServer(o.InProcess))
	}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.User != "" || !o.Password.IsZero() {
		user, pw := o.User, o.Password
		// The handler keeps the password wrapped until the moment it is sent.
		opts = append(opts, nats.UserInfoHandler(func() (string, string) { return user, pw.Reveal() }))
	}
	if o.TLSCA != "" {
		opts = append(opts, nats.RootCAs(o.TLSCA))
	}
	if o.TLSCert != "" || o.TLSKey != "" {
		opts = append(opts, nats.ClientCert(o.TLSCert, o.TLSKey))
	}
	urls := strings.Join(o.URLs, ",")
	if o.InProcess != nil {
		urls = ""
	}

	bo := newBackoff(250*time.Millisecond, 5*time.Second)
	for attempt := 1; ; attempt++ {
		nc, err := nats.Connect(urls, opts...)
		if err == nil {
			log.Debug().Str("url", nc.ConnectedUrlRedacted()).Str("server", nc.ConnectedServerName()).Msg("connected to NATS")
			return nc, nil
		}
		var netErr net.Error // DNS not resolving yet, dial timeouts
		if !errors.Is(err, nats.ErrNoServers) && !errors.Is(err, nats.ErrTimeout) && !errors.As(err, &netErr) {
			return nil, fmt.Errorf("nats connect: %w", err)
		}
		d := bo.next()
		log.Warn().Err(err).Int("attempt", attempt).Dur("retry_in", d).Msg("NATS not reachable yet")
		if serr := sleep(ctx, d); serr != nil {
			return nil, fmt.Errorf("nats connect: %w (last error: %w)", serr, err)
		}
	}
}
