package metrics

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Log field names.
const (
	logKeyComponent = "component"
	logKeyAddr      = "addr"
)

// ShutdownTimeout is how long Serve lets in-flight scrapes and probes finish
// once its context ends, before closing their connections.
const ShutdownTimeout = 5 * time.Second

// Server timeouts. Scrapes and probes are small; these only stop a slow or
// idle client from holding a connection.
const (
	readHeaderTimeout = 5 * time.Second
	idleTimeout       = 60 * time.Second
)

// Serve listens on addr (e.g. ":9090", or "127.0.0.1:0" for a free port)
// and serves h until ctx ends; then it stops accepting connections, lets
// in-flight requests finish for up to ShutdownTimeout, closes the rest and
// returns nil. It returns an error, at once, only when it cannot listen or
// when serving fails. bound, if not nil, is called once with the address
// actually bound, before the first request is served; it must not block.
// The server's own error log goes to log.
func Serve(ctx context.Context, addr string, h http.Handler, log zerolog.Logger, bound func(net.Addr)) error {
	log = log.With().Str(logKeyComponent, "metrics").Logger()
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics: listen on %q: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          stdlog.New(errorLogWriter{log}, "", 0),
	}
	if bound != nil {
		bound(ln.Addr())
	}
	log.Info().Str(logKeyAddr, ln.Addr().String()).Msg("serving /metrics, /healthz and /readyz")

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		// Serve never returns nil, and ErrServerClosed only after Shutdown.
		return fmt.Errorf("metrics: serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn().Err(err).Msg("metrics server did not drain in time; closing connections")
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn().Err(err).Msg("metrics server ended with an error")
	}
	log.Info().Msg("metrics server stopped")
	return nil
}

// errorLogWriter routes net/http's error log (TLS handshakes, bad requests,
// panics in handlers) to zerolog.
type errorLogWriter struct{ log zerolog.Logger }

func (w errorLogWriter) Write(p []byte) (int, error) {
	w.log.Warn().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
