package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/buildinfo"
	"github.com/safeperm/safeperm/internal/cliconf"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
)

// envPrefix prefixes the environment variable of every flag.
const envPrefix = "SAFEPERM_SIM_"

// Log field names.
const (
	logURL      = "url"
	logAdmin    = "admin_url"
	logIdentity = "identity_url"
	logUser     = "user"
	logPassword = "password"
	logSafes    = "safes"
	logSeed     = "seed"
	logCloud    = "cloud"
	logTLS      = "tls"
	logStartup  = "startup"
	logRequests = "requests"
	logWrites   = "member_writes"
	logPeak     = "peak_in_flight"
	logLogons   = "logons"
	logFaults   = "faults"
	logQueueMed = "queue_wait_median"
	logQueueP95 = "queue_wait_p95"
)

// errUsage marks a command-line error; main exits with status 2.
var errUsage = errors.New("usage")

// config is everything pvwasim is configured with.
type config struct {
	addr              string
	opts              pamtest.Options
	internal          string
	passwordFile      string
	caOut             string
	logLevel          string
	logFormat         string
	statsInterval     time.Duration
	shutdownTimeout   time.Duration
	quotedCreation    float64
	passwordFromEnv   bool
	passwordIsDefault bool
}

// parse fills a config from the defaults, then the environment, then args.
func parse(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	c := &config{}
	o := &c.opts
	f := &o.Faults
	fs := flag.NewFlagSet("pvwasim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:0", "listen address (port 0 picks a free port)")
	fs.IntVar(&o.Safes, "safes", pamtest.DefaultSafes, "number of Safes, built-in ones included")
	fs.Uint64Var(&o.Seed, "seed", 0, "vault seed: the same seed gives the same vault")
	fs.StringVar(&c.internal, "internal", "auto", "built-in Safes: auto (when --safes >= 100), on or off")
	fs.IntVar(&o.BigMemberCount, "big-members", pamtest.DefaultBigMemberCount, "members of the big Safes")
	fs.BoolVar(&o.PolicyMembers, "policy-members", false, "seed the principals of the policy examples (Security Auditors, HelpDesk, LinuxAdmins, Domain Ops Admins, NEWCORP Ops Admins, jdoe, a second CPM PasswordManager_Linux) and DB-/db.test. Safes")
	fs.Float64Var(&c.quotedCreation, "quoted-creation-time", 0, "fraction of Safes whose creationTime is a quoted string")
	fs.StringVar(&o.AdminUser, "admin-user", pamtest.DefaultAdminUser, "name of the API user (password: $"+envPrefix+"ADMIN_PASSWORD or --admin-password-file)")
	fs.StringVar(&c.passwordFile, "admin-password-file", "", "file holding the API user's password")
	fs.BoolVar(&o.Cloud, "cloud", false, "Privilege Cloud mode: Bearer tokens from /oauth2/platformtoken, memberType required")
	fs.DurationVar(&o.TokenTTL, "token-ttl", 0, "absolute session token lifetime (0 = never expires)")
	fs.DurationVar(&o.IdleTimeout, "idle-timeout", 0, "session idle timeout (0 = none)")
	fs.StringVar(&o.MemberNotFoundCode, "member-not-found-code", pamtest.DefaultMemberNotFoundCode, "ErrorCode of GET one member for a non-member")
	fs.BoolVar(&o.StrictDots, "strict-dots", false, "answer the IIS 404 page for a dotted last segment without a trailing slash")
	fs.BoolVar(&o.AddImpliesUpdateProperties, "add-implies-update-properties", false, "addAccounts also sets updateAccountProperties")
	fs.DurationVar(&f.Latency, "latency", 0, "service time added to every API request (spent holding a slot with --slots)")
	fs.DurationVar(&f.Jitter, "jitter", 0, "extra random latency in [0, jitter)")
	fs.IntVar(&f.MaxInFlight, "max-in-flight", 0, "answer 429 above this many requests in flight, served or queued (0 = unlimited)")
	fs.IntVar(&f.Slots, "slots", 0, "serve at most this many requests at once and queue the others first come, first served, as IIS does (0 = no queue)")
	fs.Float64Var(&f.RateLimit, "rate", 0, "requests per second before 429 (0 = unlimited)")
	fs.IntVar(&f.RateBurst, "burst", 0, "token bucket size for --rate (0 = max(1, rate))")
	fs.Float64Var(&f.P500, "p500", 0, "probability of an IIS HTML 500 page")
	fs.Float64Var(&f.P429, "p429", 0, "probability of a 429")
	fs.Float64Var(&f.P429RetryAfter, "p429-retry-after", 0, "fraction of 429s that carry Retry-After")
	fs.DurationVar(&f.RetryAfter, "retry-after", pamtest.DefaultRetryAfter, "Retry-After value (whole seconds; negative sends 0)")
	fs.Float64Var(&f.P403, "p403", 0, "probability of a 403 CAWS00001E")
	fs.Float64Var(&f.PWriteApplied500, "p-write-applied-500", 0, "probability that a member write is applied, then answered 500")
	fs.BoolVar(&f.IncludeAuth, "fault-auth", false, "apply faults to logon, logoff and token requests too")
	fs.Uint64Var(&o.FaultSeed, "fault-seed", 0, "seed of the fault RNG (0 = --seed)")
	fs.BoolVar(&o.TLS, "tls", false, "serve HTTPS with a fresh self-signed certificate")
	fs.StringVar(&c.caOut, "ca-out", "", "with --tls, write the certificate to trust (PEM) to this file")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.logFormat, "log-format", "console", "log format: console or json")
	fs.DurationVar(&c.statsInterval, "stats-interval", 0, "log request statistics at this interval (0 = never)")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long to let requests finish on shutdown")

	var errs []error
	fs.VisitAll(func(fl *flag.Flag) {
		name := envPrefix + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))
		if v := getenv(name); v != "" {
			if err := fl.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errUsage
		}
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	switch c.internal {
	case "auto":
		o.Internal = pamtest.InternalAuto
	case "on":
		o.Internal = pamtest.InternalOn
	case "off":
		o.Internal = pamtest.InternalOff
	default:
		errs = append(errs, fmt.Errorf("--internal=%q: want auto, on or off", c.internal))
	}
	if c.quotedCreation != 0 {
		o.Mix = pamtest.DefaultMix()
		o.Mix.QuotedCreationTime = c.quotedCreation
	}
	switch {
	case c.passwordFile != "":
		b, err := os.ReadFile(c.passwordFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("--admin-password-file: %w", err))
		}
		o.AdminPassword = strings.TrimRight(string(b), "\r\n")
	case getenv(envPrefix+"ADMIN_PASSWORD") != "":
		o.AdminPassword = getenv(envPrefix + "ADMIN_PASSWORD")
		c.passwordFromEnv = true
	default:
		o.AdminPassword = pamtest.DefaultAdminPassword
		c.passwordIsDefault = true
	}
	if o.Safes < 1 {
		errs = append(errs, fmt.Errorf("--safes=%d: want 1..%d", o.Safes, pamtest.MaxSafes))
	}
	if _, _, err := net.SplitHostPort(c.addr); err != nil {
		errs = append(errs, fmt.Errorf("--addr=%q: %w", c.addr, err))
	}
	if c.caOut != "" && !o.TLS {
		errs = append(errs, fmt.Errorf("--ca-out needs --tls"))
	}
	if _, err := zerolog.ParseLevel(c.logLevel); err != nil || c.logLevel == "" {
		errs = append(errs, fmt.Errorf("--log-level=%q: want debug, info, warn or error", c.logLevel))
	}
	if c.logFormat != "console" && c.logFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format=%q: want console or json", c.logFormat))
	}
	if err := o.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	return c, nil
}

// newLogger builds the logger the way the planner and worker do
// (cliconf.NewLogger: durations as Go duration strings, times with
// milliseconds), tagged component=pvwasim.
func newLogger(c *config, stderr io.Writer) zerolog.Logger {
	level, _ := zerolog.ParseLevel(c.logLevel)
	return cliconf.NewLogger(stderr, level, c.logFormat == "console").With().Str("component", "pvwasim").Logger()
}

// run serves until ctx ends. stopSignals, when not nil, restores the
// default signal handling once shutdown starts, so that a second signal
// kills the process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, stopSignals func()) error {
	if buildinfo.WantsVersion(args) {
		_, err := fmt.Fprintln(stdout, buildinfo.Read("pvwasim"))
		return err
	}
	c, err := parse(args, getenv, stderr)
	if err != nil {
		if errors.Is(err, errUsage) && err != errUsage {
			fmt.Fprintln(stderr, "pvwasim:", err)
			fmt.Fprintln(stderr, "Try: pvwasim --help")
		}
		return err
	}
	logger := newLogger(c, stderr)

	start := time.Now()
	h, err := pamtest.NewHandler(c.opts)
	if err != nil {
		return fmt.Errorf("build vault: %w", err)
	}
	defer h.Close()

	l, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.addr, err)
	}
	host, port, _ := net.SplitHostPort(l.Addr().String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	conns := &connTracker{m: make(map[net.Conn]http.ConnState)}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(zerologWriter{logger}, "", 0),
		ConnState:         conns.track,
	}
	scheme := "http"
	if c.opts.TLS {
		reqHost, _, _ := net.SplitHostPort(c.addr)
		cert, pemBytes, err := pamtest.SelfSignedCertificate(reqHost, host)
		if err != nil {
			_ = l.Close()
			return err
		}
		if c.caOut != "" {
			if err := os.WriteFile(c.caOut, pemBytes, 0o644); err != nil {
				_ = l.Close()
				return fmt.Errorf("write --ca-out: %w", err)
			}
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		l = tls.NewListener(l, srv.TLSConfig)
		scheme = "https"
	}
	root := scheme + "://" + net.JoinHostPort(host, port)
	if _, err := fmt.Fprintln(stdout, root+"/PasswordVault"); err != nil {
		_ = l.Close()
		return fmt.Errorf("print URL: %w", err)
	}
	if f, ok := stdout.(interface{ Sync() error }); ok {
		_ = f.Sync() // a pipe or terminal has nothing to flush; a file does
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(l) }()

	ev := logger.Info().Str(logURL, root+"/PasswordVault").Str(logAdmin, root+"/_admin").
		Int(logSafes, h.Vault().Len()).Uint64(logSeed, c.opts.Seed).Bool(logCloud, c.opts.Cloud).
		Bool(logTLS, c.opts.TLS).Dur(logStartup, time.Since(start)).Str(logUser, c.opts.AdminUser)
	switch {
	case c.passwordIsDefault:
		ev = ev.Str(logPassword, c.opts.AdminPassword+" (default)")
	case c.passwordFromEnv:
		ev = ev.Str(logPassword, "from $"+envPrefix+"ADMIN_PASSWORD")
	default:
		ev = ev.Str(logPassword, "from --admin-password-file")
	}
	if c.opts.Cloud {
		ev = ev.Str(logIdentity, root+"/oauth2/platformtoken")
	}
	ev.Msg("PVWA simulator serving")
	if f := h.Faults(); f != (pamtest.Faults{RetryAfter: f.RetryAfter}) {
		logger.Info().Interface(logFaults, f).Msg("fault injection on")
	}

	var tick <-chan time.Time
	if c.statsInterval > 0 {
		t := time.NewTicker(c.statsInterval)
		defer t.Stop()
		tick = t.C
	}
wait:
	for {
		select {
		case err := <-serveErr:
			return fmt.Errorf("serve: %w", err)
		case <-tick:
			st := h.Stats()
			ev := logger.Info().Int64(logRequests, st.RequestsTotal).Int64(logWrites, st.MemberWrites.Total).
				Int64(logPeak, st.PeakInFlight).Int64(logLogons, st.Logons)
			if st.Queue.Slots > 0 {
				ev = ev.Dur(logQueueMed, st.Queue.Median()).Dur(logQueueP95, st.Queue.P95())
			}
			ev.Msg("stats")
		case <-ctx.Done():
			break wait
		}
	}
	if stopSignals != nil {
		stopSignals()
	}
	logger.Info().Msg("shutting down")
	h.Close() // cut injected latencies short
	// Stop accepting, then close the connections without a request at
	// once: Shutdown alone waits five seconds for one a client opened and
	// never used.
	_ = l.Close()
	<-serveErr
	conns.closeUnused()
	sctx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	st := h.Stats()
	logger.Info().Int64(logRequests, st.RequestsTotal).Int64(logWrites, st.MemberWrites.Total).
		Int64(logPeak, st.PeakInFlight).Msg("stopped")
	return nil
}

// connTracker follows the state of the server's connections.
type connTracker struct {
	mu sync.Mutex
	m  map[net.Conn]http.ConnState
}

// track is the http.Server's ConnState hook.
func (t *connTracker) track(c net.Conn, st http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st == http.StateClosed || st == http.StateHijacked {
		delete(t.m, c)
		return
	}
	t.m[c] = st
}

// closeUnused closes the connections that carry no request.
func (t *connTracker) closeUnused() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c, st := range t.m {
		if st == http.StateNew || st == http.StateIdle {
			_ = c.Close()
			delete(t.m, c)
		}
	}
}

// zerologWriter routes the http.Server's error log through zerolog.
type zerologWriter struct{ l zerolog.Logger }

func (w zerologWriter) Write(p []byte) (int, error) {
	w.l.Warn().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
