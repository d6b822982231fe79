// Package throttle keeps safeperm's PVWA traffic within what the run and
// the server allow: Budget shares one global request rate among all worker
// processes over NATS, and Adaptive is HTTP middleware that limits the
// requests in flight with AIMD and honours Retry-After. A worker uses both:
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
// for the Limiter (the Budget) and any Retry-After pause, and gives the slot
// back, exactly once, when the inner RoundTrip returns: the headers arrived
// or it failed. Bodies are not touched. The limit follows AIMD:
//
//   - Overload is a 429, a 5xx, a timeout, or a smoothed round trip (EWMA
//     over about two windows of answers) above LatencyFactor (2) times the baseline, the least round trip
//     of the last one or two BaselineWindows, and at least 10 ms above it.
//     It multiplies the limit by Backoff (0.7), at most once per round
//     trip: answers to requests sent before the last decrease are ignored.
//     The limit it happened at becomes the ceiling.
//   - Each window of Limit successes adds 1, if at least half the limit was
//     in flight at some point (an unused limit does not grow). At ceiling-1
//     and above, the next +1 waits ProbeAfter (256) successes, then half as
//     many for each step that did not overload, after which the ceiling is
//     forgotten: the limit stays just below the server's capacity, probes it
//     rarely (so fewer than 1% of calls are throttled: about one to three
//     429s per ProbeAfter successes), and grows back quickly when the
//     capacity rises. Nothing needs to know the capacity.
//   - A 429 or 503 with Retry-After (seconds or an HTTP date, capped at
//     MaxRetryAfter) pauses every new request through this Adaptive until
//     then; requests already sent are not affected.
//
// Against a server with C slots (429 above), the tests measured a throttled
// fraction of 0.3% and 87-93% of the capacity's throughput.
package throttle
