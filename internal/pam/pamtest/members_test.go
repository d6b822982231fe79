package pamtest_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
)

// fullAccess finds an account Safe the admin user can manage, of class c.
func fullAccess(t testing.TB, v *pamtest.Vault, c pamtest.Class) pamtest.SafeInfo {
	t.Helper()
	return findSafe(t, v, func(i pamtest.SafeInfo) bool { return i.Access == pamtest.AccessFull && i.Class == c && !i.Big })
}

func TestMemberLifecycle(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 400, Seed: 2})
	tok := admin(t, srv)
	safe := fullAccess(t, srv.Vault(), pamtest.ClassAbsent)

	r := call(t, srv, "GET", memberPath(safe.Name, "PSMAppUsers"), tok, nil)
	if e := r.apiError(t); r.status != 404 || e.ErrorCode != "CAWS00001E" || !strings.HasSuffix(e.ErrorMessage, "User or Group was not found.") {
		t.Fatalf("GET absent member = %d %+v, want 404 CAWS00001E", r.status, e)
	}
	r = call(t, srv, "PUT", memberPath(safe.Name, "PSMAppUsers"), tok, `{"permissions":{"listAccounts":true}}`)
	if r.status != 404 || r.apiError(t).ErrorCode != "SFWS0008" {
		t.Fatalf("PUT non-member = %d %s, want 404 SFWS0008", r.status, r.body)
	}
	if r := call(t, srv, "DELETE", memberPath(safe.Name, "PSMAppUsers"), tok, nil); r.status != 404 || r.apiError(t).ErrorCode != "SFWS0008" {
		t.Fatalf("DELETE non-member = %d %s, want 404 SFWS0008", r.status, r.body)
	}

	add := `{"memberName":"PSMAppUsers","searchIn":"Vault","memberType":"Group","membershipExpirationDate":null,
		"permissions":{"listAccounts":true,"unlockAccounts":true}}`
	r = call(t, srv, "POST", membersPath(safe.Name), tok, add)
	if r.status != 201 {
		t.Fatalf("POST = %d %s, want 201", r.status, r.body)
	}
	var m memberJSON
	r.decode(t, &m)
	if m.MemberName != "PSMAppUsers" || m.MemberType != "Group" || m.SafeName != safe.Name || m.SafeURLID != safe.URLID || m.Expiration != nil {
		t.Errorf("POST answer = %+v", m)
	}
	if len(m.Permissions) != pam.NumPermissions {
		t.Errorf("permissions has %d keys, want 22", len(m.Permissions))
	}
	if got := trueFlags(m.Permissions); !sameSet(got, []string{"listAccounts", "unlockAccounts"}) {
		t.Errorf("flags = %v", got)
	}

	r = call(t, srv, "POST", membersPath(safe.Name), tok, add)
	if e := r.apiError(t); r.status != 409 || e.ErrorCode != "SFWS0012" || e.ErrorMessage != fmt.Sprintf("PSMAppUsers is already a member of safe %s.", safe.Name) {
		t.Errorf("second POST = %d %+v, want 409 SFWS0012", r.status, e)
	}

	// PUT replaces: listAccounts, not sent, becomes false; expiry is set.
	r = call(t, srv, "PUT", memberPath(safe.Name, "psmappusers"), tok, `{"membershipExpirationDate":2200000000,"permissions":{"unlockAccounts":true,"useAccounts":true}}`)
	if r.status != 200 {
		t.Fatalf("PUT = %d %s", r.status, r.body)
	}
	m = memberJSON{}
	r.decode(t, &m)
	if got := trueFlags(m.Permissions); !sameSet(got, []string{"unlockAccounts", "useAccounts"}) || m.Expiration == nil || *m.Expiration != 2200000000 {
		t.Errorf("after PUT: flags %v expiry %v", got, m.Expiration)
	}
	// A PUT without the expiry key keeps it; with null clears it.
	m = memberJSON{}
	call(t, srv, "PUT", memberPath(safe.Name, "PSMAppUsers"), tok, `{"permissions":{"listAccounts":true,"unlockAccounts":true}}`).decode(t, &m)
	if m.Expiration == nil || *m.Expiration != 2200000000 {
		t.Errorf("expiry not kept: %v", m.Expiration)
	}
	m = memberJSON{}
	call(t, srv, "PUT", memberPath(safe.Name, "PSMAppUsers"), tok, `{"membershipExpirationDate":null,"permissions":{"listAccounts":true,"unlockAccounts":true}}`).decode(t, &m)
	if m.Expiration != nil {
		t.Errorf("expiry not cleared: %v", *m.Expiration)
	}
	m = memberJSON{}
	call(t, srv, "GET", memberPath(safe.Name, "PSMAppUsers"), tok, nil).decode(t, &m)
	if got := trueFlags(m.Permissions); !sameSet(got, []string{"listAccounts", "unlockAccounts"}) {
		t.Errorf("GET after PUTs: %v", got)
	}

	st := srv.Stats()
	if st.MemberWrites.Add != 1 || st.MemberWrites.Update != 3 || st.WritesBySafe[safe.Name] != 4 {
		t.Errorf("writes = %+v, by safe %v", st.MemberWrites, st.WritesBySafe)
	}
	// An identical PUT changes nothing and is not a write.
	call(t, srv, "PUT", memberPath(safe.Name, "PSMAppUsers"), tok, `{"permissions":{"listAccounts":true,"unlockAccounts":true}}`)
	if got := srv.Stats().MemberWrites.Update; got != 3 {
		t.Errorf("idempotent PUT counted: updates = %d", got)
	}

	if r := call(t, srv, "DELETE", memberPath(safe.Name, "PSMAppUsers"), tok, nil); r.status != 204 || len(r.body) != 0 {
		t.Fatalf("DELETE = %d %q, want 204", r.status, r.body)
	}
	if r := call(t, srv, "GET", memberPath(safe.Name, "PSMAppUsers"), tok, nil); r.status != 404 {
		t.Errorf("GET after DELETE = %d", r.status)
	}
	// A seeded member can be deleted and added back.
	if r := call(t, srv, "DELETE", memberPath(safe.Name, "Auditors"), tok, nil); r.status != 204 {
		t.Fatalf("DELETE Auditors = %d", r.status)
	}
	if r := call(t, srv, "POST", membersPath(safe.Name), tok, `{"memberName":"Auditors","permissions":{"listAccounts":true}}`); r.status != 201 {
		t.Fatalf("re-add Auditors = %d %s", r.status, r.body)
	}
	state, _ := srv.SafeState(safe.Name)
	if a, ok := state.Member("Auditors"); !ok || a.Permissions != pam.Perms(pam.ListAccounts) {
		t.Errorf("Auditors after re-add: %+v", a)
	}
	if _, ok := state.Member("PSMAppUsers"); ok || !state.Changed {
		t.Errorf("state after delete: %+v", state)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestMemberBadRequests(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 300})
	tok := admin(t, srv)
	safe := fullAccess(t, srv.Vault(), pamtest.ClassAbsent)
	withPSM := fullAccess(t, srv.Vault(), pamtest.ClassListOnly)
	tests := []struct {
		name, method, safe, path, body string
		status                         int
		code, msg                      string
	}{
		{"unknown name", "POST", safe.Name, "", `{"memberName":"ghost","memberType":"User"}`, 404, "CAWS00001E", "Failed to add User or Group ghost. Reason: User or Group was not found."},
		{"type mismatch", "POST", safe.Name, "", `{"memberName":"PSMAppUsers","memberType":"User"}`, 404, "CAWS00001E", "Failed to add User or Group PSMAppUsers. Reason: User or Group was not found."},
		{"unknown permission", "POST", safe.Name, "", `{"memberName":"PSMAppUsers","permissions":{"unlock":true}}`, 400, "CAWS00001E", "Failed to add User or Group PSMAppUsers. Reason: Input parameter for [Permissions] value is invalid."},
		{"non-bool permission", "POST", safe.Name, "", `{"memberName":"PSMAppUsers","permissions":{"listAccounts":"yes"}}`, 400, "CAWS00001E", "Failed to add User or Group PSMAppUsers. Reason: Input parameter for [Permissions] value is invalid."},
		{"permissions list", "PUT", withPSM.Name, "PSMAppUsers", `{"permissions":["listAccounts"]}`, 400, "CAWS00001E", "Failed to update User or Group PSMAppUsers. Reason: Input parameter for [Permissions] value is invalid."},
		{"negative expiry", "PUT", withPSM.Name, "PSMAppUsers", `{"membershipExpirationDate":-1,"permissions":{}}`, 400, "CAWS00001E", "Failed to update User or Group PSMAppUsers. Reason: Input parameter for [MembershipExpirationDate] value is invalid."},
		{"missing name", "POST", safe.Name, "", `{"memberType":"Group"}`, 400, "PASWS167E", "There are some invalid parameters"},
		{"bad member type", "POST", safe.Name, "", `{"memberName":"PSMAppUsers","memberType":"Computer"}`, 400, "PASWS167E", "There are some invalid parameters"},
		{"not JSON", "POST", safe.Name, "", `memberName=PSMAppUsers`, 400, "PASWS167E", "There are some invalid parameters"},
		{"plus is not a space", "GET", safe.Name, "Vault+Admins", "", 404, "CAWS00001E", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := membersPath(tt.safe)
			if tt.path != "" {
				path += tt.path + "/"
			}
			var body any
			if tt.body != "" {
				body = tt.body
			}
			r := call(t, srv, tt.method, path, tok, body)
			e := r.apiError(t)
			if r.status != tt.status || e.ErrorCode != tt.code || (tt.msg != "" && e.ErrorMessage != tt.msg) {
				t.Errorf("%s %s = %d %+v, want %d %s %q", tt.method, path, r.status, e, tt.status, tt.code, tt.msg)
			}
		})
	}
	if st := srv.Stats(); st.MemberWrites.Total != 0 {
		t.Errorf("rejected requests wrote: %+v", st.MemberWrites)
	}
}

func TestRequestKeysAnyCase(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 300, Seed: 4})
	tok := admin(t, srv)
	safe := fullAccess(t, srv.Vault(), pamtest.ClassAbsent)
	r := call(t, srv, "POST", membersPath(safe.Name), tok,
		`{"MemberName":"psmappusers","MemberType":"group","SearchIn":"Vault","MembershipExpirationDate":"2100000000","Permissions":{"ListAccounts":true,"UNLOCKACCOUNTS":true,"useaccounts":false}}`)
	if r.status != 201 {
		t.Fatalf("PascalCase POST = %d %s", r.status, r.body)
	}
	var m memberJSON
	r.decode(t, &m)
	if m.MemberName != "PSMAppUsers" || !sameSet(trueFlags(m.Permissions), []string{"listAccounts", "unlockAccounts"}) || m.Expiration == nil || *m.Expiration != 2100000000 {
		t.Errorf("POST answer = %+v", m)
	}
	if strings.Contains(string(r.body), "MemberName") || strings.Contains(string(r.body), "ListAccounts") {
		t.Errorf("answer not camelCase: %s", r.body)
	}
	m = memberJSON{}
	call(t, srv, "PUT", memberPath(safe.Name, "PSMAppUsers"), tok, `{"PERMISSIONS":{"RetrieveAccounts":true}}`).decode(t, &m)
	if !sameSet(trueFlags(m.Permissions), []string{"retrieveAccounts"}) {
		t.Errorf("PUT with upper-case keys: %v", trueFlags(m.Permissions))
	}
}

func TestMemberNamesWithSpaces(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 2000, Seed: 6})
	tok := admin(t, srv)
	big := findSafe(t, srv.Vault(), func(i pamtest.SafeInfo) bool { return i.Big && i.Access == pamtest.AccessFull })
	for _, name := range []string{"Vault Admins", "App Owners 02", "ops.user.01"} {
		var m memberJSON
		r := call(t, srv, "GET", "/PasswordVault/API/Safes/"+big.URLID+"/Members/"+strings.ReplaceAll(name, " ", "%20")+"/", tok, nil)
		if r.status != 200 {
			t.Fatalf("GET member %q = %d %s", name, r.status, r.body)
		}
		r.decode(t, &m)
		if m.MemberName != name {
			t.Errorf("member = %q, want %q", m.MemberName, name)
		}
	}
	r := call(t, srv, "PUT", "/PasswordVault/API/Safes/"+big.URLID+"/Members/App%20Owners%2002/", tok, `{"permissions":{"listAccounts":true}}`)
	if r.status != 200 {
		t.Errorf("PUT member with a space = %d", r.status)
	}
}

func TestPermissionEnforcement(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 1000, Seed: 8})
	tok := admin(t, srv)
	ro := findSafe(t, srv.Vault(), func(i pamtest.SafeInfo) bool {
		return i.Access == pamtest.AccessReadOnly && i.Class == pamtest.ClassListOnly
	})
	if r := call(t, srv, "GET", membersPath(ro.Name), tok, nil); r.status != 200 {
		t.Errorf("read-only GET members = %d", r.status)
	}
	if r := call(t, srv, "GET", memberPath(ro.Name, "PSMAppUsers"), tok, nil); r.status != 200 {
		t.Errorf("read-only GET member = %d", r.status)
	}
	for _, rq := range []struct{ method, path, body string }{
		{"POST", membersPath(ro.Name), `{"memberName":"Auditors","memberType":"Group"}`},
		{"PUT", memberPath(ro.Name, "PSMAppUsers"), `{"permissions":{"listAccounts":true,"unlockAccounts":true}}`},
		{"DELETE", memberPath(ro.Name, "PSMAppUsers"), ""},
	} {
		var body any
		if rq.body != "" {
			body = rq.body
		}
		r := call(t, srv, rq.method, rq.path, tok, body)
		if e := r.apiError(t); r.status != 403 || e.ErrorCode != "CAWS00001E" || e.ErrorMessage != "" {
			t.Errorf("%s on a read-only Safe = %d %+v, want 403 CAWS00001E \"\"", rq.method, r.status, e)
		}
	}
	st, _ := srv.SafeState(ro.Name)
	if m, _ := st.Member("PSMAppUsers"); m.Permissions != pam.Perms(pam.ListAccounts) || st.Changed {
		t.Errorf("read-only Safe changed: %+v", st)
	}
	// Removing the admin user from a Safe hides it.
	full := fullAccess(t, srv.Vault(), pamtest.ClassCompliant)
	var before, after safeList
	call(t, srv, "GET", "/PasswordVault/API/Safes?limit=1", tok, nil).decode(t, &before)
	if r := call(t, srv, "DELETE", memberPath(full.Name, "Administrator"), tok, nil); r.status != 204 {
		t.Fatalf("DELETE own membership = %d", r.status)
	}
	call(t, srv, "GET", "/PasswordVault/API/Safes?limit=1", tok, nil).decode(t, &after)
	if after.Count != before.Count-1 {
		t.Errorf("count %d -> %d after leaving a Safe", before.Count, after.Count)
	}
	if r := call(t, srv, "GET", membersPath(full.Name), tok, nil); r.status != 404 {
		t.Errorf("members of a left Safe = %d, want 404", r.status)
	}
}

func TestMembersPaging(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 3000, Seed: 12})
	tok := admin(t, srv)
	big := findSafe(t, srv.Vault(), func(i pamtest.SafeInfo) bool { return i.Big && i.Access == pamtest.AccessFull })
	linkRE := regexp.MustCompile(`^api/safes/[^/?]+/members\?offset=(\d+)&limit=(\d+)&useCache=False`)
	walk := func(query string, limit int) (names []string, types []string, count int) {
		next := "API/Safes/" + big.URLID + "/Members" + query
		offset := 0
		for next != "" {
			var l memberList
			r := call(t, srv, "GET", srv.URL+"/"+next, tok, nil)
			if r.status != 200 {
				t.Fatalf("GET %s = %d %s", next, r.status, r.body)
			}
			r.decode(t, &l)
			count = l.Count
			if len(l.Value) > limit {
				t.Fatalf("page of %d, limit %d", len(l.Value), limit)
			}
			for _, m := range l.Value {
				names = append(names, m.MemberName)
				types = append(types, m.MemberType)
			}
			offset += len(l.Value)
			next = ""
			if l.NextLink != nil {
				if offset >= count {
					t.Fatalf("nextLink on the last page")
				}
				if m := linkRE.FindStringSubmatch(*l.NextLink); m == nil || m[1] != fmt.Sprint(offset) {
					t.Fatalf("nextLink %q", *l.NextLink)
				}
				next = *l.NextLink
			} else if offset < count {
				t.Fatalf("no nextLink at %d of %d", offset, count)
			}
		}
		if len(names) != count {
			t.Fatalf("walked %d members, count %d", len(names), count)
		}
		return names, types, count
	}
	names, _, count := walk("", 25)
	if count != pamtest.DefaultBigMemberCount {
		t.Errorf("count = %d, want %d", count, pamtest.DefaultBigMemberCount)
	}
	if slices.Contains(names, "Master") {
		t.Error("predefined users listed by default")
	}
	for _, q := range []string{"?includePredefinedUsers=true&limit=7", "?filter=includePredefinedUsers%20eq%20True&limit=7"} {
		names, _, count := walk(q, 7)
		if count != pamtest.DefaultBigMemberCount+5 || !slices.Contains(names, "Master") {
			t.Errorf("%s: count %d", q, count)
		}
	}
	_, types, count := walk("?filter=memberType%20eq%20Group%20AND%20membershipExpired%20eq%20false", 25)
	for _, ty := range types {
		if ty != "Group" {
			t.Fatalf("filter memberType eq Group returned a %s", ty)
		}
	}
	if count == 0 || count >= pamtest.DefaultBigMemberCount {
		t.Errorf("groups count = %d", count)
	}
	var l memberList
	call(t, srv, "GET", membersPath(big.Name)+"?search=OPS.USER&limit=1000", tok, nil).decode(t, &l)
	for _, m := range l.Value {
		if !strings.HasPrefix(m.MemberName, "ops.user.") {
			t.Errorf("search returned %q", m.MemberName)
		}
	}
	if l.Count == 0 || l.NextLink != nil {
		t.Errorf("search count %d nextLink %v", l.Count, l.NextLink)
	}
}

func TestMemberJSON(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 1000, Seed: 13})
	tok := admin(t, srv)
	safe := findSafe(t, srv.Vault(), func(i pamtest.SafeInfo) bool {
		return i.Access == pamtest.AccessFull && i.Class == pamtest.ClassManyFlagsExpiring && i.ManagingCPM != ""
	})
	var l memberList
	r := call(t, srv, "GET", membersPath(safe.Name)+"?includePredefinedUsers=true", tok, nil)
	r.decode(t, &l)
	kinds := map[string]bool{}
	var psm *memberJSON
	for k, m := range l.Value {
		switch {
		case m.MemberID[0] != '"':
			kinds["number"] = true
		case regexp.MustCompile(`^"\d+"$`).Match(m.MemberID):
			kinds["numeric string"] = true
		default:
			kinds["guid"] = true
		}
		if m.IsExpired == nil || m.Predefined == nil || m.ReadOnly == nil || len(m.Permissions) != pam.NumPermissions {
			t.Errorf("member %q misses fields: %+v", m.MemberName, m)
		}
		if m.MemberName == "PSMAppUsers" {
			psm = &l.Value[k]
		}
	}
	if len(kinds) != 3 {
		t.Errorf("memberId kinds = %v, want number, numeric string and GUID", kinds)
	}
	if psm == nil {
		t.Fatal("PSMAppUsers missing")
	}
	if string(psm.MemberID) != `"65"` || psm.Expiration == nil || *psm.Expiration != safe.PSMExpiration || *psm.IsExpired {
		t.Errorf("PSMAppUsers = %+v", psm)
	}
	if got := trueFlags(psm.Permissions); !sameSet(got, safe.PSMPermissions.Names()) || slices.Contains(got, "unlockAccounts") {
		t.Errorf("manyFlagsExpiring flags = %v, want %v", got, safe.PSMPermissions.Names())
	}
	if time.Unix(*psm.Expiration, 0).Year() < 2035 {
		t.Errorf("expiry %d not in the future", *psm.Expiration)
	}
	if !strings.Contains(string(r.body), `"permissions":{"useAccounts":`) {
		t.Errorf("permissions not in canonical order: %s", truncate(r.body))
	}
}

func TestCloudMemberType(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 300, Cloud: true})
	form := "grant_type=client_credentials&client_id=Administrator&client_secret=Cyberark1"
	tok := cloudToken(t, srv, form)
	safe := fullAccess(t, srv.Vault(), pamtest.ClassAbsent)
	r := call(t, srv, "POST", membersPath(safe.Name), tok, `{"memberName":"PSMAppUsers","permissions":{"listAccounts":true,"unlockAccounts":true}}`)
	e := r.apiError(t)
	if r.status != 400 || e.ErrorCode != "PASWS167E" || e.ErrorMessage != "There are some invalid parameters" {
		t.Fatalf("POST without memberType = %d %+v", r.status, e)
	}
	if len(e.Details) != 2 || e.Details[0].ErrorCode != "PASWS179E" || e.Details[1].ErrorCode != "PASWS011E" ||
		!strings.Contains(e.Details[0].ErrorMessage, "[MemberType]") || !strings.Contains(e.Details[1].ErrorMessage, "[MemberType]") {
		t.Errorf("Details = %+v", e.Details)
	}
	r = call(t, srv, "POST", membersPath(safe.Name), tok, `{"memberName":"PSMAppUsers","MemberType":"Group","permissions":{"listAccounts":true,"unlockAccounts":true}}`)
	if r.status != 201 {
		t.Fatalf("POST with memberType = %d %s", r.status, r.body)
	}
	var l safeList
	call(t, srv, "GET", "/PasswordVault/API/Safes", tok, nil).decode(t, &l)
	if l.NextLink == nil || !strings.HasPrefix(*l.NextLink, "API/Safes?offset=25&limit=25") {
		t.Errorf("cloud nextLink = %v", l.NextLink)
	}
}

// cloudToken returns an "Authorization" value from the token endpoint.
func cloudToken(t *testing.T, srv *pamtest.Server, form string) string {
	t.Helper()
	res, err := srv.Client().Post(srv.IdentityURL+"/oauth2/platformtoken", "application/x-www-form-urlencoded", strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(res.Body).Decode(&tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("platformtoken: %d %v", res.StatusCode, err)
	}
	return "Bearer " + tr.AccessToken
}

func TestOptionsBehaviour(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 300, StrictDots: true, AddImpliesUpdateProperties: true, MemberNotFoundCode: "SFWS0008"})
	tok := admin(t, srv)
	safe := fullAccess(t, srv.Vault(), pamtest.ClassListOnly)
	var m memberJSON
	call(t, srv, "PUT", memberPath(safe.Name, "PSMAppUsers"), tok, `{"permissions":{"addAccounts":true}}`).decode(t, &m)
	if !sameSet(trueFlags(m.Permissions), []string{"addAccounts", "updateAccountProperties"}) {
		t.Errorf("addAccounts side effect: %v", trueFlags(m.Permissions))
	}
	if r := call(t, srv, "GET", memberPath(safe.Name, "Nobody"), tok, nil); r.apiError(t).ErrorCode != "SFWS0008" {
		t.Errorf("MemberNotFoundCode not used: %s", r.body)
	}
	dotted := findSafe(t, srv.Vault(), func(i pamtest.SafeInfo) bool {
		return strings.HasPrefix(i.Name, "db.prod.") && i.Access == pamtest.AccessFull
	})
	r := call(t, srv, "GET", "/PasswordVault/API/Safes/"+dotted.URLID, tok, nil)
	if r.status != 404 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Errorf("dotted URL without slash = %d %s", r.status, r.header.Get("Content-Type"))
	}
	if r := call(t, srv, "GET", "/PasswordVault/API/Safes/"+dotted.URLID+"/", tok, nil); r.status != 200 {
		t.Errorf("dotted URL with slash = %d", r.status)
	}
}

// TestAddUnknownPrincipal checks the answers of POST member that the client
// tells apart (pam.ErrUnknownPrincipal vs pam.ErrSafeNotFound): a name the
// directory does not know, or knows with another type, is 404 CAWS00001E;
// a missing Safe is 404 SFWS0007; a name added to Options.Principals is
// accepted.
func TestAddUnknownPrincipal(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 200, Seed: 9, Principals: []pamtest.Principal{{Name: "App Owners (EU)", Type: pam.MemberTypeGroup}}})
	tok := admin(t, srv)
	safe := fullAccess(t, srv.Vault(), pamtest.ClassAbsent)
	tests := []struct {
		name   string
		safe   string
		body   string
		status int
		code   string
		msg    string
	}{
		{"unknown name", safe.Name, `{"memberName":"nobody at all","memberType":"User","permissions":{}}`, 404, "CAWS00001E", "User or Group was not found."},
		{"known name, other type", safe.Name, `{"memberName":"App Owners (EU)","memberType":"User","permissions":{}}`, 404, "CAWS00001E", "User or Group was not found."},
		{"missing Safe", "No Such Safe", `{"memberName":"PSMAppUsers","memberType":"Group","permissions":{}}`, 404, "SFWS0007", ""},
		{"principal from Options", safe.Name, `{"memberName":"app owners (eu)","memberType":"Group","permissions":{"listAccounts":true}}`, 201, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, srv, "POST", membersPath(tt.safe), tok, tt.body)
			if r.status != tt.status {
				t.Fatalf("POST = %d %s, want %d", r.status, r.body, tt.status)
			}
			if tt.code == "" {
				return
			}
			if e := r.apiError(t); e.ErrorCode != tt.code || !strings.Contains(e.ErrorMessage, tt.msg) {
				t.Errorf("error = %+v, want %s with %q", e, tt.code, tt.msg)
			}
		})
	}
}
