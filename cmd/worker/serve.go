package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/safeperm/safeperm/internal/buildinfo"
	"github.com/safeperm/safeperm/internal/cliconf"
	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/metrics"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/throttle"
	"github.com/safeperm/safeperm/internal/worker"
)

// Log field names.
const (
	logWorker  = "worker"
	logVersion = "version"
)

// serve resolves the configuration (every problem reported before anything
// connects), logs on to the PVWA, binds to the streams and works jobs until
// ctx ends.
func serve(ctx context.Context, cfg *config, getenv cliconf.Getenv, stderr io.Writer) error {
	var probs cliconf.Problems
	pv, err := cfg.PVWA.Resolve(getenv)
	if err != nil {
		probs.AddErr(err)
	}
	ns, err := cfg.NATS.Resolve(getenv)
	if err != nil {
		probs.AddErr(err)
	}
	cfg.validate(&probs)
	if err == nil && ns.Embedded() {
		probs.Addf("nats-url", "", "required: a standalone worker joins an existing NATS server (the planner's embedded default runs its own workers)")
	}
	if err := probs.Err(); err != nil {
		return err
	}
	log, err := cfg.Log.Logger(stderr)
	if err != nil {
		return &cliconf.UsageError{Err: err}
	}
	host, _ := os.Hostname()
	id := fmt.Sprintf("%s/%d", host, os.Getpid())
	// Every line of this process names the worker; the packages below add
	// only their component.
	log = log.With().Str(logWorker, id).Logger()
	log.Info().Str(logVersion, buildinfo.Read("worker").Version).Msg("worker starting")

	m := metrics.New(id)
	pc := pv.PAM()
	pc.Logger = log
	pc.Observe = m.ObservePVWA
	// Every request takes a slot of the adaptive concurrency limit, which
	// finds the PVWA's capacity (queueing, refusals, Retry-After), then
	// waits on the run's --rate budget, shared over NATS (joined below),
	// and on this worker's own --rate cap, when they are set.
	var limits throttle.Chain
	if cfg.Rate > 0 {
		limits.Add(rate.NewLimiter(rate.Limit(cfg.Rate), max(1, int(cfg.Rate/10))))
	}
	adaptive := throttle.NewAdaptive(throttle.AdaptiveOptions{
		Limiter: m.Limiter(&limits), OnLimit: m.SetConcurrencyLimit, OnThrottle: m.Throttled, Logger: log,
	})
	pc.WrapTransport = adaptive.Wrap
	client, err := pam.New(pc)
	if err != nil {
		return &cliconf.UsageError{Err: err}
	}
	defer client.CloseIdleConnections()

	// Health and metrics come up first, so a probe can tell "alive but not
	// ready" while the worker logs on and waits for the streams.
	var nc *nats.Conn
	var ncMu sync.Mutex
	if cfg.MetricsAddr != "" {
		h := m.Handler(
			metrics.Check{Name: "nats", Fn: func(context.Context) error {
				ncMu.Lock()
				defer ncMu.Unlock()
				if nc == nil || !nc.IsConnected() {
					return errors.New("not connected to NATS")
				}
				return nil
			}},
			metrics.Check{Name: "pvwa", Fn: func(context.Context) error {
				if !client.LoggedOn() {
					return errors.New("not logged on to the PVWA")
				}
				return nil
			}},
		)
		bound := make(chan net.Addr, 1)
		go func() {
			if err := metrics.Serve(ctx, cfg.MetricsAddr, h, log, func(a net.Addr) { bound <- a }); err != nil {
				log.Error().Err(err).Msg("metrics server")
				close(bound)
			}
		}()
		if a, ok := <-bound; ok {
			log.Info().Str("addr", a.String()).Msg("serving /metrics, /healthz and /readyz")
		} else {
			return &cliconf.ExitError{Code: cliconf.ExitUsage, Err: fmt.Errorf("--metrics-addr %q: cannot listen", cfg.MetricsAddr)}
		}
	}

	if err := worker.Logon(ctx, client, 5, log); err != nil {
		if errors.Is(err, pam.ErrUnauthorized) || errors.Is(err, pam.ErrPermanent) {
			return &cliconf.ExitError{Code: cliconf.ExitUsage, Err: err}
		}
		return err
	}
	defer func() {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := client.Logoff(lctx); err != nil {
			log.Warn().Err(err).Msg("PVWA logoff")
		}
	}()

	conn, err := jobs.Connect(ctx, ns.ConnectOptions("safeperm-worker "+id, log))
	if err != nil {
		return err
	}
	ncMu.Lock()
	nc = conn
	ncMu.Unlock()
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	streams, err := jobs.Open(ctx, js, log)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	budget, err := joinBudget(ctx, js, throttle.BudgetOptions{
		Name: throttle.DefaultBudgetName, WorkerID: id, Replicas: ns.Replicas, Logger: log,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("join the PVWA rate budget: %w", err)
	}
	defer func() {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = budget.Close(bctx)
	}()
	limits.Add(budget)
	m.SetRateBudget(budget.Share())
	w, err := worker.New(ctx, worker.Config{ID: id, Concurrency: cfg.Concurrency, RequestLimit: adaptive.Limit,
		ShutdownTimeout: cfg.ShutdownTimeout, Logger: log, Observer: m}, client, js, streams)
	if err != nil {
		return err
	}
	mctx, stopMover := context.WithCancel(ctx)
	defer stopMover()
	go func() {
		if err := jobs.RunDeadLetterMover(mctx, js, streams, log); err != nil {
			log.Error().Err(err).Msg("dead-letter mover stopped")
		}
	}()
	err = w.Run(ctx)
	stopMover()
	if derr := nc.Drain(); derr != nil {
		log.Warn().Err(derr).Msg("NATS drain")
	}
	return err
}

// joinBudget joins the rate budget, waiting while it cannot: on a cluster
// the worker's NATS user may not create the budget bucket, which the first
// planner run creates. A duplicate worker id is not worth waiting for.
func joinBudget(ctx context.Context, js jetstream.JetStream, o throttle.BudgetOptions) (*throttle.Budget, error) {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		b, err := throttle.JoinBudget(actx, js, o)
		cancel()
		if err == nil || errors.Is(err, throttle.ErrWorkerIDInUse) || ctx.Err() != nil {
			return b, err
		}
		if attempt == 1 {
			o.Logger.Warn().Err(err).Msg("cannot join the PVWA rate budget yet (a planner run creates it); retrying")
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(min(time.Duration(attempt)*time.Second, 10*time.Second)):
		}
	}
}
