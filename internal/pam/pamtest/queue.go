package pamtest

import (
	"container/list"
	"context"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// slots is the simulated server's pool of workers (Faults.Slots): at most
// cap requests are served at once, the rest wait first come, first served,
// as IIS queues the requests it cannot serve yet. cap 0 means no limit.
// The capacity can change while requests wait (SetFaults).
type slots struct {
	mu      sync.Mutex
	cap     int
	busy    int
	waiters *list.List // of chan struct{}, oldest first
	queued  atomic.Int64
	peak    atomic.Int64 // most requests waiting at once
	waits   waitHist
	served  atomic.Int64 // requests that released a slot
	held    atomic.Int64 // nanoseconds they held it
}

func newSlots(n int) *slots {
	return &slots{cap: n, waiters: list.New()}
}

// setCap changes the number of slots; waiters are let in at once when it
// grows. Requests in service keep their slot when it shrinks.
func (s *slots) setCap(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cap = n
	s.grantLocked()
}

// acquire waits for a slot, or for ctx or done to end (ok false, no slot
// held). It records the time waited. Without a limit it returns at once and
// records nothing.
func (s *slots) acquire(ctx context.Context, done <-chan struct{}) (release func(), ok bool) {
	s.mu.Lock()
	if s.cap <= 0 {
		s.mu.Unlock()
		return func() {}, true
	}
	if s.busy < s.cap && s.waiters.Len() == 0 {
		s.busy++
		s.mu.Unlock()
		s.waits.add(0)
		return s.releaser(), true
	}
	ch := make(chan struct{})
	el := s.waiters.PushBack(ch)
	n := s.queued.Add(1)
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	s.mu.Unlock()
	start := time.Now()
	select {
	case <-ch:
		s.waits.add(time.Since(start))
		return s.releaser(), true
	case <-ctx.Done():
	case <-done:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-ch: // granted meanwhile: give it back
		s.busy--
		s.grantLocked()
	default:
		s.waiters.Remove(el)
		s.queued.Add(-1)
	}
	return nil, false
}

// releaser returns the function that gives the slot taken now back and
// records how long it was held.
func (s *slots) releaser() func() {
	start := time.Now()
	return func() {
		s.served.Add(1)
		s.held.Add(int64(time.Since(start)))
		s.mu.Lock()
		defer s.mu.Unlock()
		s.busy--
		s.grantLocked()
	}
}

// grantLocked lets waiters in, oldest first, while slots are free (all of
// them when there is no limit any more).
func (s *slots) grantLocked() {
	for s.waiters.Len() > 0 && (s.cap <= 0 || s.busy < s.cap) {
		ch := s.waiters.Remove(s.waiters.Front()).(chan struct{})
		s.queued.Add(-1)
		s.busy++ // given back by release, limit or not
		close(ch)
	}
}

func (s *slots) reset() {
	s.peak.Store(s.queued.Load())
	s.waits.reset()
	s.served.Store(0)
	s.held.Store(0)
}

// stats returns the queue's statistics since the last reset.
func (s *slots) stats() QueueStats {
	s.mu.Lock()
	c := s.cap
	s.mu.Unlock()
	q := s.waits.snapshot()
	q.Slots = c
	q.Queued = s.queued.Load()
	q.PeakQueued = s.peak.Load()
	if n := s.served.Load(); n > 0 {
		q.ServiceMs = float64(s.held.Load()) / float64(n) / float64(time.Millisecond)
	}
	return q
}

// QueueStats describe the time API requests waited for a slot (Faults.Slots)
// since the start or the last ResetStats. Durations are in milliseconds.
// Quantiles come from a histogram with 16 buckets per doubling, so they are
// exact to about 4%.
type QueueStats struct {
	// Slots is Faults.Slots now (0: no queue).
	Slots int `json:"slots"`
	// Queued is the number of requests waiting now; PeakQueued the most
	// that waited at once.
	Queued     int64 `json:"queued"`
	PeakQueued int64 `json:"peakQueued"`
	// Count is the number of requests that took a slot; Waited those of them
	// that had to wait for it.
	Count  int64 `json:"count"`
	Waited int64 `json:"waited"`
	// MedianMs, P95Ms, MeanMs and MaxMs are over every request that took a
	// slot, those served at once counting as 0.
	MedianMs float64 `json:"medianMs"`
	P95Ms    float64 `json:"p95Ms"`
	MeanMs   float64 `json:"meanMs"`
	MaxMs    float64 `json:"maxMs"`
	// ServiceMs is the mean time a request held its slot: Latency and
	// Jitter, plus the simulator's own work (more on a busy machine).
	ServiceMs float64 `json:"serviceMs"`
}

// Median, P95 and Max return the corresponding fields as durations.
func (q QueueStats) Median() time.Duration { return msDuration(q.MedianMs) }
func (q QueueStats) P95() time.Duration    { return msDuration(q.P95Ms) }
func (q QueueStats) Max() time.Duration    { return msDuration(q.MaxMs) }

func msDuration(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

// waitHist is a lock-free histogram of wait times: zero waits apart, then
// log-linear buckets over microseconds (histSub per doubling).
type waitHist struct {
	zero    atomic.Int64
	buckets [histOctaves * histSub]atomic.Int64
	sum     atomic.Int64 // nanoseconds
	max     atomic.Int64 // nanoseconds
}

const (
	histSub     = 16
	histSubBits = 4
	histOctaves = 40 // 2^40 µs: about 12 days
)

func (h *waitHist) add(d time.Duration) {
	if d <= 0 {
		h.zero.Add(1)
		return
	}
	h.sum.Add(int64(d))
	for m := h.max.Load(); int64(d) > m && !h.max.CompareAndSwap(m, int64(d)); m = h.max.Load() {
	}
	h.buckets[histIndex(d)].Add(1)
}

// histIndex maps d to its bucket: below 16 µs one bucket per microsecond,
// then 16 per doubling.
func histIndex(d time.Duration) int {
	us := uint64(d / time.Microsecond)
	if us < histSub {
		return int(us)
	}
	oct := bits.Len64(us) - 1 // >= histSubBits
	sub := (us >> (oct - histSubBits)) & (histSub - 1)
	i := (oct-histSubBits+1)*histSub + int(sub)
	return min(i, len(waitHist{}.buckets)-1)
}

// histMid returns the middle of bucket i.
func histMid(i int) time.Duration {
	if i < histSub {
		return time.Duration(i)*time.Microsecond + time.Microsecond/2
	}
	oct := i/histSub - 1 + histSubBits
	sub := uint64(i % histSub)
	lo := (uint64(histSub) + sub) << (oct - histSubBits)
	width := uint64(1) << (oct - histSubBits)
	return time.Duration(float64(lo)+float64(width)/2) * time.Microsecond
}

func (h *waitHist) reset() {
	h.zero.Store(0)
	for i := range h.buckets {
		h.buckets[i].Store(0)
	}
	h.sum.Store(0)
	h.max.Store(0)
}

func (h *waitHist) snapshot() QueueStats {
	var counts [len(waitHist{}.buckets)]int64
	zero := h.zero.Load()
	var waited int64
	for i := range h.buckets {
		counts[i] = h.buckets[i].Load()
		waited += counts[i]
	}
	n := zero + waited
	q := QueueStats{Count: n, Waited: waited}
	if n == 0 {
		return q
	}
	quantile := func(p float64) time.Duration {
		rank := int64(math.Ceil(p * float64(n)))
		if rank <= zero {
			return 0
		}
		seen := zero
		for i, c := range counts {
			if seen += c; seen >= rank {
				return histMid(i)
			}
		}
		return time.Duration(h.max.Load())
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	q.MedianMs = ms(quantile(0.5))
	q.P95Ms = ms(quantile(0.95))
	q.MeanMs = ms(time.Duration(h.sum.Load() / n))
	q.MaxMs = ms(time.Duration(h.max.Load()))
	return q
}
