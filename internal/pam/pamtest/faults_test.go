package pamtest_test

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/pam/pamtest"
	"github.com/safeperm/safeperm/internal/testutil"
)

// within reports whether got is within 5 standard deviations of n*p.
func within(got, n int, p float64) bool {
	sd := math.Sqrt(float64(n) * p * (1 - p))
	return math.Abs(float64(got)-float64(n)*p) <= 5*sd
}

func TestFaultRates(t *testing.T) {
	t.Parallel()
	const n = 2000
	srv := newSim(t, pamtest.Options{Safes: 50, Faults: pamtest.Faults{
		P500: 0.1, P429: 0.1, P403: 0.05, P429RetryAfter: 0.5, RetryAfter: 2 * time.Second,
	}})
	tok := admin(t, srv) // logon is exempt
	var s500, s429, s403, s200, withRA int
	for range n {
		r := call(t, srv, "GET", "/PasswordVault/API/Safes?limit=1", tok, nil)
		switch r.status {
		case 500:
			s500++
			if ct := r.header.Get("Content-Type"); ct != "text/html" || !strings.Contains(string(r.body), "The page cannot be displayed because an internal server error has occurred.") {
				t.Fatalf("500 is not the IIS page: %s %q", ct, truncate(r.body))
			}
		case 429:
			s429++
			if ra := r.header.Get("Retry-After"); ra != "" {
				withRA++
				if ra != "2" {
					t.Fatalf("Retry-After = %q, want 2", ra)
				}
			}
			r.apiError(t)
		case 403:
			s403++
			if e := r.apiError(t); e.ErrorCode != "CAWS00001E" {
				t.Fatalf("403 = %+v", e)
			}
		case 200:
			s200++
		default:
			t.Fatalf("unexpected status %d", r.status)
		}
	}
	if !within(s500, n, 0.1) || !within(s429, n, 0.1) || !within(s403, n, 0.05) || !within(withRA, s429, 0.5) {
		t.Errorf("500: %d, 429: %d (%d with Retry-After), 403: %d of %d", s500, s429, withRA, s403, n)
	}
	st := srv.Stats()
	if st.Faults.Random500 != int64(s500) || st.Faults.Random429 != int64(s429) || st.Faults.Random403 != int64(s403) {
		t.Errorf("fault stats %+v, observed %d/%d/%d", st.Faults, s500, s429, s403)
	}
	if st.Count(pamtest.RouteSafes, 200) != int64(s200) || st.Count(pamtest.RouteSafes, 500) != int64(s500) || st.Count(pamtest.RouteLogon, 200) != 1 {
		t.Errorf("request stats %v", st.Requests)
	}
}

func TestFaultsAtRunTime(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 20})
	tok := admin(t, srv)
	get := func() int { return call(t, srv, "GET", "/PasswordVault/API/Safes", tok, nil).status }
	if s := get(); s != 200 {
		t.Fatalf("no faults: %d", s)
	}
	if err := srv.SetFaults(pamtest.Faults{P500: 1}); err != nil {
		t.Fatal(err)
	}
	if s := get(); s != 500 {
		t.Errorf("P500=1: %d", s)
	}
	if r := call(t, srv, "POST", "/PasswordVault/API/Auth/CyberArk/Logon", "", `{"username":"Administrator","password":"Cyberark1","concurrentSession":true}`); r.status != 200 {
		t.Errorf("logon is not exempt: %d", r.status)
	}
	if r := call(t, srv, "GET", "/_admin/stats", "", nil); r.status != 200 {
		t.Errorf("admin is not exempt: %d", r.status)
	}
	// Through the admin API: a partial update keeps the other fields.
	r := call(t, srv, "PUT", "/_admin/faults", "", `{"includeAuth":true,"latency":"1ms"}`)
	if r.status != 200 || srv.Faults().P500 != 1 || !srv.Faults().IncludeAuth || srv.Faults().Latency != time.Millisecond {
		t.Fatalf("PUT faults = %d %s; now %+v", r.status, r.body, srv.Faults())
	}
	if r := call(t, srv, "POST", "/PasswordVault/API/Auth/CyberArk/Logon", "", `{"username":"Administrator","password":"Cyberark1","concurrentSession":true}`); r.status != 500 {
		t.Errorf("IncludeAuth logon: %d, want 500", r.status)
	}
	if r := call(t, srv, "PUT", "/_admin/faults", "", `{"p500":2}`); r.status != 400 {
		t.Errorf("invalid faults accepted: %d", r.status)
	}
	call(t, srv, "PUT", "/_admin/faults", "", `{"p500":0,"includeAuth":false,"latency":"0s"}`)
	if s := get(); s != 200 {
		t.Errorf("faults off: %d", s)
	}
	var f pamtest.Faults
	call(t, srv, "GET", "/_admin/faults", "", nil).decode(t, &f)
	if f != (pamtest.Faults{}) {
		t.Errorf("GET faults = %+v", f)
	}
}

func TestMaxInFlight(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 20, Faults: pamtest.Faults{Latency: 400 * time.Millisecond, MaxInFlight: 3}})
	tok := admin(t, srv)
	const n = 12
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for k := range n {
		wg.Go(func() {
			r, err := tryCall(srv, "GET", "/PasswordVault/API/Safes", tok, nil)
			if err != nil {
				t.Error(err)
			}
			statuses[k] = r.status
		})
	}
	wg.Wait()
	var ok, busy int
	for _, s := range statuses {
		switch s {
		case 200:
			ok++
		case 429:
			busy++
		default:
			t.Errorf("status %d", s)
		}
	}
	st := srv.Stats()
	if ok < 3 || busy == 0 || ok+busy != n {
		t.Errorf("200: %d, 429: %d", ok, busy)
	}
	if st.PeakInFlight != 3 || st.Faults.InFlight429 != int64(busy) || st.InFlight != 0 {
		t.Errorf("peak %d, inFlight429 %d (want %d), inFlight %d", st.PeakInFlight, st.Faults.InFlight429, busy, st.InFlight)
	}
}

func TestLatencyAndRateLimit(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 20, Faults: pamtest.Faults{Latency: 50 * time.Millisecond, Jitter: 10 * time.Millisecond}})
	tok := admin(t, srv)
	start := time.Now()
	call(t, srv, "GET", "/PasswordVault/API/Safes", tok, nil)
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("request took %s, want >= 50ms", d)
	}
	if err := srv.SetFaults(pamtest.Faults{RateLimit: 20, RateBurst: 5, P429RetryAfter: 1, RetryAfter: -1}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	ok := 0
	for range 60 {
		r := call(t, srv, "GET", "/PasswordVault/API/Safes", tok, nil)
		if r.status == 200 {
			ok++
		} else if r.status != 429 || r.header.Get("Retry-After") != "0" {
			t.Fatalf("status %d Retry-After %q", r.status, r.header.Get("Retry-After"))
		}
	}
	if max := 5 + int(20*time.Since(start).Seconds()) + 1; ok > max || ok < 5 {
		t.Errorf("%d requests passed, want 5..%d", ok, max)
	}
	if srv.Stats().Faults.Rate429 != int64(60-ok) {
		t.Errorf("Rate429 = %d", srv.Stats().Faults.Rate429)
	}
}

func TestWriteApplied500(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 300, Faults: pamtest.Faults{PWriteApplied500: 1}})
	tok := admin(t, srv)
	listOnly := fullAccess(t, srv.Vault(), pamtest.ClassListOnly)
	absent := fullAccess(t, srv.Vault(), pamtest.ClassAbsent)
	r := call(t, srv, "PUT", memberPath(listOnly.Name, "PSMAppUsers"), tok, `{"permissions":{"listAccounts":true,"unlockAccounts":true}}`)
	if r.status != 500 || r.header.Get("Content-Type") != "text/html" {
		t.Fatalf("PUT = %d %s", r.status, r.header.Get("Content-Type"))
	}
	var m memberJSON
	call(t, srv, "GET", memberPath(listOnly.Name, "PSMAppUsers"), tok, nil).decode(t, &m)
	if !sameSet(trueFlags(m.Permissions), []string{"listAccounts", "unlockAccounts"}) {
		t.Errorf("PUT not applied: %v", trueFlags(m.Permissions))
	}
	if r := call(t, srv, "POST", membersPath(absent.Name), tok, `{"memberName":"PSMAppUsers","memberType":"Group","permissions":{"listAccounts":true}}`); r.status != 500 {
		t.Fatalf("POST = %d", r.status)
	}
	if r := call(t, srv, "POST", membersPath(absent.Name), tok, `{"memberName":"PSMAppUsers","memberType":"Group","permissions":{"listAccounts":true}}`); r.status != 409 {
		t.Errorf("POST again = %d, want 409 (the first was applied)", r.status)
	}
	st := srv.Stats()
	if st.Faults.WriteApplied500 != 2 || st.MemberWrites.Total != 2 {
		t.Errorf("stats %+v %+v", st.Faults, st.MemberWrites)
	}
}

func TestSlotsQueueFirstComeFirstServed(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 20, Faults: pamtest.Faults{Slots: 2, Latency: 300 * time.Millisecond}})
	tok := admin(t, srv) // takes a slot at once
	if q := srv.Stats().Queue; q.Slots != 2 || q.Count != 1 || q.Waited != 0 {
		t.Fatalf("after logon: %+v", q)
	}
	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	send := func(k int) {
		wg.Go(func() {
			r, err := tryCall(srv, "GET", "/PasswordVault/API/Safes", tok, nil)
			if err != nil || r.status != 200 {
				t.Errorf("request %d: %v %d", k, err, r.status)
			}
			mu.Lock()
			order = append(order, k)
			mu.Unlock()
		})
	}
	waitFor := func(inFlight, queued int64) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, 2*time.Millisecond, func() error {
			st := srv.Stats()
			if st.InFlight != inFlight || st.Queue.Queued != queued {
				return fmt.Errorf("in flight %d, queued %d; want %d, %d", st.InFlight, st.Queue.Queued, inFlight, queued)
			}
			return nil
		})
	}
	send(0)
	send(1)
	waitFor(2, 0)
	// Two more than the slots queue; nothing is refused. Each is sent once
	// the one before is seen waiting, so the queue order is known.
	for k := 2; k < 6; k++ {
		send(k)
		waitFor(int64(k+1), int64(k-1))
	}
	wg.Wait()
	st := srv.Stats()
	if st.Faults.InFlight429+st.Faults.Rate429 != 0 || st.Queue.Queued != 0 || st.Queue.PeakQueued != 4 {
		t.Errorf("refused %d, queued %d, peak queued %d", st.Faults.InFlight429+st.Faults.Rate429, st.Queue.Queued, st.Queue.PeakQueued)
	}
	if st.Queue.Count != 7 || st.Queue.Waited != 4 {
		t.Errorf("queue count %d waited %d, want 7 and 4", st.Queue.Count, st.Queue.Waited)
	}
	// Requests 2 and 3 waited for one service time, 4 and 5 for two: served
	// in their order of arrival.
	pos := map[int]int{}
	for i, k := range order {
		pos[k] = i
	}
	for _, early := range []int{2, 3} {
		for _, late := range []int{4, 5} {
			if pos[early] > pos[late] {
				t.Errorf("request %d (queued earlier) finished after %d: order %v", early, late, order)
			}
		}
	}
	// 7 requests: 3 did not wait (logon, 0, 1), so the median is a wait.
	if st.Queue.Median() <= 0 || st.Queue.P95() < st.Queue.Median() || st.Queue.Max() < st.Queue.P95()*9/10 {
		t.Errorf("queue waits median %s p95 %s max %s", st.Queue.Median(), st.Queue.P95(), st.Queue.Max())
	}

	// Over the admin API, and reset.
	var js struct {
		Queue pamtest.QueueStats `json:"queue"`
	}
	call(t, srv, "GET", "/_admin/stats", "", nil).decode(t, &js)
	if js.Queue.Count != st.Queue.Count || js.Queue.MedianMs != st.Queue.MedianMs {
		t.Errorf("admin stats queue %+v, want %+v", js.Queue, st.Queue)
	}
	if r := call(t, srv, "POST", "/_admin/reset-stats", "", nil); r.status != 204 {
		t.Fatalf("reset-stats = %d", r.status)
	}
	if q := srv.Stats().Queue; q.Count != 0 || q.Waited != 0 || q.MedianMs != 0 || q.MaxMs != 0 || q.Slots != 2 {
		t.Errorf("after reset: %+v", q)
	}
}

func TestSlotsGrowAtRunTime(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 20, Faults: pamtest.Faults{Slots: 1, Latency: time.Hour}})
	tok := admin(t, srv)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if r, err := tryCall(srv, "GET", "/PasswordVault/API/Safes", tok, nil); err != nil || r.status != 200 {
				t.Errorf("%v %d", err, r.status)
			}
		})
	}
	testutil.Eventually(t, 10*time.Second, 2*time.Millisecond, func() error {
		if q := srv.Stats().Queue; q.Queued != 2 {
			return fmt.Errorf("queued %d, want 2", q.Queued)
		}
		return nil
	})
	// More slots let the waiters in at once; no latency lets all finish.
	if r := call(t, srv, "PUT", "/_admin/faults", "", `{"slots":4,"latency":"0s"}`); r.status != 200 || srv.Faults().Slots != 4 {
		t.Fatalf("PUT faults = %d %s", r.status, r.body)
	}
	testutil.Eventually(t, 10*time.Second, 2*time.Millisecond, func() error {
		if q := srv.Stats().Queue; q.Queued != 0 {
			return fmt.Errorf("queued %d, want 0", q.Queued)
		}
		return nil
	})
	srv.Close() // cuts the first request's hour short
	wg.Wait()
}
