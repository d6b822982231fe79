package pamtest_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
)

func TestLogonReturnsQuotedToken(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 10})
	tests := []struct {
		name string
		path string
		body string
	}{
		{"cyberark camelCase", "/PasswordVault/API/Auth/CyberArk/Logon", `{"username":"Administrator","password":"Cyberark1"}`},
		{"ldap PascalCase", "/PasswordVault/api/auth/ldap/logon", `{"UserName":"Administrator","Password":"Cyberark1","ConcurrentSession":true}`},
		{"radius upper keys, trailing slash", "/passwordvault/API/Auth/RADIUS/Logon/", `{"USERNAME":"administrator","PASSWORD":"Cyberark1","concurrentSession":"true"}`},
		{"windows", "/PasswordVault/API/Auth/Windows/Logon", `{"username":"Administrator","password":"Cyberark1","concurrentSession":true}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, srv, "POST", tt.path, "", tt.body)
			if r.status != 200 {
				t.Fatalf("status = %d %s, want 200", r.status, r.body)
			}
			if len(r.body) < 2 || r.body[0] != '"' || r.body[len(r.body)-1] != '"' {
				t.Fatalf("body %q is not a JSON string literal", r.body)
			}
			var tok string
			r.decode(t, &tok)
			if len(tok) < 180 {
				t.Errorf("token length %d, want >= 180", len(tok))
			}
			if _, err := base64.StdEncoding.DecodeString(tok); err != nil {
				t.Errorf("token is not base64: %v", err)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q", ct)
			}
			if r := call(t, srv, "GET", "/PasswordVault/API/Safes", tok, nil); r.status != 200 {
				t.Errorf("token does not work: %d %s", r.status, r.body)
			}
		})
	}
}

func TestLogonFailure(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 10})
	tests := []struct {
		name, body string
		user       string
	}{
		{"wrong password", `{"username":"Administrator","password":"nope"}`, "Administrator"},
		{"unknown user", `{"username":"mallory","password":"Cyberark1"}`, "mallory"},
		{"empty", `{}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, srv, "POST", "/PasswordVault/API/Auth/CyberArk/Logon", "", tt.body)
			if r.status != 403 {
				t.Fatalf("status = %d, want 403", r.status)
			}
			e := r.apiError(t)
			if want := "Authentication failure for User [" + tt.user + "]."; e.ErrorCode != "ITATS004E" || e.ErrorMessage != want {
				t.Errorf("error = %+v, want ITATS004E %q", e, want)
			}
		})
	}
	if got := srv.Stats().LogonFailures; got != 3 {
		t.Errorf("LogonFailures = %d, want 3", got)
	}
}

func TestConcurrentSession(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 10, Users: []pamtest.User{{Name: "other", Password: "pw"}}})
	works := func(tok string) bool {
		r := call(t, srv, "GET", "/PasswordVault/API/Safes", tok, nil)
		if r.status == 401 {
			if e := r.apiError(t); e.ErrorCode != "PASWS006E" {
				t.Errorf("401 with code %q, want PASWS006E", e.ErrorCode)
			}
		}
		return r.status == 200
	}
	a := logon(t, srv, "Administrator", "Cyberark1", true)
	b := logon(t, srv, "Administrator", "Cyberark1", true)
	o := logon(t, srv, "other", "pw", false)
	if !works(a) || !works(b) || !works(o) {
		t.Fatal("concurrent sessions should all work")
	}
	c := logon(t, srv, "administrator", "Cyberark1", false)
	if works(a) || works(b) {
		t.Error("a logon without concurrentSession must end the user's other sessions")
	}
	if !works(c) {
		t.Error("the new session must work")
	}
	if !works(o) {
		t.Error("another user's session must survive")
	}
	if got := srv.Stats().SessionsEnded; got != 2 {
		t.Errorf("SessionsEnded = %d, want 2", got)
	}
}

func TestLogoff(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 10})
	tok := admin(t, srv)
	r := call(t, srv, "POST", "/PasswordVault/API/Auth/Logoff", tok, nil)
	if r.status != 200 {
		t.Fatalf("logoff = %d %s", r.status, r.body)
	}
	if r := call(t, srv, "GET", "/PasswordVault/API/Safes", tok, nil); r.status != 401 {
		t.Errorf("after logoff: %d, want 401", r.status)
	}
	if r := call(t, srv, "POST", "/PasswordVault/API/Auth/Logoff", tok, nil); r.status != 401 {
		t.Errorf("second logoff: %d, want 401", r.status)
	}
}

func TestUnauthorized(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	srv := newSim(t, pamtest.Options{Safes: 10, TokenTTL: time.Minute, IdleTimeout: 0, Now: clock.Now})
	tok := admin(t, srv)
	tests := []struct {
		name, auth string
	}{
		{"missing", ""},
		{"garbage", "not-a-token"},
		{"bearer scheme on self-hosted", "Bearer " + tok},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range []string{"/PasswordVault/API/Safes", "/PasswordVault/API/Safes/x/Members/", "/PasswordVault/API/Safes/x/Members/y/"} {
				r := call(t, srv, "GET", path, tt.auth, nil)
				if r.status != 401 || r.apiError(t).ErrorCode != "PASWS006E" {
					t.Errorf("%s: %d %s, want 401 PASWS006E", path, r.status, r.body)
				}
			}
		})
	}
	if r := call(t, srv, "GET", "/PasswordVault/API/Safes", tok, nil); r.status != 200 {
		t.Fatalf("fresh token: %d", r.status)
	}
	clock.Advance(59 * time.Second)
	if r := call(t, srv, "GET", "/PasswordVault/API/Safes", tok, nil); r.status != 200 {
		t.Fatalf("token before TTL: %d", r.status)
	}
	clock.Advance(time.Second)
	if r := call(t, srv, "GET", "/PasswordVault/API/Safes", tok, nil); r.status != 401 || r.apiError(t).ErrorCode != "PASWS006E" {
		t.Fatalf("expired token: %d %s, want 401 PASWS006E", r.status, r.body)
	}
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	srv := newSim(t, pamtest.Options{Safes: 10, IdleTimeout: 10 * time.Second, Now: clock.Now})
	tok := admin(t, srv)
	for range 5 {
		clock.Advance(9 * time.Second)
		if r := call(t, srv, "GET", "/PasswordVault/API/Safes", tok, nil); r.status != 200 {
			t.Fatalf("used within the idle timeout: %d", r.status)
		}
	}
	clock.Advance(10 * time.Second)
	if r := call(t, srv, "GET", "/PasswordVault/API/Safes", tok, nil); r.status != 401 {
		t.Fatalf("idle token: %d, want 401", r.status)
	}
}

func TestCloudToken(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	srv := newSim(t, pamtest.Options{Safes: 300, Cloud: true, TokenTTL: 900 * time.Second, Now: clock.Now})
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"Administrator"}, "client_secret": {"Cyberark1"}}
	post := func(f url.Values, basic string) resp {
		req, _ := http.NewRequest("POST", srv.IdentityURL+"/oauth2/platformtoken", strings.NewReader(f.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if basic != "" {
			req.Header.Set("Authorization", basic)
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp{status: res.StatusCode, header: res.Header, body: b}
	}
	r := post(form, "")
	if r.status != 200 {
		t.Fatalf("platformtoken = %d %s", r.status, r.body)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
	}
	r.decode(t, &tr)
	if tr.TokenType != "Bearer" || tr.ExpiresIn != 900 || strings.Count(tr.AccessToken, ".") != 2 {
		t.Fatalf("token answer = %+v", tr)
	}
	if r := call(t, srv, "GET", "/PasswordVault/API/Safes", "Bearer "+tr.AccessToken, nil); r.status != 200 {
		t.Fatalf("Bearer token: %d %s", r.status, r.body)
	}
	if r := call(t, srv, "GET", "/PasswordVault/API/Safes", "bearer "+tr.AccessToken, nil); r.status != 200 {
		t.Fatalf("lower-case scheme: %d", r.status)
	}
	if r := call(t, srv, "GET", "/PasswordVault/API/Safes", tr.AccessToken, nil); r.status != 401 {
		t.Errorf("raw token in cloud mode: %d, want 401", r.status)
	}
	if r := call(t, srv, "POST", "/PasswordVault/API/Auth/CyberArk/Logon", "", `{"username":"Administrator","password":"Cyberark1"}`); r.status != 404 {
		t.Errorf("PVWA logon in cloud mode: %d, want 404", r.status)
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("Administrator:Cyberark1"))
	if r := post(url.Values{"grant_type": {"client_credentials"}}, basic); r.status != 200 {
		t.Errorf("basic client credentials: %d %s", r.status, r.body)
	}
	bad := url.Values{"grant_type": {"client_credentials"}, "client_id": {"Administrator"}, "client_secret": {"x"}}
	if r := post(bad, ""); r.status != 401 || !strings.Contains(string(r.body), `"access_denied"`) {
		t.Errorf("bad secret: %d %s", r.status, r.body)
	}
	if r := post(url.Values{"grant_type": {"password"}}, ""); r.status != 400 {
		t.Errorf("bad grant type: %d", r.status)
	}
	clock.Advance(900 * time.Second)
	if r := call(t, srv, "GET", "/PasswordVault/API/Safes", "Bearer "+tr.AccessToken, nil); r.status != 401 || r.apiError(t).ErrorCode != "PASWS006E" {
		t.Errorf("expired bearer: %d %s", r.status, r.body)
	}
	// A self-hosted server has no token endpoint.
	plain := newSim(t, pamtest.Options{Safes: 10})
	if r := call(t, plain, "POST", "/oauth2/platformtoken", "", form.Encode()); r.status != 404 {
		t.Errorf("platformtoken on self-hosted: %d, want 404", r.status)
	}
}

func TestExpireSessions(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 10})
	tok := admin(t, srv)
	r := call(t, srv, "DELETE", "/_admin/sessions", "", nil)
	var got map[string]int
	r.decode(t, &got)
	if got["ended"] != 1 {
		t.Errorf("ended = %v", got)
	}
	if r := call(t, srv, "GET", "/PasswordVault/API/Safes", tok, nil); r.status != 401 {
		t.Errorf("after expire: %d", r.status)
	}
}

func TestUserRights(t *testing.T) {
	t.Parallel()
	reader := pam.Perms(pam.ListAccounts, pam.ViewSafeMembers)
	srv := newSim(t, pamtest.Options{Safes: 120, Users: []pamtest.User{
		{Name: "reader", Password: "r", Rights: pamtest.AllSafes(reader)},
		{Name: "nobody", Password: "n", Rights: pamtest.NoSafes()},
		{Name: "clone", Password: "c"},
	}})
	count := func(user, pass string) int {
		tok := logon(t, srv, user, pass, true)
		var l safeList
		call(t, srv, "GET", "/PasswordVault/API/Safes?limit=1", tok, nil).decode(t, &l)
		return l.Count
	}
	if got := count("reader", "r"); got != 120 {
		t.Errorf("reader sees %d Safes, want 120", got)
	}
	if got := count("nobody", "n"); got != 0 {
		t.Errorf("nobody sees %d Safes, want 0", got)
	}
	if got, want := count("clone", "c"), count("Administrator", "Cyberark1"); got != want {
		t.Errorf("clone sees %d Safes, admin %d", got, want)
	}
	tok := logon(t, srv, "reader", "r", true)
	safe := srv.Vault().Name(50)
	if r := call(t, srv, "GET", membersPath(safe), tok, nil); r.status != 200 {
		t.Errorf("reader GET members: %d", r.status)
	}
	if r := call(t, srv, "PUT", memberPath(safe, "Auditors"), tok, `{"permissions":{}}`); r.status != 403 {
		t.Errorf("reader PUT: %d, want 403", r.status)
	}
	// Granting nobody a membership makes the Safe visible to it.
	if err := srv.SetMember(safe, pamtest.MemberState{Name: "nobody", Permissions: pam.Perms(pam.ListAccounts)}); err != nil {
		t.Fatal(err)
	}
	if got := count("nobody", "n"); got != 1 {
		t.Errorf("nobody sees %d Safes after SetMember, want 1", got)
	}
	ntok := logon(t, srv, "nobody", "n", true)
	r := call(t, srv, "GET", membersPath(safe), ntok, nil)
	if r.status != 403 {
		t.Fatalf("member without viewSafeMembers: %d, want 403", r.status)
	}
	if e := r.apiError(t); e.ErrorCode != "CAWS00001E" || e.ErrorMessage != "" {
		t.Errorf("403 body = %+v, want CAWS00001E with empty message", e)
	}
	var one safeJSON
	call(t, srv, "GET", "/PasswordVault/API/Safes/"+url.PathEscape(safe)+"/", ntok, nil).decode(t, &one)
	if one.SafeName != safe {
		t.Errorf("GET one Safe as member: %+v", one)
	}
	var raw json.RawMessage
	call(t, srv, "GET", "/_admin/vault", "", nil).decode(t, &raw)
	if !strings.Contains(string(raw), `"nobody":1`) {
		t.Errorf("vault info visible counts: %s", raw)
	}
}
