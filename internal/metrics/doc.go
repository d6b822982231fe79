// Package metrics is safeperm's Prometheus instrumentation and its health
// endpoints: the job outcomes of a worker, every PVWA request, the time
// spent waiting on the rate limiter, the adaptive concurrency and throttling
// decisions, and /metrics, /healthz and /readyz to serve them.
//
// New builds a Metrics with its own prometheus.Registry (never the global
// one), so two instances in one process, or in one test binary, do not
// collide. Wire it in like this:
//
//	m := metrics.New(workerID)
//	worker.Config{Observer: m, ...}                  // job outcomes
//	pam.Config{Observe: m.ObservePVWA,                // every PVWA request
//		Limiter: m.Limiter(rate.NewLimiter(...))}     // rate-limit waits
//	go metrics.Serve(ctx, ":9090", m.Handler(natsReady), log, nil)
//
// Every method of Metrics is safe for concurrent use and cheap enough to be
// called on every request.
//
// # Metrics
//
// Every safeperm_* series carries the constant label worker="<name>" given
// to New (omitted when the name is empty). The registry also holds the
// standard go_* and process_* collectors and promhttp_metric_handler_*.
//
//	name                                       type       labels        meaning
//	safeperm_jobs_total                        counter    status        jobs finished, by outcome: applied, unchanged,
//	                                                                    drift, skipped, failed, conflict (all present
//	                                                                    from the start at 0); "other" for a status
//	                                                                    outside that set
//	safeperm_jobs_in_flight                    gauge      -             jobs started and not yet finished or handed
//	                                                                    back for retry
//	safeperm_job_duration_seconds              histogram  status        time from taking a job to its outcome;
//	                                                                    buckets 10ms .. 5m
//	safeperm_job_retries_total                 counter    -             jobs handed back to JetStream for another
//	                                                                    delivery after a transient failure
//	safeperm_pvwa_requests_total               counter    route, code   PVWA HTTP requests; route is the method and
//	                                                                    path template ("GET /API/Safes/{id}/Members/{name}"),
//	                                                                    code the HTTP status, "error" when no answer
//	                                                                    came (transport error, timeout, cancel)
//	safeperm_pvwa_request_duration_seconds     histogram  route         time from sending a PVWA request to having
//	                                                                    read the answer; buckets 5ms .. 30s
//	safeperm_pvwa_relogons_total               counter    -             requests replayed after a fresh logon because
//	                                                                    the session had ended (401)
//	safeperm_pvwa_throttled_total              counter    reason        times the transport backed off: "429",
//	                                                                    "5xx", "latency", "retry-after", "timeout"
//	                                                                    (all present at 0); "other" for any other
//	                                                                    reason
//	safeperm_rate_limit_wait_seconds           histogram  -             time each request spent waiting on the rate
//	                                                                    limiter (near 0 when a token was free);
//	                                                                    buckets 1ms .. 60s
//	safeperm_rate_limit_waits_total            counter    -             calls to the rate limiter (one per request,
//	                                                                    logons and replays included)
//	safeperm_concurrency_limit                 gauge      -             current adaptive limit of concurrent PVWA
//	                                                                    requests
//	safeperm_rate_budget                       gauge      -             current PVWA request budget, requests per
//	                                                                    second
//
// # Label cardinality
//
// Every label has a bounded set of values. A route must look like a
// template: an upper-case method, a space, then 1 to 8 path segments, each
// either a word (a letter then up to 31 letters or digits) or a {placeholder}.
// Anything else (a raw Safe or member name with a dot, dash, space, percent
// escape...) is counted as route="other", and so is every new route beyond
// the first 50 distinct ones. A status outside 100..599 is code="other".
//
// # Endpoints
//
// Handler serves:
//
//	GET /metrics   the registry in the Prometheus text or OpenMetrics format
//	GET /healthz   200 "ok" while the process can answer HTTP at all
//	GET /readyz    200 "ok" when every readiness Check passes; otherwise 503
//	               and one line "<name>: <error>" per failing check
//
// Serve runs that handler on an address until its context ends, then shuts
// down gracefully.
package metrics
