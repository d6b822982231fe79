package throttle

import (
	"fmt"
	"math"
	"time"
)

// Tuning of the control loop that is not worth an option. The package
// documentation explains the loop; these are its constants.
const (
	// startupExit ends slow start when a round's mean round trip, less the
	// noise slack, is that many times the unloaded one: the queue is a
	// quarter of the server's capacity.
	startupExit = 1.25
	// startupSamples is how many sampled answers of a round slow start
	// needs before it can end on latency within the round.
	startupSamples = 4
	// roundSamples: a round lasts at least one round trip and until that
	// many sampled answers arrived (or four times as many answers), so
	// that a small limit does not decide on one or two answers, each of
	// which either waited behind a whole wave of the server's slots or
	// not at all.
	roundSamples = 8
	// noiseSlack and noiseShare: a round trip that exceeds the unloaded
	// one by less than noiseSlack plus noiseShare of it is not counted as
	// queueing: a loaded client machine delays answers by a few
	// milliseconds more when it has more requests in flight.
	noiseSlack = time.Millisecond
	noiseShare = 0.02
	// noQueue: a round within this factor of the unloaded round trip saw
	// no queue at all; the limit then grows by growth per round trip.
	noQueue = 1.02
	growth  = 0.10
	// gain is the share of the gradient's correction applied per round,
	// and headroom the requests added every round: it makes clients that
	// share a server converge to equal limits (a client with a larger
	// limit loses more to the same gradient), at the cost of a queue of
	// about headroom/(gain×limit) above Target.
	gain     = 0.5
	headroom = 0.1
	// drainDepth is the share of the limit kept for the round of a drain.
	drainDepth = 0.5
	// stuckRounds and stuckTime: a limit held at its minimum by latency
	// for that many rounds and that long means the server itself became
	// slower (or others load it lastingly): the unloaded round trip is
	// measured again from the current one.
	stuckRounds = 60
	stuckTime   = 10 * time.Second
	// errWindow is the number of answers the error rate is averaged over,
	// errMinAnswers the answers needed before it counts, errRecover the
	// rate under which a backoff ends.
	errWindow     = 50
	errMinAnswers = 50
	errRecover    = 0.10
	// warnEvery rate-limits the warning about server errors.
	warnEvery = 30 * time.Second
	// starveMax caps the pause of a client refused with nothing of its own
	// at the server.
	starveMax = time.Second
	// refusalConfirm: a refusal within that many round trips of another
	// confirms a lower ceiling; after a quiet time it may be a race.
	refusalConfirm = 16
	// probeMin is the least wait between probes above a ceiling (and at
	// least eight round trips); probeMaxFactor times ProbeInterval the
	// most.
	probeMin       = 100 * time.Millisecond
	probeMaxFactor = 4
)

// round is what one round trip taught: from its start to the first answer
// to a request sent after it.
type round struct {
	start      time.Time
	sumRTT     time.Duration // of the sampled answers
	sumSent    int           // their requests in flight when sent
	samples    int
	answers    int
	drops      int
	peakActive int
}

// mean is the mean sampled round trip of the round, in nanoseconds: by
// Little's law the requests in flight at the server over the requests it
// serves at once, times the unloaded round trip. (The least round trip
// would not do: with service times alike the requests move through the
// server's slots in waves, and the first request after a wave finds a
// slot free however long the queue was a moment before.)
func (r *round) mean() float64 {
	if r.samples == 0 {
		return 0
	}
	return float64(r.sumRTT) / float64(r.samples)
}

// sentWith is the mean number of our requests in flight when the sampled
// requests were sent: the limit their round trips tell about. Answers lag
// the limit by a round trip, more while a queue stands, so a decision on
// what a round saw scales this, not the limit of the moment.
func (r *round) sentWith() float64 {
	if r.samples == 0 {
		return 0
	}
	return float64(r.sumSent) / float64(r.samples)
}

// fitLocked is the limit that, by what the round saw, keeps the queue at
// Target: the round's requests in flight scaled by Target over the queue.
func (a *Adaptive) fitLocked(r *round, q float64) float64 {
	return max(float64(a.o.Min), r.sentWith()*a.o.Target/q)
}

// queueLocked is the round's mean round trip over the unloaded one, less the
// noise slack: 1 for no queue.
func (a *Adaptive) queueLocked(r *round) float64 {
	if a.base <= 0 || r.samples == 0 {
		return 1
	}
	slack := noiseSlack + time.Duration(noiseShare*float64(a.base))
	return max(1, (r.mean()-float64(slack))/float64(a.base))
}

// answerLocked folds one answer into the loop.
func (a *Adaptive) answerLocked(now time.Time, out outbound, kind int, activeBefore int, ev *event) {
	sent := out.sent
	rtt := max(now.Sub(sent), time.Microsecond)
	r := &a.round
	r.answers++
	a.answers++
	isErr := 0.0
	if kind == kindError {
		isErr = 1
	}
	a.errRate += (isErr - a.errRate) / errWindow
	if kind == kindOK && out.sample {
		r.samples++
		r.sumRTT += rtt
		r.sumSent += out.inFlight
		if a.draining && !sent.Before(a.drainStart) {
			a.drainSum += rtt
			a.drainN++
		}
		if a.floor == 0 || rtt < a.floor {
			a.floor = rtt
		}
	}

	switch kind {
	case kindRefused, kindTimeout:
		r.drops++
		reason := ReasonTimeout
		switch {
		case kind == kindRefused && ev.pause > 0:
			reason = ReasonRetryAfter
		case kind == kindRefused:
			reason = ReasonTooMany
		}
		ev.reasons = append(ev.reasons, reason)
		switch {
		case !sent.Before(a.lastDecr):
			a.dropLocked(now, kind, ev.pause > 0, ev)
		case kind == kindRefused && ev.pause == 0 && float64(a.active) < a.limit:
			// More refusals of requests sent before the last decrease: the
			// server is full with what it holds of ours; as those answers
			// come back, follow them down, without waiting a round trip
			// while the freed slots are refused again at once.
			a.limit = max(float64(a.o.Min), float64(a.active))
			ev.why = "refused"
		}
		if kind == kindRefused && ev.pause == 0 && a.active == 0 {
			a.starveLocked(now)
		}
	case kindOK:
		a.rate.add(now)
		a.successLocked(now, activeBefore, ev)
	}

	// Slow start ends on latency as soon as the round shows a queue.
	if a.startup && r.samples >= startupSamples {
		if q := a.queueLocked(r); q > startupExit {
			a.endStartupLocked(now, a.fitLocked(r, q), ev)
		}
	}
	if !sent.Before(r.start) && (r.samples >= roundSamples || r.answers >= 4*roundSamples || a.startup) {
		a.endRoundLocked(now, ev)
	}
}

// successLocked counts a success: slow start grows the limit per success
// while it is in use; at the ceiling's edge, successes pay for the next
// probe.
func (a *Adaptive) successLocked(now time.Time, activeBefore int, ev *event) {
	a.successes++
	a.starving = 0
	eff := a.effLocked()
	used := 2*max(activeBefore, a.round.peakActive) >= eff
	if a.startup && !a.draining && !a.erroring && used {
		// One more per success: the limit doubles every round trip,
		// clocked by the answers, so growth slows as a queue builds.
		a.limit = min(a.limit+1, a.capLocked())
		if a.effLocked() != eff {
			ev.why = "slow start"
		}
	}
	// Probing just above the last ceiling.
	if a.ceiling == 0 || a.draining || a.erroring || !used {
		return
	}
	switch {
	case a.probing && now.Sub(a.probeAt) >= a.probeWait:
		// The probe held: the capacity is there. Hold at the new level,
		// probe again sooner; after a few in a row the capacity has grown
		// and the ceiling is forgotten.
		a.probing = false
		a.ceiling = a.limit + 1
		a.probeOK++
		a.probeWait = max(a.probeWait/2, a.probeMinLocked())
		a.probeAt = now
		if a.probeOK >= 3 {
			a.ceiling = 0
		}
	case !a.probing && a.limit >= a.ceiling-1 && a.successes >= max(a.o.ProbeAfter, eff) && now.Sub(a.probeAt) >= a.probeWait:
		a.successes = 0
		a.probeAt = now
		a.limit = min(math.Floor(a.limit)+1, float64(a.o.Max))
		a.probing = true
		ev.why = "probe"
	}
}

// probeMinLocked is the shortest wait between probes: a few round trips.
func (a *Adaptive) probeMinLocked() time.Duration {
	return max(8*max(a.base, a.floor), probeMin)
}

// capLocked is the most the limit may grow to now: just below the last
// ceiling (probes aside), and Max.
func (a *Adaptive) capLocked() float64 {
	c := float64(a.o.Max)
	if a.ceiling > 0 {
		c = min(c, max(a.limit, a.ceiling-1))
	}
	return c
}

// dropLocked reacts to a refusal or a timeout, at most once per round trip.
func (a *Adaptive) dropLocked(now time.Time, kind int, paused bool, ev *event) {
	if a.draining {
		a.draining = false // the drop decides from the limit before the drain
		a.limit = a.restore
	}
	old := a.limit
	// The ceiling is the limit refused, but: refusals in a burst (within a
	// round trip, as after slow start) keep the highest; and an isolated
	// refusal below the ceiling leaves it, the limit coming back unless
	// refused again soon. Such a refusal is as often a race at the server
	// (a slot freed after its answer was sent, and the next request
	// arriving first) or another client's probe as a lower capacity.
	rt := max(a.base, a.floor, time.Millisecond)
	since := now.Sub(a.lastRefused)
	switch {
	case a.ceiling == 0 || (since >= rt && since < refusalConfirm*rt):
		a.ceiling = old
	case since < rt:
		a.ceiling = max(a.ceiling, old)
	}
	a.lastRefused = now
	switch {
	case kind == kindRefused && paused:
		// Refused with Retry-After: a rate limit (a concurrency limit
		// would not know when to be asked again). The pause takes care of
		// the moment; the limit goes to what carries the rate the server
		// granted lately, and stays there but for probes, so that the
		// next refusal comes late and alone.
		need := math.Ceil(1.25 * a.rate.perSecond(now) * a.base.Seconds())
		a.limit = max(1, min(a.limit-1, need))
		a.ceiling = a.limit + 1
		if a.probing {
			a.probeWait = min(2*a.probeWait, probeMaxFactor*a.o.ProbeInterval)
		}
	case kind == kindRefused && a.probing:
		// A probe above the last good limit was refused: the capacity has
		// not grown; step back to the limit that worked, and probe half
		// as often.
		a.limit--
		a.probeWait = min(2*a.probeWait, probeMaxFactor*a.o.ProbeInterval)
		a.probeOK = 0
	case kind == kindRefused:
		// Refused at admission: the server is full. What it holds of ours
		// now is what fits (a refusal unrelated to load costs one).
		a.limit = math.Floor(min(a.limit-1, float64(a.active)))
	default:
		// A timeout or a 504 comes after a long wait: cut.
		a.limit *= a.o.Backoff
	}
	a.limit = max(a.limit, float64(a.o.Min))
	a.probing = false
	a.probeAt = now
	a.successes = 0
	a.lastDecr = now
	ev.why = "refused"
	if kind == kindTimeout {
		ev.why = "timeout"
	}
	if a.startup {
		// Slow start ended on a refusal: the server refuses rather than
		// queues, and no queue can have hidden its unloaded round trip,
		// so no early drain; the periodic ones will do.
		a.startup = false
		a.scheduleDrainLocked(now)
	}
}

// starveLocked handles a refusal with nothing of ours left at the server:
// the limit cannot go lower, and the freed slot would be refused again at
// once, in a loop, while the clients that hold the server's slots keep
// them. Pause instead, a round trip at first and twice as long at each
// refusal in a row (up to starveMax), so that such a client costs a few
// refusals, not thousands, and still gets a slot when one frees.
func (a *Adaptive) starveLocked(now time.Time) {
	d := max(a.base, a.floor, time.Millisecond) << min(a.starving, 10)
	d = min(time.Duration((0.5+a.o.Rand())*float64(d)), starveMax)
	a.starving++
	if now.Add(d).After(a.pausedUntil) {
		a.pausedUntil = now.Add(d)
	}
}

// endStartupLocked ends slow start on a queue: the limit goes straight to
// fit, what keeps the queue at Target.
func (a *Adaptive) endStartupLocked(now time.Time, fit float64, ev *event) {
	a.startup = false
	a.limit = min(a.limit, fit)
	a.lastDecr = now
	ev.why = "slow start ended on latency"
	ev.reasons = append(ev.reasons, ReasonLatency)
	a.firstDrain = 4 + int(4*a.o.Rand())
}

// scheduleDrainLocked sets when the next drain may start: DrainInterval
// from now, with ±20% jitter so that clients do not drain together.
func (a *Adaptive) scheduleDrainLocked(now time.Time) {
	a.drainAt = now.Add(time.Duration((0.8 + 0.4*a.o.Rand()) * float64(a.o.DrainInterval)))
}

// endRoundLocked closes the round: the once-per-round-trip decisions.
func (a *Adaptive) endRoundLocked(now time.Time, ev *event) {
	r := a.round
	a.round = round{start: now, peakActive: a.active}
	eff := a.effLocked()
	used := 2*r.peakActive >= eff
	// The headroom is per round trip; a round of a small limit lasts
	// several.
	room := headroom
	if a.base > 0 {
		room *= max(1, float64(now.Sub(r.start))/float64(a.base))
	}
	ev.round, ev.roundQ = &r, a.queueLocked(&r)

	// A drain lasts one round: its requests found the queue emptied, so
	// their mean round trip is the unloaded one (lower than the estimate
	// when a queue had been standing since).
	if a.draining {
		if a.drainN == 0 {
			return // no request sent since the drain began has come back
		}
		a.draining = false
		a.drainedAt = now
		if m := a.drainSum / time.Duration(a.drainN); m < a.base {
			a.base = max(a.floor, m)
		}
		a.limit = max(a.limit, a.restore)
		ev.why = "drain done"
		a.scheduleDrainLocked(now)
		return
	}

	// Server errors as a large share of the answers: the server may be
	// failing. Back off in proportion, and say so.
	if a.answers >= errMinAnswers && a.errRate > a.o.ErrorBackoff {
		a.limit = max(float64(a.o.Min), a.limit*(1-a.errRate/2))
		a.startup = false
		ev.why = "server errors"
		ev.reasons = append(ev.reasons, ReasonServerError)
		if !a.erroring || now.Sub(a.lastWarn) >= warnEvery {
			ev.warn = fmt.Sprintf("the PVWA answers %.0f%% of requests with server errors: slowing down", 100*a.errRate)
			a.lastWarn = now
		}
		a.erroring = true
		return
	}
	if a.erroring && a.errRate < errRecover {
		a.erroring = false
		ev.info = "PVWA server errors back to normal"
	}
	if r.samples == 0 {
		return
	}

	if a.startup {
		// The unloaded round trip is the mean of the slow start's rounds
		// until one shows a queue; growth is per success.
		// Rounds that show even a small queue are left out: a client
		// that joins others measures behind their standing queue, and
		// folding in its own growing queue would raise the estimate round
		// after round.
		q := a.queueLocked(&r)
		switch {
		case a.base == 0 || q <= noQueue:
			a.ssSum += r.sumRTT
			a.ssN += r.samples
			a.base = max(a.floor, a.ssSum/time.Duration(a.ssN))
		case q > startupExit:
			a.endStartupLocked(now, a.fitLocked(&r, q), ev)
		}
		return
	}
	q := a.queueLocked(&r)
	if q <= noQueue {
		a.baseSeen = now
	}
	if a.firstDrain > 0 {
		// The first drain comes a few rounds after slow start, once the
		// queue it left behind has gone.
		if a.firstDrain--; a.firstDrain == 0 {
			a.drainAt, a.mustDrain = now, true
		}
	}

	// The limit held at its minimum by a queue that does not go away: the
	// server became slower (or others load it lastingly). Measure the
	// unloaded round trip again.
	if eff <= a.o.Min && q > a.o.Target {
		if a.stuck == 0 {
			a.stuckSince = now
		}
		a.stuck++
		if a.stuck >= stuckRounds && now.Sub(a.stuckSince) >= stuckTime {
			a.base = time.Duration(r.mean())
			a.stuck = 0
			ev.info = "PVWA round trips stayed high at the least concurrency: its unloaded latency is measured again"
			return
		}
	} else {
		a.stuck = 0
	}

	// A server that refused near this limit (a ceiling is set) refuses
	// rather than queues: a modest rise of the round trips there is the
	// client's own delay under load, not a queue, and must not hold the
	// limit under the ceiling the refusals found.
	refusing := a.ceiling > 0 && q <= startupExit
	switch {
	case r.drops > 0:
		// The drop has decided for this round.
	case q > a.o.Target && !refusing:
		// Queueing beyond the target: step toward the limit that keeps
		// it, by gain of the way (all of it while the queue is as long as
		// the overshoot of slow start leaves it), plus the headroom that
		// shares the server fairly.
		k := gain
		if q > startupExit {
			k = 1
		}
		if fit := a.fitLocked(&r, q); fit < a.limit {
			a.limit = max(float64(a.o.Min), a.limit+k*(fit-a.limit)+room)
		}
		ev.why = "queueing"
		if a.effLocked() < eff {
			ev.reasons = append(ev.reasons, ReasonLatency)
		}
	case used && !a.erroring:
		g := growth
		if q > noQueue && !refusing {
			g = gain * (a.o.Target/q - 1)
		}
		a.limit = min(max(a.limit, a.limit*(1+g)+room), a.capLocked())
		ev.why = "growth"
	}

	// Time for a drain? Only when a queue stood since the last one: a
	// round that saw none already measured the unloaded round trip.
	if !a.drainAt.IsZero() && !now.Before(a.drainAt) && r.drops == 0 && !a.erroring {
		// The first drain comes anyway: a client that joined others
		// measured its unloaded round trip behind their queue, and sees
		// no queue where one stands.
		if !a.mustDrain && a.baseSeen.After(a.drainedAt) {
			a.drainedAt = now
			a.scheduleDrainLocked(now)
			return
		}
		a.draining, a.mustDrain = true, false
		a.drainStart, a.drainSum, a.drainN = now, 0, 0
		a.restore = a.limit
		a.limit = max(float64(a.o.Min), math.Floor(a.limit*drainDepth))
		ev.why = "drain"
	}
}

// rateWindow counts successes over the last rateSlots×rateSlot, for the
// rate a server granted.
type rateWindow struct {
	slots [rateSlots]int
	at    [rateSlots]int64 // index of the slot's period
	first time.Time
}

const (
	rateSlots = 8
	rateSlot  = 250 * time.Millisecond
)

func (w *rateWindow) add(now time.Time) {
	if w.first.IsZero() {
		w.first = now
	}
	p := now.UnixNano() / int64(rateSlot)
	i := p % rateSlots
	if w.at[i] != p {
		w.at[i], w.slots[i] = p, 0
	}
	w.slots[i]++
}

// perSecond is the successes per second over the window (or since the
// first, when more recent).
func (w *rateWindow) perSecond(now time.Time) float64 {
	if w.first.IsZero() {
		return 0
	}
	p := now.UnixNano() / int64(rateSlot)
	n := 0
	for i := range w.slots {
		if p-w.at[i] < rateSlots {
			n += w.slots[i]
		}
	}
	span := min(now.Sub(w.first), rateSlots*rateSlot)
	return float64(n) / max(span, rateSlot).Seconds()
}
