package watch

import (
	"time"

	"github.com/safeperm/safeperm/internal/jobs"
)

// rateWindow is how far back the rate looks.
const rateWindow = 30 * time.Second

// snapshot is the progress at one moment, as every view shows it.
type snapshot struct {
	run    jobs.Run
	counts map[jobs.Status]int
	done   int
	// total is Expected() once planning is done; before, the Safes planned
	// so far (provisional).
	total       int
	provisional bool
	rate        float64 // Safes per second over the last rateWindow
	eta         time.Duration
	etaKnown    bool
	time        time.Time
}

// snapshot returns the progress now.
func (w *watcher) snapshot(now time.Time) snapshot {
	w.mu.Lock()
	run := w.run
	rate := w.meter.rate(now, run.Started)
	w.mu.Unlock()
	s := snapshot{run: run, counts: w.tally.Counts(), done: w.tally.Done(), rate: rate, time: now}
	s.total, s.provisional = total(run, s.done)
	remaining := s.total - s.done
	switch {
	case s.provisional:
	case remaining <= 0:
		s.etaKnown = true
	case rate > 0:
		s.eta, s.etaKnown = time.Duration(float64(remaining)/rate*float64(time.Second)).Round(time.Second), true
	}
	return s
}

// total returns the number of results run will produce and whether that
// number is still provisional (planning not done: the Safes planned so far,
// and at least done).
func total(run jobs.Run, done int) (int, bool) {
	if run.PlanningDone {
		return run.Expected(), false
	}
	return max(max(run.Planned, run.Published)+run.Skipped, done), true
}

// percent returns done/total in percent, 0 for an empty total.
func (s snapshot) percent() float64 {
	if s.total <= 0 {
		if s.provisional {
			return 0
		}
		return 100
	}
	return 100 * float64(s.done) / float64(s.total)
}

// rateMeter counts results per second of their own time stamps, so that
// replaying a run's earlier results does not look like a burst of speed:
// the rate is that of the run, not of the reading.
type rateMeter struct {
	window  time.Duration
	buckets map[int64]int // Unix second -> results
}

func newRateMeter(window time.Duration) *rateMeter {
	return &rateMeter{window: window, buckets: make(map[int64]int)}
}

// add counts one result produced at t (zero or in the future: now).
func (m *rateMeter) add(t, now time.Time) {
	if t.IsZero() || t.After(now) {
		t = now
	}
	if now.Sub(t) >= m.window {
		return
	}
	m.buckets[t.Unix()]++
	m.prune(now)
}

func (m *rateMeter) prune(now time.Time) {
	oldest := now.Add(-m.window).Unix()
	for sec := range m.buckets {
		if sec <= oldest {
			delete(m.buckets, sec)
		}
	}
}

// rate returns results per second over the window ending now, or since
// started when that is more recent (at least one second).
func (m *rateMeter) rate(now, started time.Time) float64 {
	m.prune(now)
	n := 0
	for _, c := range m.buckets {
		n += c
	}
	span := m.window
	if !started.IsZero() && now.Sub(started) < span {
		span = now.Sub(started)
	}
	span = max(span, time.Second)
	return float64(n) / span.Seconds()
}
