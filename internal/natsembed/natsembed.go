// Package natsembed runs a nats-server with JetStream inside the safeperm
// process: the single-machine default, and the server every test talks to.
//
// The server never installs signal handlers (NoSigs), so SIGINT/SIGTERM reach
// safeperm's own graceful shutdown instead of the server calling os.Exit. Its
// log lines go through the caller's zerolog.Logger with component=nats-server.
//
// Typical use:
//
//	srv, err := natsembed.Start(ctx, natsembed.Options{StoreDir: dir, Logger: log})
//	if err != nil { ... }
//	defer srv.Shutdown()            // after every client has drained
//	nc, err := srv.Connect()        // in-process pipe, no TCP port
package natsembed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// DefaultReadyTimeout bounds how long Start waits for the server to accept
// clients when Options.ReadyTimeout is zero.
const DefaultReadyTimeout = 15 * time.Second

// Options configures an embedded server.
type Options struct {
	// StoreDir is the JetStream storage directory (the server appends
	// "/jetstream"). Required: an embedded server never guesses where to
	// keep job data.
	StoreDir string
	// Listen is "" for an in-process only server (no TCP port at all;
	// clients use Server.Connect), or "host:port" to also accept TCP
	// clients, e.g. "127.0.0.1:4222". Port 0 picks a free port; read it back
	// with ClientURL.
	Listen string
	// Logger receives the server's log lines. The zero Logger discards them.
	// Debug and trace lines are enabled when the logger's level allows them.
	Logger zerolog.Logger
	// SyncAlways fsyncs every JetStream write. Without it the file store
	// syncs every 2 minutes, so a single-node run can lose the last writes
	// on power loss (not on a process crash).
	SyncAlways bool
	// ServerName names the server in logs and in a cluster; default
	// "safeperm-embedded". Must be unique within a cluster.
	ServerName string
	// ReadyTimeout bounds the wait for the server to accept clients;
	// default DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// MaxMemory and MaxStore limit JetStream memory and file storage in
	// bytes; 0 means the server's default (a share of the machine).
	MaxMemory, MaxStore int64
	// Cluster, when set, makes this server a member of a JetStream cluster.
	// Most callers use StartCluster instead.
	Cluster *ClusterOptions
}

// ClusterOptions joins an embedded server to a cluster.
type ClusterOptions struct {
	// Name is the cluster name, the same on every node.
	Name string
	// Listen is the route listen address "host:port" of this node.
	Listen string
	// Routes lists the route URLs of every node (including this one),
	// e.g. "nats-route://127.0.0.1:16222".
	Routes []string
}

// Server is a running embedded nats-server. Its methods are safe for
// concurrent use.
type Server struct {
	ns        *server.Server
	listening bool
	log       zerolog.Logger
	once      sync.Once
}

// Start starts a server with JetStream and waits until it accepts clients,
// the ready timeout expires or ctx ends. On error nothing is left running.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("natsembed: StoreDir is required")
	}
	if o.ServerName == "" {
		o.ServerName = "safeperm-embedded"
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	sopts := &server.Options{
		ServerName:         o.ServerName,
		JetStream:          true,
		StoreDir:           o.StoreDir,
		NoSigs:             true, // never let the server os.Exit on SIGTERM
		SyncAlways:         o.SyncAlways,
		JetStreamMaxMemory: o.MaxMemory,
		JetStreamMaxStore:  o.MaxStore,
		// No HTTP monitoring port: an embedded server exposes nothing
		// beyond what Listen asks for.
		HTTPPort: 0,
	}
	if o.Listen == "" {
		sopts.DontListen = true
	} else {
		host, port, err := splitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("natsembed: Listen: %w", err)
		}
		sopts.Host, sopts.Port = host, port
	}
	if c := o.Cluster; c != nil {
		host, port, err := splitHostPort(c.Listen)
		if err != nil {
			return nil, fmt.Errorf("natsembed: Cluster.Listen: %w", err)
		}
		sopts.Cluster = server.ClusterOpts{Name: c.Name, Host: host, Port: port}
		for _, r := range c.Routes {
			sopts.Routes = append(sopts.Routes, server.RoutesFromStr(r)...)
		}
	}

	ns, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("natsembed: new server: %w", err)
	}
	log := o.Logger.With().Str("component", "nats-server").Logger()
	ns.SetLoggerV2(logAdapter{log}, enabled(log.Debug()), enabled(log.Trace()), false)
	go ns.Start()

	s := &Server{ns: ns, listening: !sopts.DontListen, log: log}
	if err := s.waitReady(ctx, o.ReadyTimeout); err != nil {
		s.Shutdown()
		return nil, err
	}
	return s, nil
}

func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if s.ns.ReadyForConnections(100 * time.Millisecond) {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("natsembed: waiting for server: %w", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("natsembed: server not ready after %s", timeout)
		}
	}
}

// Connect opens a client connection to the server: through an in-process
// pipe when the server does not listen on TCP, through ClientURL otherwise.
// opts are applied after safeperm's defaults (name "safeperm-embedded-client",
// unlimited reconnects), so callers can override them. The caller closes (or
// drains) the connection before calling Shutdown.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	all := []nats.Option{nats.Name("safeperm-embedded-client"), nats.MaxReconnects(-1)}
	url := s.ns.ClientURL()
	if !s.listening {
		all = append(all, nats.InProcessServer(s.ns))
		url = ""
	}
	all = append(all, opts...)
	nc, err := nats.Connect(url, all...)
	if err != nil {
		return nil, fmt.Errorf("natsembed: connect: %w", err)
	}
	return nc, nil
}

// InProcessConn returns a new in-process connection to the server. It lets a
// *Server be passed to nats.InProcessServer (and to jobs.ConnectOptions).
func (s *Server) InProcessConn() (net.Conn, error) { return s.ns.InProcessConn() }

// ClientURL returns the URL TCP clients connect to, e.g.
// "nats://127.0.0.1:41873". For a server without Listen it reports a URL
// nobody can connect to ("nats://127.0.0.1:0"); use Connect instead.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Listening reports whether the server accepts TCP clients.
func (s *Server) Listening() bool { return s.listening }

// Name returns the server name.
func (s *Server) Name() string { return s.ns.Name() }

// NATS returns the underlying nats-server, for tests and diagnostics.
func (s *Server) NATS() *server.Server { return s.ns }

// Shutdown stops the server and waits until it has stopped. Close or drain
// client connections first so that in-flight acks are not lost. It is safe
// to call more than once.
func (s *Server) Shutdown() {
	s.once.Do(func() {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	})
}

func splitHostPort(hp string) (string, int, error) {
	host, ps, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", hp)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// enabled reports whether e would be written, and releases it.
func enabled(e *zerolog.Event) bool {
	ok := e.Enabled()
	e.Discard()
	return ok
}

// logAdapter routes nats-server logs to zerolog. Fatalf is logged as an
// error: an embedded server must never end the process.
type logAdapter struct{ l zerolog.Logger }

var _ server.Logger = logAdapter{}

func (a logAdapter) Noticef(f string, v ...any) { a.l.Info().Msgf(f, v...) }
func (a logAdapter) Warnf(f string, v ...any)   { a.l.Warn().Msgf(f, v...) }
func (a logAdapter) Fatalf(f string, v ...any)  { a.l.Error().Bool("fatal", true).Msgf(f, v...) }
func (a logAdapter) Errorf(f string, v ...any)  { a.l.Error().Msgf(f, v...) }
func (a logAdapter) Debugf(f string, v ...any)  { a.l.Debug().Msgf(f, v...) }
func (a logAdapter) Tracef(f string, v ...any)  { a.l.Trace().Msgf(f, v...) }
