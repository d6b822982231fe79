package metrics

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/safeperm/safeperm/internal/pam"
)

func TestRouteLabel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		route string
		want  string
	}{
		// Every template the PVWA client sends.
		{"GET /API/Safes", "GET /API/Safes"},
		{"GET /API/Safes/{id}", "GET /API/Safes/{id}"},
		{"GET /API/Safes/{id}/Members", "GET /API/Safes/{id}/Members"},
		{"POST /API/Safes/{id}/Members", "POST /API/Safes/{id}/Members"},
		{"GET /API/Safes/{id}/Members/{name}", "GET /API/Safes/{id}/Members/{name}"},
		{"PUT /API/Safes/{id}/Members/{name}", "PUT /API/Safes/{id}/Members/{name}"},
		{"DELETE /API/Safes/{id}/Members/{name}", "DELETE /API/Safes/{id}/Members/{name}"},
		{"POST /API/Auth/CyberArk/Logon", "POST /API/Auth/CyberArk/Logon"},
		{"POST /API/Auth/RADIUS/Logon", "POST /API/Auth/RADIUS/Logon"},
		{"POST /API/Auth/Logoff", "POST /API/Auth/Logoff"},
		{"POST /oauth2/platformtoken", "POST /oauth2/platformtoken"},
		// Raw ids and anything else that is not a template.
		{"GET /API/Safes/P-LIN-01", "other"},
		{"GET /API/Safes/{id}/Members/john.doe@corp.example", "other"},
		{"GET /API/Safes/Finance%20EU", "other"},
		{"GET /API/Safes/Finance EU", "other"},
		{"GET /API/Safes/12345", "other"},
		{"GET /API/Safes?offset=25", "other"},
		{"GET /API/Safes/", "other"},
		{"GET /", "other"},
		{"get /API/Safes", "other"},
		{"BREW /API/Safes", "other"},
		{"/API/Safes", "other"},
		{"GET  /API/Safes", "other"},
		{"GET /API/Safes\n", "other"},
		{"GET /API/{}", "other"},
		{"GET /a/b/c/d/e/f/g/h", "GET /a/b/c/d/e/f/g/h"},
		{"GET /a/b/c/d/e/f/g/h/i", "other"},
		{"GET /" + strings.Repeat("a", 32), "GET /" + strings.Repeat("a", 32)},
		{"GET /" + strings.Repeat("a", 33), "other"},
		{"", "other"},
	}
	s := newRouteSet(maxRoutes)
	for _, tt := range tests {
		if got := s.label(tt.route); got != tt.want {
			t.Errorf("label(%q) = %q, want %q", tt.route, got, tt.want)
		}
	}
}

func TestRouteCardinalityCap(t *testing.T) {
	t.Parallel()
	m := New("")
	// 80 distinct well-formed routes: a raw name that happens to be a plain
	// word passes the pattern, so only the cap stops it.
	for i := range 80 {
		route := fmt.Sprintf("GET /API/Safes/Safe%d", i)
		for range 2 {
			m.ObservePVWA(pam.CallInfo{Route: route, Status: 200, Attempt: 1})
		}
	}
	got := samples(t, exposition(t, m))
	tests := []struct {
		name   string
		series string
		want   float64
	}{
		{"first route kept", `safeperm_pvwa_requests_total{code="200",route="GET /API/Safes/Safe0"}`, 2},
		{"50th route kept", `safeperm_pvwa_requests_total{code="200",route="GET /API/Safes/Safe49"}`, 2},
		{"the rest folded into other", `safeperm_pvwa_requests_total{code="200",route="other"}`, 60},
		{"durations folded alike", `safeperm_pvwa_request_duration_seconds_count{route="other"}`, 60},
	}
	for _, tt := range tests {
		if g, ok := got[tt.series]; !ok || g != tt.want {
			t.Errorf("%s: %s = %v (present %v), want %v", tt.name, tt.series, g, ok, tt.want)
		}
	}
	if _, ok := got[`safeperm_pvwa_requests_total{code="200",route="GET /API/Safes/Safe50"}`]; ok {
		t.Error("51st distinct route got a series of its own")
	}
	if n, want := countSeries(got, "safeperm_pvwa_requests_total"), maxRoutes+1; n != want {
		t.Errorf("safeperm_pvwa_requests_total has %d series, want %d", n, want)
	}
	if n, want := countSeries(got, "safeperm_pvwa_request_duration_seconds_count"), maxRoutes+1; n != want {
		t.Errorf("duration histogram has %d series, want %d", n, want)
	}
}

func TestRouteSetConcurrent(t *testing.T) {
	t.Parallel()
	s := newRouteSet(10)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				s.label(fmt.Sprintf("GET /r%d/x%d", g, i%20))
			}
		})
	}
	wg.Wait()
	if n := len(s.seen); n != 10 {
		t.Errorf("%d routes kept, want the cap of 10", n)
	}
}

// FuzzRouteLabel checks that a label is either the route itself, matching
// the template pattern, or "other".
func FuzzRouteLabel(f *testing.F) {
	for _, seed := range []string{"GET /API/Safes/{id}", "GET /API/Safes/P-LIN-01", "", "POST /oauth2/platformtoken"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, route string) {
		got := newRouteSet(maxRoutes).label(route)
		switch {
		case got == valueOther:
		case got != route:
			t.Fatalf("label(%q) = %q: neither the route nor %q", route, got, valueOther)
		case !routePattern.MatchString(got):
			t.Fatalf("label(%q) kept a route that is not a template", route)
		case len(got) > 8*34+8:
			t.Fatalf("label(%q) is %d bytes long", route, len(got))
		}
	})
}
