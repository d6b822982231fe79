package pamtest

import (
	"sync/atomic"
	"time"
)

// Normalised route names, the keys of Stats.Requests.
const (
	RouteLogon        = "POST /API/Auth/{type}/Logon"
	RouteLogoff       = "POST /API/Auth/Logoff"
	RouteToken        = "POST /oauth2/platformtoken"
	RouteSafes        = "GET /API/Safes"
	RouteSafe         = "GET /API/Safes/{id}"
	RouteMembers      = "GET /API/Safes/{id}/Members"
	RouteAddMember    = "POST /API/Safes/{id}/Members"
	RouteMember       = "GET /API/Safes/{id}/Members/{name}"
	RouteUpdateMember = "PUT /API/Safes/{id}/Members/{name}"
	RouteDeleteMember = "DELETE /API/Safes/{id}/Members/{name}"
	// RouteOther counts requests that matched no route (404) or used a
	// method the route does not support (405).
	RouteOther = "OTHER"
)

type routeID uint8

const (
	routeOther routeID = iota
	routeLogon
	routeLogoff
	routeToken
	routeSafes
	routeSafe
	routeMembers
	routeAddMember
	routeMember
	routeUpdateMember
	routeDeleteMember
	numRoutes
)

func (r routeID) String() string {
	return [numRoutes]string{RouteOther, RouteLogon, RouteLogoff, RouteToken, RouteSafes, RouteSafe,
		RouteMembers, RouteAddMember, RouteMember, RouteUpdateMember, RouteDeleteMember}[r]
}

// maxStatus bounds the per-status counters.
const maxStatus = 600

// counters are the live statistics, all atomic.
type counters struct {
	requests                         [numRoutes][maxStatus]atomic.Int64
	inFlight, peak                   atomic.Int64
	logons, logonFailures, ended     atomic.Int64
	adds, updates, deletes           atomic.Int64
	inFlight429, rate429, random429  atomic.Int64
	random500, random403, applied500 atomic.Int64
	since                            atomic.Int64 // Unix nanoseconds
}

func (c *counters) count(r routeID, status int) {
	if status < 0 || status >= maxStatus {
		status = 0
	}
	c.requests[r][status].Add(1)
}

// admit records a request entering service and updates the peak.
func (c *counters) admit(cur int64) {
	for {
		p := c.peak.Load()
		if cur <= p || c.peak.CompareAndSwap(p, cur) {
			return
		}
	}
}

func (c *counters) reset(now time.Time) {
	for r := range c.requests {
		for s := range c.requests[r] {
			c.requests[r][s].Store(0)
		}
	}
	c.peak.Store(c.inFlight.Load())
	for _, x := range []*atomic.Int64{&c.logons, &c.logonFailures, &c.ended, &c.adds, &c.updates, &c.deletes,
		&c.inFlight429, &c.rate429, &c.random429, &c.random500, &c.random403, &c.applied500} {
		x.Store(0)
	}
	c.since.Store(now.UnixNano())
}

// Stats is a snapshot of the server's counters since start or the last
// ResetStats.
type Stats struct {
	// Since is when counting started.
	Since time.Time `json:"since"`
	// Requests counts API requests by normalised route (Route* constants)
	// and HTTP status. Admin requests are not counted.
	Requests map[string]map[int]int64 `json:"requests"`
	// RequestsTotal is the sum of Requests.
	RequestsTotal int64 `json:"requestsTotal"`
	// InFlight is the number of API requests being served now (or waiting
	// for a slot, with Faults.Slots); PeakInFlight the most at once
	// (requests refused by MaxInFlight or RateLimit not counted).
	InFlight     int64 `json:"inFlight"`
	PeakInFlight int64 `json:"peakInFlight"`
	// Logons counts successful logons and Identity tokens; LogonFailures
	// refused credentials; SessionsEnded sessions ended by logoff, by a
	// non-concurrent logon, by expiry or by the admin API; SessionsActive
	// is the number of sessions not yet ended.
	Logons         int64 `json:"logons"`
	LogonFailures  int64 `json:"logonFailures"`
	SessionsEnded  int64 `json:"sessionsEnded"`
	SessionsActive int   `json:"sessionsActive"`
	// MemberWrites counts API member writes that changed the vault.
	MemberWrites WriteStats `json:"memberWrites"`
	// SafesWritten is the number of Safes with at least one such write;
	// WritesBySafe gives the count per Safe name when there are at most
	// 10,000 such Safes (or always with the admin ?perSafe=1).
	SafesWritten int              `json:"safesWritten"`
	WritesBySafe map[string]int64 `json:"writesBySafe,omitempty"`
	// Faults counts the injected failures.
	Faults FaultStats `json:"faults"`
	// Queue describes the time requests waited for a slot (Faults.Slots).
	Queue QueueStats `json:"queue"`
}

// Count returns the number of requests to route (a Route* constant)
// answered with status.
func (s Stats) Count(route string, status int) int64 { return s.Requests[route][status] }

// WriteStats counts member writes that changed the vault, by method.
type WriteStats struct {
	Total  int64 `json:"total"`
	Add    int64 `json:"post"`
	Update int64 `json:"put"`
	Delete int64 `json:"delete"`
}

// FaultStats counts injected failures by kind.
type FaultStats struct {
	// InFlight429 are 429s for exceeding MaxInFlight, Rate429 for exceeding
	// RateLimit, Random429 drawn with P429.
	InFlight429 int64 `json:"inFlight429"`
	Rate429     int64 `json:"rate429"`
	Random429   int64 `json:"random429"`
	// Random500 and Random403 are drawn with P500 and P403.
	Random500 int64 `json:"random500"`
	Random403 int64 `json:"random403"`
	// WriteApplied500 are writes applied and answered 500.
	WriteApplied500 int64 `json:"writeApplied500"`
}

// perSafeLimit is the number of written Safes up to which Stats lists them.
const perSafeLimit = 10_000

// Stats returns a snapshot of the counters.
func (h *Handler) Stats() Stats { return h.stats(false) }

func (h *Handler) stats(allSafes bool) Stats {
	c := &h.c
	s := Stats{
		Since:          time.Unix(0, c.since.Load()).UTC(),
		Requests:       make(map[string]map[int]int64),
		InFlight:       c.inFlight.Load(),
		PeakInFlight:   c.peak.Load(),
		Logons:         c.logons.Load(),
		LogonFailures:  c.logonFailures.Load(),
		SessionsEnded:  c.ended.Load(),
		SessionsActive: h.ss.active(),
		MemberWrites: WriteStats{
			Add: c.adds.Load(), Update: c.updates.Load(), Delete: c.deletes.Load(),
		},
		Faults: FaultStats{
			InFlight429: c.inFlight429.Load(), Rate429: c.rate429.Load(), Random429: c.random429.Load(),
			Random500: c.random500.Load(), Random403: c.random403.Load(), WriteApplied500: c.applied500.Load(),
		},
		Queue: h.q.stats(),
	}
	s.MemberWrites.Total = s.MemberWrites.Add + s.MemberWrites.Update + s.MemberWrites.Delete
	for r := routeID(0); r < numRoutes; r++ {
		for status := range c.requests[r] {
			if n := c.requests[r][status].Load(); n > 0 {
				if s.Requests[r.String()] == nil {
					s.Requests[r.String()] = make(map[int]int64)
				}
				s.Requests[r.String()][status] = n
				s.RequestsTotal += n
			}
		}
	}
	bySafe := make(map[int]int64)
	for k := range h.st.shards {
		sh := &h.st.shards[k]
		sh.mu.RLock()
		for i, ov := range sh.m {
			if ov.writes > 0 {
				bySafe[int(i)] = ov.writes
			}
		}
		sh.mu.RUnlock()
	}
	s.SafesWritten = len(bySafe)
	if allSafes || len(bySafe) <= perSafeLimit {
		s.WritesBySafe = make(map[string]int64, len(bySafe))
		for i, n := range bySafe {
			s.WritesBySafe[h.v.Name(i)] = n
		}
	}
	return s
}

// ResetStats zeroes every counter (the peaks restart from the current
// numbers in flight and queued), the queue's wait times and the per-Safe
// write counts. The vault is unchanged.
func (h *Handler) ResetStats() {
	h.c.reset(h.opts.Now())
	h.q.reset()
	for k := range h.st.shards {
		sh := &h.st.shards[k]
		sh.mu.Lock()
		for _, ov := range sh.m {
			ov.writes = 0
		}
		sh.mu.Unlock()
	}
}
