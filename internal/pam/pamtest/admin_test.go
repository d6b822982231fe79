package pamtest_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/url"
	"testing"

	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
)

// stateLines decodes a JSON Lines state dump.
func stateLines(t *testing.T, b []byte) []pamtest.SafeState {
	t.Helper()
	var out []pamtest.SafeState
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var s pamtest.SafeState
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, s)
	}
	return out
}

func TestAdminStats(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 300})
	if srv.AdminURL != srv.IdentityURL+"/_admin" {
		t.Fatalf("AdminURL = %q", srv.AdminURL)
	}
	tok := admin(t, srv)
	safe := fullAccess(t, srv.Vault(), pamtest.ClassListOnly)
	call(t, srv, "GET", "/PasswordVault/API/Safes", tok, nil)
	call(t, srv, "GET", "/PasswordVault/API/Safes", "", nil)
	call(t, srv, "GET", memberPath(safe.Name, "PSMAppUsers"), tok, nil)
	call(t, srv, "PUT", memberPath(safe.Name, "PSMAppUsers"), tok, `{"permissions":{"listAccounts":true,"unlockAccounts":true}}`)
	call(t, srv, "GET", "/nowhere", "", nil)

	var st pamtest.Stats
	call(t, srv, "GET", "/_admin/stats", "", nil).decode(t, &st)
	for _, tt := range []struct {
		route  string
		status int
		want   int64
	}{
		{pamtest.RouteLogon, 200, 1},
		{pamtest.RouteSafes, 200, 1},
		{pamtest.RouteSafes, 401, 1},
		{pamtest.RouteMember, 200, 1},
		{pamtest.RouteUpdateMember, 200, 1},
		{pamtest.RouteOther, 404, 1},
	} {
		if got := st.Count(tt.route, tt.status); got != tt.want {
			t.Errorf("requests[%s][%d] = %d, want %d", tt.route, tt.status, got, tt.want)
		}
	}
	if st.RequestsTotal != 6 || st.Logons != 1 || st.MemberWrites.Update != 1 || st.MemberWrites.Total != 1 ||
		st.SafesWritten != 1 || st.WritesBySafe[safe.Name] != 1 || st.PeakInFlight < 1 || st.SessionsActive != 1 {
		t.Errorf("stats = %+v", st)
	}
	if r := call(t, srv, "POST", "/_admin/reset-stats", "", nil); r.status != 204 {
		t.Fatalf("reset-stats = %d", r.status)
	}
	st = srv.Stats()
	if st.RequestsTotal != 0 || st.MemberWrites.Total != 0 || st.SafesWritten != 0 || st.Logons != 0 {
		t.Errorf("after reset: %+v", st)
	}
	// The vault keeps its changes across a reset.
	if s, _ := srv.SafeState(safe.Name); !s.Changed {
		t.Error("reset-stats lost the change")
	}
}

func TestAdminState(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 500, Seed: 21})
	tok := admin(t, srv)
	listOnly := fullAccess(t, srv.Vault(), pamtest.ClassListOnly)
	absent := fullAccess(t, srv.Vault(), pamtest.ClassAbsent)
	call(t, srv, "PUT", memberPath(listOnly.Name, "PSMAppUsers"), tok, `{"permissions":{"listAccounts":true,"unlockAccounts":true}}`)

	all := stateLines(t, call(t, srv, "GET", "/_admin/state", "", nil).body)
	if len(all) != 500 {
		t.Fatalf("state has %d lines, want 500", len(all))
	}
	for i, s := range all {
		if s.Index != i || s.Name != srv.Vault().Name(i) {
			t.Fatalf("line %d = %d %q", i, s.Index, s.Name)
		}
		seeded := srv.Vault().Info(i)
		psm, ok := s.Member("PSMAppUsers")
		if s.Name == listOnly.Name {
			if !s.Changed || psm.Permissions != pam.Perms(pam.ListAccounts, pam.UnlockAccounts) {
				t.Errorf("changed Safe: %+v", s)
			}
			continue
		}
		if s.Changed || ok != seeded.PSMMember || psm.Permissions != seeded.PSMPermissions || s.Class != seeded.Class {
			t.Fatalf("Safe %q: state %+v, seeded %+v", s.Name, psm, seeded)
		}
	}

	// Admin mutations over HTTP.
	r := call(t, srv, "POST", "/_admin/safes/"+url.PathEscape(absent.Name)+"/members", "",
		`{"memberName":"PSMAppUsers","permissions":["listAccounts"],"membershipExpirationDate":2100000000}`)
	if r.status != 200 {
		t.Fatalf("admin set member = %d %s", r.status, r.body)
	}
	var s pamtest.SafeState
	r.decode(t, &s)
	if m, ok := s.Member("PSMAppUsers"); !ok || m.Type != "Group" || m.Expiration == nil || *m.Expiration != 2100000000 {
		t.Errorf("admin set member: %+v", m)
	}
	var m memberJSON
	call(t, srv, "GET", memberPath(absent.Name, "PSMAppUsers"), tok, nil).decode(t, &m)
	if !sameSet(trueFlags(m.Permissions), []string{"listAccounts"}) {
		t.Errorf("API does not see the admin change: %+v", m)
	}
	if r := call(t, srv, "DELETE", "/_admin/safes/"+url.PathEscape(absent.Name)+"/members/PSMAppUsers", "", nil); r.status != 204 {
		t.Errorf("admin remove member = %d", r.status)
	}
	if r := call(t, srv, "DELETE", "/_admin/safes/"+url.PathEscape(absent.Name)+"/members/PSMAppUsers", "", nil); r.status != 404 {
		t.Errorf("admin remove non-member = %d", r.status)
	}

	var before safeList
	call(t, srv, "GET", "/PasswordVault/API/Safes?limit=1", tok, nil).decode(t, &before)
	if r := call(t, srv, "DELETE", "/_admin/safes/"+url.PathEscape(listOnly.Name), "", nil); r.status != 204 {
		t.Fatalf("admin delete Safe = %d", r.status)
	}
	var after safeList
	call(t, srv, "GET", "/PasswordVault/API/Safes?limit=1", tok, nil).decode(t, &after)
	if after.Count != before.Count-1 {
		t.Errorf("count %d -> %d after delete", before.Count, after.Count)
	}
	if r := call(t, srv, "GET", membersPath(listOnly.Name), tok, nil); r.status != 404 || r.apiError(t).ErrorCode != "SFWS0007" {
		t.Errorf("deleted Safe = %d %s", r.status, r.body)
	}
	if r := call(t, srv, "DELETE", "/_admin/safes/"+url.PathEscape(listOnly.Name), "", nil); r.status != 404 {
		t.Errorf("delete twice = %d", r.status)
	}

	changed := stateLines(t, call(t, srv, "GET", "/_admin/state?changed=1", "", nil).body)
	if len(changed) != 2 || changed[0].Index > changed[1].Index {
		t.Fatalf("changed state = %+v", changed)
	}
	for _, c := range changed {
		if c.Name == listOnly.Name && (!c.Deleted || len(c.Members) != 0) {
			t.Errorf("deleted Safe line: %+v", c)
		}
	}
	one := stateLines(t, call(t, srv, "GET", "/_admin/state?safe="+url.QueryEscape(absent.Name)+"&member=Vault%20Admins", "", nil).body)
	if len(one) != 1 || len(one[0].Members) != 1 || one[0].Members[0].Name != "Vault Admins" {
		t.Errorf("state?safe&member = %+v", one)
	}
	if r := call(t, srv, "GET", "/_admin/state?safe=nope", "", nil); r.status != 404 {
		t.Errorf("state of unknown Safe = %d", r.status)
	}
	if r := call(t, srv, "GET", "/_admin/safes/"+url.PathEscape(absent.Name), "", nil); r.status != 200 {
		t.Errorf("GET admin safe = %d", r.status)
	}
	var vi pamtest.VaultInfo
	call(t, srv, "GET", "/_admin/vault", "", nil).decode(t, &vi)
	if vi.Safes != 500 || vi.Seed != 21 || vi.Census.Internal != 44 || vi.Visible["Administrator"] != after.Count {
		t.Errorf("vault info = %+v", vi)
	}
	if r := call(t, srv, "GET", "/_admin/", "", nil); r.status != 200 || !bytes.Contains(r.body, []byte("/_admin/state")) {
		t.Errorf("admin index = %d", r.status)
	}
}

func TestConcurrentWrites(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 400, Seed: 5})
	tok := admin(t, srv)
	v := srv.Vault()
	var targets []pamtest.SafeInfo
	for i := v.Internal(); i < v.Len() && len(targets) < 40; i++ {
		if info := v.Info(i); info.Access == pamtest.AccessFull && info.Class != pamtest.ClassAbsent {
			targets = append(targets, info)
		}
	}
	done := make(chan struct{})
	for w := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for k, s := range targets {
				if k%8 == w%8 || k%3 == 0 {
					for _, rq := range []struct{ method, path, body string }{
						{"PUT", memberPath(s.Name, "PSMAppUsers"), `{"permissions":{"listAccounts":true,"unlockAccounts":true}}`},
						{"GET", "/PasswordVault/API/Safes?limit=100", ""},
					} {
						var body any
						if rq.body != "" {
							body = rq.body
						}
						if r, err := tryCall(srv, rq.method, rq.path, tok, body); err != nil || r.status != 200 {
							t.Errorf("%s %s: %d %v", rq.method, rq.path, r.status, err)
						}
					}
				}
			}
		}()
	}
	for range 8 {
		<-done
	}
	changed := stateLines(t, call(t, srv, "GET", "/_admin/state?changed=1&member=PSMAppUsers", "", nil).body)
	var want int64
	for _, s := range targets {
		if s.Class != pamtest.ClassCompliant {
			want++
		}
	}
	for _, c := range changed {
		if c.Members[0].Permissions != pam.Perms(pam.ListAccounts, pam.UnlockAccounts) {
			t.Errorf("Safe %q: %v", c.Name, c.Members[0].Permissions)
		}
	}
	if st := srv.Stats(); st.MemberWrites.Update != want || int64(len(changed)) != want {
		t.Errorf("updates = %d, changed Safes %d, want %d", st.MemberWrites.Update, len(changed), want)
	}
}
