package pam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/secret"
	"github.com/safeperm/safeperm/internal/testutil"
)

// memberJSON is a minimal valid member answer.
const memberJSON = `{"memberName":"PSMAppUsers","memberType":"Group","memberId":"65","permissions":{"listAccounts":true}}`

func okMember(w http.ResponseWriter, _ *http.Request) { writeRaw(w, 200, memberJSON) }

func TestLogonPerAuthType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		auth     string
		path     string
		wantBody map[string]any
	}{
		{"cyberark", "/PasswordVault/API/Auth/CyberArk/Logon", map[string]any{"username": testUser, "password": testPassword, "concurrentSession": true}},
		{"LDAP", "/PasswordVault/API/Auth/LDAP/Logon", map[string]any{"username": testUser, "password": testPassword, "concurrentSession": true}},
		{"radius", "/PasswordVault/API/Auth/RADIUS/Logon", map[string]any{"username": testUser, "password": testPassword, "concurrentSession": true}},
		{"Windows", "/PasswordVault/API/Auth/Windows/Logon", map[string]any{"concurrentSession": true}},
	}
	for _, tt := range tests {
		t.Run(tt.auth, func(t *testing.T) {
			t.Parallel()
			f := newFakePVWA(t, okMember)
			c, _ := newTestClient(t, f, func(cfg *Config) { cfg.Auth = tt.auth })
			if _, err := c.Member(ctxT(t), "Safe1", "PSMAppUsers"); err != nil {
				t.Fatalf("Member: %v", err)
			}
			all := f.all()
			if len(all) != 2 {
				t.Fatalf("got %d requests, want logon + GET", len(all))
			}
			logon := all[0]
			if logon.Method != "POST" || logon.URI != tt.path || !strings.HasPrefix(logon.CType, "application/json") {
				t.Errorf("logon = %s %s (%s), want POST %s (application/json)", logon.Method, logon.URI, logon.CType, tt.path)
			}
			var body map[string]any
			if err := json.Unmarshal(logon.Body, &body); err != nil {
				t.Fatalf("logon body %s: %v", logon.Body, err)
			}
			if fmt.Sprint(body) != fmt.Sprint(tt.wantBody) {
				t.Errorf("logon body = %v, want %v", body, tt.wantBody)
			}
			// Self-hosted: the raw token, no scheme.
			if got := all[1].Auth; !strings.HasPrefix(got, tokenPrefix+"1-") {
				t.Errorf("Authorization = %q, want the raw token", got)
			}
		})
	}
}

func TestLogonAnswerShapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		status  int
		body    string
		wantTok string // "" means an error
		wantErr []error
		notErr  []error
	}{
		{name: "JSON string", status: 200, body: `"abc.DEF+/="`, wantTok: "abc.DEF+/="},
		{name: "JSON string with blanks", status: 200, body: " \r\n\"tok123\"\n", wantTok: "tok123"},
		{name: "bare token", status: 200, body: "bareTok==", wantTok: "bareTok=="},
		{name: "empty", status: 200, body: "", wantErr: []error{ErrUnauthorized, ErrPermanent}},
		{name: "object", status: 200, body: `{"AdditionalInfo":"x","UserName":"u"}`, wantErr: []error{ErrUnauthorized}},
		{name: "token with a space", status: 200, body: `"a b"`, wantErr: []error{ErrUnauthorized}},
		{name: "403 ITATS004E", status: 403, body: `{"ErrorCode":"ITATS004E","ErrorMessage":"Authentication failure for User [svc]."}`, wantErr: []error{ErrUnauthorized, ErrForbidden}, notErr: []error{ErrTransient}},
		{name: "401", status: 401, body: `{"ErrorCode":"PASWS013E","ErrorMessage":"Authentication failed"}`, wantErr: []error{ErrUnauthorized}},
		{name: "409 password expired", status: 409, body: `{"ErrorCode":"ITATS005E","ErrorMessage":"Password expired"}`, wantErr: []error{ErrUnauthorized}},
		{name: "500 HTML", status: 500, body: `<html><body>boom</body></html>`, wantErr: []error{ErrTransient}, notErr: []error{ErrUnauthorized}},
		{name: "429", status: 429, body: ``, wantErr: []error{ErrTransient, ErrThrottled}, notErr: []error{ErrUnauthorized}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var gotAuth atomic.Value
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/Logon") {
					writeRaw(w, tt.status, tt.body)
					return
				}
				gotAuth.Store(r.Header.Get("Authorization"))
				writeRaw(w, 200, memberJSON)
			}))
			t.Cleanup(srv.Close)
			c, err := New(testConfig(srv.URL, io.Discard))
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Member(ctxT(t), "S", "PSMAppUsers")
			if tt.wantTok != "" {
				if err != nil {
					t.Fatalf("Member: %v", err)
				}
				if got := gotAuth.Load(); got != tt.wantTok {
					t.Errorf("Authorization = %q, want %q", got, tt.wantTok)
				}
				return
			}
			if err == nil {
				t.Fatal("Member succeeded, want a logon error")
			}
			var le *LogonError
			if tt.status < 500 && tt.status != 429 && !errors.As(err, &le) {
				t.Errorf("error %T %v is not a *LogonError", err, err)
			}
			for _, want := range tt.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("errors.Is(%v, %v) = false", err, want)
				}
			}
			for _, not := range tt.notErr {
				if errors.Is(err, not) {
					t.Errorf("errors.Is(%v, %v) = true", err, not)
				}
			}
			if tt.status >= 400 {
				var ae *APIError
				if !errors.As(err, &ae) || ae.Status != tt.status {
					t.Errorf("APIError lost: %v", err)
				}
			}
			if got := gotAuth.Load(); got != nil {
				t.Errorf("a call went out after a failed logon")
			}
		})
	}
}

func TestRelogonOnceAndReplay(t *testing.T) {
	t.Parallel()
	// Each case answers the first non-logon request with the refusal.
	tests := []struct {
		name   string
		status int
		code   string
	}{
		{"401 without code", 401, ""},
		{"PASWS006E", 401, "PASWS006E"},
		{"CASSM005E on 403", 403, "CASSM005E"},
		{"CASTM006E on 500", 500, "CASTM006E"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			f := newFakePVWA(t, func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) == 1 {
					if tt.code == "" {
						w.WriteHeader(tt.status)
						return
					}
					writeJSON(w, tt.status, map[string]string{"ErrorCode": tt.code, "ErrorMessage": "session gone"})
					return
				}
				okMember(w, r)
			})
			var infos []CallInfo
			var mu sync.Mutex
			c, _ := newTestClient(t, f, func(cfg *Config) {
				cfg.Observe = func(ci CallInfo) { mu.Lock(); infos = append(infos, ci); mu.Unlock() }
			})
			m, err := c.Member(ctxT(t), "S", "PSMAppUsers")
			if err != nil {
				t.Fatalf("Member: %v", err)
			}
			if m.Name != "PSMAppUsers" {
				t.Errorf("member = %+v", m)
			}
			if n := f.logons.Load(); n != 2 {
				t.Errorf("logons = %d, want 2 (lazy + one re-logon)", n)
			}
			reqs := f.requests()
			if len(reqs) != 2 || reqs[0].Auth == reqs[1].Auth {
				t.Errorf("want the GET replayed once with the new token, got %+v", reqs)
			}
			var routes []string
			for _, ci := range infos {
				routes = append(routes, fmt.Sprintf("%s %d #%d", ci.Route, ci.Status, ci.Attempt))
			}
			want := []string{
				"POST /API/Auth/CyberArk/Logon 200 #1",
				fmt.Sprintf("GET /API/Safes/{id}/Members/{name} %d #1", tt.status),
				"POST /API/Auth/CyberArk/Logon 200 #1",
				"GET /API/Safes/{id}/Members/{name} 200 #2",
			}
			if strings.Join(routes, "\n") != strings.Join(want, "\n") {
				t.Errorf("observed:\n%s\nwant:\n%s", strings.Join(routes, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func TestSecondRefusalIsUnauthorized(t *testing.T) {
	t.Parallel()
	f := newFakePVWA(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 401, map[string]string{"ErrorCode": "PASWS006E", "ErrorMessage": "No Session token"})
	})
	c, _ := newTestClient(t, f, nil)
	err := c.DeleteMember(ctxT(t), "S", "PSMAppUsers")
	if !errors.Is(err, ErrUnauthorized) || Classify(err) != ClassUnauthorized {
		t.Fatalf("err = %v (class %s), want ErrUnauthorized", err, Classify(err))
	}
	if errors.Is(err, ErrTransient) || errors.Is(err, ErrPermanent) {
		t.Errorf("401 must be neither transient nor permanent: %v", err)
	}
	if n, r := f.logons.Load(), len(f.requests()); n != 2 || r != 2 {
		t.Errorf("logons = %d, DELETEs = %d; want 2 and 2 (one replay only)", n, r)
	}
}

func TestConcurrentRefusalsShareOneLogon(t *testing.T) {
	t.Parallel()
	f := newFakePVWA(t, okMember)
	f.logonDelay = 20 * time.Millisecond
	var limited atomic.Int32
	c, _ := newTestClient(t, f, func(cfg *Config) {
		cfg.Limiter = limiterFunc(func(ctx context.Context) error { limited.Add(1); return nil })
	})
	ctx := ctxT(t)

	// The first wave logs on lazily: once, however many callers.
	const callers = 32
	run := func() {
		var wg sync.WaitGroup
		errs := make(chan error, callers)
		for i := range callers {
			wg.Go(func() {
				_, err := c.Member(ctx, "S", fmt.Sprintf("user%d", i))
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("Member: %v", err)
			}
		}
	}
	run()
	if n := f.logons.Load(); n != 1 {
		t.Fatalf("lazy logons = %d, want 1", n)
	}
	// The session dies; every caller sees 401 and one re-logon serves all.
	f.expire()
	run()
	if n := f.logons.Load(); n != 2 {
		t.Errorf("logons after expiry = %d, want 2", n)
	}
	gets := len(f.requests())
	if gets < 2*callers || gets > 3*callers {
		t.Errorf("GETs = %d, want between %d and %d", gets, 2*callers, 3*callers)
	}
	// The limiter saw every request: logons, GETs and replays.
	if got, want := int(limited.Load()), len(f.all()); got != want {
		t.Errorf("limiter waited %d times for %d requests", got, want)
	}
}

type limiterFunc func(context.Context) error

func (f limiterFunc) Wait(ctx context.Context) error { return f(ctx) }

func TestLogonLeaderCanceledFollowerTakesOver(t *testing.T) {
	t.Parallel()
	f := newFakePVWA(t, okMember)
	var first atomic.Bool
	c, _ := newTestClient(t, f, func(cfg *Config) {
		cfg.Limiter = limiterFunc(func(ctx context.Context) error {
			if first.CompareAndSwap(false, true) {
				// The first request (the leader's logon) waits until
				// its caller gives up.
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		})
	})
	waiting := make(chan struct{}, 1)
	c.waitHook = func() {
		select {
		case waiting <- struct{}{}:
		default:
		}
	}
	leaderCtx, cancelLeader := context.WithCancel(ctxT(t))
	leaderErr := make(chan error, 1)
	go func() { _, err := c.Member(leaderCtx, "S", "a"); leaderErr <- err }()
	// Wait for the leader to hold the flight.
	for {
		c.mu.Lock()
		inFlight := c.flight != nil
		c.mu.Unlock()
		if inFlight {
			break
		}
		time.Sleep(time.Millisecond)
	}
	followerErr := make(chan error, 1)
	go func() { _, err := c.Member(ctxT(t), "S", "b"); followerErr <- err }()
	<-waiting // the follower waits on the leader's logon
	cancelLeader()
	if err := <-leaderErr; !errors.Is(err, context.Canceled) || Classify(err) != ClassCanceled {
		t.Errorf("leader err = %v (class %s), want context.Canceled", err, Classify(err))
	}
	if err := <-followerErr; err != nil {
		t.Errorf("follower: %v", err)
	}
	if n := f.logons.Load(); n != 1 {
		t.Errorf("logons reaching the server = %d, want 1 (the follower's)", n)
	}
}

func TestLogonAndLogoff(t *testing.T) {
	t.Parallel()
	f := newFakePVWA(t, okMember)
	c, _ := newTestClient(t, f, nil)
	ctx := ctxT(t)
	if err := c.Logon(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Logon(ctx); err != nil { // explicit Logon replaces the session
		t.Fatal(err)
	}
	if n := f.logons.Load(); n != 2 {
		t.Errorf("logons = %d, want 2", n)
	}
	if err := c.Logoff(ctx); err != nil {
		t.Fatalf("Logoff: %v", err)
	}
	all := f.all()
	last := all[len(all)-1]
	if last.Method != "POST" || last.URI != "/PasswordVault/API/Auth/Logoff" || !strings.HasPrefix(last.Auth, tokenPrefix+"2-") {
		t.Errorf("logoff request = %+v", last)
	}
	if !c.token.IsZero() {
		t.Error("token kept after Logoff")
	}
	if err := c.Logoff(ctx); err != nil || len(f.all()) != len(all) {
		t.Errorf("second Logoff: err %v, requests %d → %d; want no request", err, len(all), len(f.all()))
	}
	if _, err := c.Member(ctx, "S", "x"); err != nil {
		t.Fatal(err)
	}
	if n := f.logons.Load(); n != 3 {
		t.Errorf("logons after Logoff and a call = %d, want 3", n)
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeIdentity is an Identity tenant plus a cloud PVWA accepting its tokens.
type fakeIdentity struct {
	srv       *httptest.Server
	expiresIn string // raw JSON for expires_in, "" to leave it out
	issued    atomic.Int32
	mu        sync.Mutex
	forms     []url.Values
	ctypes    []string
	auths     []string
	refuse    bool
}

func newFakeIdentity(t *testing.T, expiresIn string) *fakeIdentity {
	t.Helper()
	fi := &fakeIdentity{expiresIn: expiresIn}
	fi.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/oauth2/platformtoken" {
			_ = r.ParseForm()
			fi.mu.Lock()
			fi.forms = append(fi.forms, r.PostForm)
			fi.ctypes = append(fi.ctypes, r.Header.Get("Content-Type"))
			refuse := fi.refuse
			fi.mu.Unlock()
			if refuse {
				writeJSON(w, 400, map[string]string{"error": "invalid_client", "error_description": "Authentication (login or client secret) failed."})
				return
			}
			n := fi.issued.Add(1)
			body := fmt.Sprintf(`{"access_token":"%s%d-jwt","token_type":"Bearer"`, tokenPrefix, n)
			if fi.expiresIn != "" {
				body += `,"expires_in":` + fi.expiresIn
			}
			writeRaw(w, 200, body+"}")
			return
		}
		fi.mu.Lock()
		fi.auths = append(fi.auths, r.Header.Get("Authorization"))
		fi.mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/PasswordVault/API/Auth/") {
			t.Errorf("identity client called %s", r.URL.Path)
		}
		writeRaw(w, 200, memberJSON)
	}))
	t.Cleanup(fi.srv.Close)
	return fi
}

func identityClient(t *testing.T, fi *fakeIdentity, clock *fakeClock) *Client {
	t.Helper()
	logs := &testutil.Buffer{}
	cfg := testConfig(fi.srv.URL+"/PasswordVault/", logs)
	cfg.Auth, cfg.Username, cfg.Password = "identity", "", secret.Value{}
	cfg.IdentityURL = fi.srv.URL + "/"
	cfg.ClientID, cfg.ClientSecret = testClientID, secret.New(testSecret)
	cfg.Now = clock.Now
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { checkNoSecrets(t, "log", logs.String()) })
	return c
}

func TestIdentityTokenAndRenewal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		expiresIn string
		ttl       time.Duration
	}{
		{"expires_in number", "100", 100 * time.Second},
		{"expires_in string", `"900"`, 900 * time.Second},
		{"expires_in absent", "", time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fi := newFakeIdentity(t, tt.expiresIn)
			clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			c := identityClient(t, fi, clock)
			ctx := ctxT(t)
			get := func() {
				t.Helper()
				if _, err := c.Member(ctx, "S", "PSMAppUsers"); err != nil {
					t.Fatal(err)
				}
			}
			get()
			clock.Add(tt.ttl * 79 / 100)
			get()
			if n := fi.issued.Load(); n != 1 {
				t.Fatalf("tokens before 80%% of the lifetime = %d, want 1", n)
			}
			clock.Add(tt.ttl * 2 / 100) // 81%: renew before use
			get()
			if n := fi.issued.Load(); n != 2 {
				t.Fatalf("tokens after 80%% of the lifetime = %d, want 2", n)
			}
			fi.mu.Lock()
			defer fi.mu.Unlock()
			wantAuth := []string{"Bearer " + tokenPrefix + "1-jwt", "Bearer " + tokenPrefix + "1-jwt", "Bearer " + tokenPrefix + "2-jwt"}
			if strings.Join(fi.auths, ",") != strings.Join(wantAuth, ",") {
				t.Errorf("Authorization headers = %v, want %v", fi.auths, wantAuth)
			}
			form := fi.forms[0]
			if form.Get("grant_type") != "client_credentials" || form.Get("client_id") != testClientID || form.Get("client_secret") != testSecret || len(form) != 3 {
				t.Errorf("token form = %v", form)
			}
			if fi.ctypes[0] != "application/x-www-form-urlencoded" {
				t.Errorf("token Content-Type = %q", fi.ctypes[0])
			}
		})
	}
}

func TestIdentityRefusedAndLogoff(t *testing.T) {
	t.Parallel()
	fi := newFakeIdentity(t, "900")
	fi.refuse = true
	c := identityClient(t, fi, &fakeClock{t: time.Now()})
	err := c.Logon(ctxT(t))
	var ae *APIError
	if !errors.Is(err, ErrUnauthorized) || !errors.As(err, &ae) || ae.Code != "invalid_client" || !strings.Contains(ae.Message, "client secret) failed") {
		t.Fatalf("err = %v, want ErrUnauthorized with the OAuth error", err)
	}
	if strings.Contains(err.Error(), testSecret) {
		t.Errorf("error shows the client secret: %v", err)
	}
	fi.mu.Lock()
	fi.refuse = false
	fi.mu.Unlock()
	if err := c.Logon(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	before := len(fi.auths)
	if err := c.Logoff(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if len(fi.auths) != before {
		t.Errorf("Logoff of an Identity token called the PVWA")
	}
}

// TestSecretsNeverShow drives failures whose answers echo the credentials and
// token, and checks errors, logs and %+v of the client.
func TestSecretsNeverShow(t *testing.T) {
	t.Parallel()
	var phase atomic.Int32
	f := newFakePVWA(t, func(w http.ResponseWriter, r *http.Request) {
		echo := fmt.Sprintf("token %s password %s", r.Header.Get("Authorization"), testPassword)
		switch phase.Load() {
		case 0:
			writeJSON(w, 400, map[string]any{"ErrorCode": "PASWS167E", "ErrorMessage": echo, "Details": []map[string]string{{"ErrorCode": "X", "ErrorMessage": echo}}})
		case 1:
			writeRaw(w, 500, "<html><body>"+echo+"</body></html>")
		default:
			writeRaw(w, 200, `{"value":[{"safeName":"a"}],"nextLink":"https://evil.example.com/api/safes?x=`+r.Header.Get("Authorization")+`"}`)
		}
	})
	c, logs := newTestClient(t, f, nil)
	ctx := ctxT(t)
	var errs []error
	_, err := c.UpdateMember(ctx, "S", "PSMAppUsers", MemberUpdate{Permissions: Perms(ListAccounts)})
	errs = append(errs, err)
	phase.Store(1)
	_, err = c.Member(ctx, "S", "x")
	errs = append(errs, err)
	phase.Store(2)
	_, err = collect(t, c.Safes(ctx, SafesOptions{}))
	errs = append(errs, err)
	for _, err := range errs {
		if err == nil {
			t.Fatal("want an error")
		}
		checkNoSecrets(t, "error", err.Error())
		checkNoSecrets(t, "error %+v", fmt.Sprintf("%+v %#v", err, err))
	}
	checkNoSecrets(t, "client", fmt.Sprintf("%+v %#v", c, c))
	if !strings.Contains(logs.String(), "pvwa call") {
		t.Errorf("debug log is empty, the check above proves nothing:\n%s", logs)
	}
	if !strings.Contains(errs[0].Error(), secret.Redacted) {
		t.Errorf("echoed secrets should read %s: %v", secret.Redacted, errs[0])
	}
}
