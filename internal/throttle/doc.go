// Package throttle keeps safeperm's PVWA traffic within what the run and
// the server allow: Budget shares one global request rate among all worker
// processes over NATS (only when the run sets one: by default there is no
// rate cap), and Adaptive is HTTP middleware that finds the PVWA's capacity
// by itself, limits the requests in flight to it with a short queue, and
// honours Retry-After. A worker uses both:
//
//	b, err := throttle.JoinBudget(ctx, js, throttle.BudgetOptions{Name: run, WorkerID: id, Total: rate})
//	defer b.Close(ctx)
//	a := throttle.NewAdaptive(throttle.AdaptiveOptions{Limiter: b, OnLimit: gauge, OnThrottle: counter})
//	cfg.WrapTransport = a.Wrap // pam.Config; leave cfg.Limiter nil, Wrap waits on b
//
// # The global budget
//
// Every member of budget "<name>" keeps a key "<name>.<worker>" in the KV
// bucket WorkersBucket, renewed every Heartbeat with a per-message TTL of
// TTLHeartbeats heartbeats (at least 1 s). Each member watches
// "<name>.*", so it sees joins (puts), leaves (deletes) and crashes (the
// purge marker the server writes when a key's TTL runs out) within
// milliseconds, and paces its own requests at total/n with a token bucket,
// n being the members it sees. The total is "<name>._total" in the same
// bucket when set (SetTotal: the run's --rate, which wins), else
// BudgetOptions.Total; 0 means unlimited.
//
// Why the sum of the shares never exceeds the total: a member's share is
// positive only once every member it sees has acknowledged it. A member
// seeing a new member first lowers its own share, then heartbeats at once
// with the last revision it has applied ("seen"); the joiner waits (share
// 0) until every other member's seen is at least its own key's revision,
// which takes two watch round trips. So any two members with a positive
// share count each other, and Σ total/n_i <= total. Leaving is the
// mirror image: Close stops granting before it deletes its key, and a
// member that cannot renew its key stops granting half a heartbeat before
// the key can expire (the expiry counts from when the server stored the
// write, after the member sent it), so when the others grow, it has
// already stopped. During such an overlap the others' shares are briefly
// lower, never higher. A member whose key was lost (expired while it was
// cut off) re-creates it and joins again; a second live process with the
// same worker id is refused (ErrWorkerIDInUse).
//
// Why the +5% holds over any 10 s window: over a window W each member grants
// at most burst + ∫share dt, so the whole budget grants at most
// total·W + Σ burst. The burst is 20 ms of the share, and at least 1 (2 from
// 10 req/s on, to make up for late timers), so Σ burst <= total·0.02 s + 2n:
// for 8 workers at 200 req/s, 20 requests, 1% of a 10 s window. The pacer
// never hands out slots in the future: only one waiter at a time holds the
// next token and it re-reads the rate when it changes, so a lower share
// applies to the very next grant however many goroutines were waiting. The
// bound needs total·0.5 s >= Σ burst, i.e. about total >= 4n req/s; below
// that an idle budget can burst by one request per member. Tests measured
// 0.99 to 1.005 of the total over 1 s and 2 s windows with 1, 3 and 8
// workers.
//
// # Adaptive concurrency
//
// Adaptive lets at most Limit requests through at once; each takes a slot
// (first come, first served, blocking on the request's context), then waits
// for the Limiter (the Budget) and any pause, and gives the slot back,
// exactly once, when the inner RoundTrip returns: the headers arrived or it
// failed. Bodies are not touched. The limit is set by a control loop built
// for a PVWA, which answers in one of three ways when asked too much: IIS
// queues the requests it cannot serve yet (the latency grows, nothing is
// refused), Privilege Cloud refuses with 429 (maybe with Retry-After), and
// a rate limiter refuses with 429 and Retry-After. HTML 500s also come for
// reasons that have nothing to do with load. Ideas come from TCP Vegas and
// BBR, Netflix's concurrency-limits (Vegas, Gradient2), Envoy's adaptive
// concurrency and the SRE book's client-side throttling; the loop:
//
//   - Measures in rounds: a round lasts until the answer to a request sent
//     after it began (one round trip) and has at least 8 latency samples.
//     Samples are the round trips of GETs of one object (a member): the
//     reads every job makes, all alike for the PVWA; logons, list pages
//     and writes cost it more or less and are left out.
//   - Knows the unloaded round trip (base): the mean of slow start's first
//     rounds, before any queue (clients that start together begin small,
//     Initial 2, so their first requests do not queue behind each other),
//     and of drains: a few rounds after slow start, then every
//     DrainInterval (30 s, ±20%) unless a round saw no queue meanwhile,
//     the limit is halved for one round so that the server's queue
//     empties; the mean round trip of the requests sent during the drain
//     lowers the base when it is lower. A client that joined others
//     measured its base behind their queue; its first drain corrects it.
//     A limit held at its minimum by a queue for 60 rounds and 10 s means
//     the server itself became slower: the base is measured again.
//   - Reads the queue as q, the round's mean round trip over the base
//     (less 1 ms and 2% for the client's own delays), and keeps it at
//     Target (1.1): a FIFO server serving C at once holds C×q requests in
//     flight, so the requests that others send during the run wait about
//     Target-1 service times. The mean is what Little's law ties to the
//     requests in flight; the least round trip would not do, since with
//     service times alike requests pass a server's slots in waves and the
//     first after a wave waits nothing however long the queue was.
//   - Slow start adds one per success (doubling per round trip) until a
//     round shows q > 1.25 or a request is refused; the limit then goes to
//     the requests in flight when the round's samples were sent, times
//     Target/q. After that, each round moves the limit half way to that
//     (all the way while q > 1.25), plus a headroom of 0.1 per round trip
//     that makes clients sharing a server converge to equal limits; with
//     no queue at all the limit grows by 10% per round, and only while at
//     least half of it was in use.
//   - A 429 (or 503) without Retry-After is a refusal at admission: the
//     limit drops to the requests of ours the server still holds, at most
//     once per round trip (later refusals of requests sent before that
//     follow the requests in flight down as their answers come back), and
//     the limit it happened at becomes the ceiling: the limit stays just
//     below it, and tries one more (a probe) after ProbeAfter (64)
//     successes and ProbeInterval (10 s, twice as long after each refused
//     probe, half after one that held; three that held forget the
//     ceiling). So against a server that refuses above C, fewer than 1% of
//     calls are refused once adapted, without any latency signal. A client
//     refused with nothing of its own at the server pauses a round trip,
//     doubling up to 1 s, instead of being refused in a loop.
//   - A 429 or 503 with Retry-After (seconds or an HTTP date, capped at
//     MaxRetryAfter) pauses every new request through this Adaptive until
//     then, and sets the limit to what carries the rate the server granted
//     over the last 2 s (1.25 × rate × base), held just below that with the
//     same rare probes: a token bucket is then used to its rate with a
//     refusal now and then.
//   - A timeout, or a 504, cuts the limit by Backoff (0.7).
//   - A 500 (any 5xx but 503 and 504) is an error of that request, to be
//     retried by the caller, not a reason to slow down: unless errors
//     become more than ErrorBackoff (25%) of the last 50 or so answers,
//     when the server may be failing; then each round cuts the limit by
//     half the error share, and a warning is logged (every 30 s at most)
//     until errors fall under 10%.
//
// RetryRefused has a request refused without Retry-After sent again after a
// round trip, for callers whose own retry waits long (the planner's Safe
// listing). The tests in this package check behaviour bounds against the
// pamtest simulator in each shape; make bench measures the shipped
// binaries against bin/pvwasim and writes BENCHMARKS.md.
package throttle
