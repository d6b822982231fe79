package pam

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/secret"
	"github.com/safeperm/safeperm/internal/testutil"
)

// Credentials used by the tests; checkNoSecrets looks for them.
const (
	testUser     = "svc-safeperm"
	testPassword = "Pa55-w0rd-s3cr3t!"
	testClientID = "svc@cyberark.cloud.4242"
	testSecret   = "cl1ent-s3cr3t-value"
	tokenPrefix  = "T0KEN-"
)

// seen is one request as the fake PVWA received it.
type seen struct {
	Method string
	URI    string // the request-target exactly as sent
	Auth   string
	CType  string
	Body   []byte
}

// fakePVWA is a small PVWA over real HTTP: it issues tokens at the Logon
// routes, refuses stale tokens with 401 PASWS006E, records every request and
// hands the rest to handler.
type fakePVWA struct {
	srv     *httptest.Server
	handler http.HandlerFunc
	// logonDelay slows down each logon to widen races.
	logonDelay time.Duration

	logons atomic.Int32
	mu     sync.Mutex
	valid  string // the token currently accepted
	reqs   []seen
}

func newFakePVWA(t *testing.T, handler http.HandlerFunc) *fakePVWA {
	t.Helper()
	f := &fakePVWA{handler: handler}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakePVWA) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, seen{Method: r.Method, URI: r.RequestURI, Auth: r.Header.Get("Authorization"), CType: r.Header.Get("Content-Type"), Body: body})
	f.mu.Unlock()
	r.Body = io.NopCloser(bytes.NewReader(body))

	if strings.HasPrefix(r.URL.Path, "/PasswordVault/API/Auth/") && strings.HasSuffix(r.URL.Path, "/Logon") {
		time.Sleep(f.logonDelay)
		n := f.logons.Add(1)
		tok := fmt.Sprintf("%s%d-%s", tokenPrefix, n, strings.Repeat("x", 40))
		f.mu.Lock()
		f.valid = tok
		f.mu.Unlock()
		writeJSON(w, 200, tok)
		return
	}
	if r.URL.Path == "/PasswordVault/API/Auth/Logoff" {
		w.WriteHeader(200)
		return
	}
	f.mu.Lock()
	valid := f.valid
	f.mu.Unlock()
	if valid == "" || r.Header.Get("Authorization") != valid {
		writeJSON(w, 401, map[string]string{"ErrorCode": "PASWS006E", "ErrorMessage": "No Session token"})
		return
	}
	if f.handler != nil {
		f.handler(w, r)
		return
	}
	w.WriteHeader(204)
}

// expire makes the server forget the current session.
func (f *fakePVWA) expire() {
	f.mu.Lock()
	f.valid = ""
	f.mu.Unlock()
}

// requests returns the recorded requests, logons and logoffs left out.
func (f *fakePVWA) requests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []seen
	for _, s := range f.reqs {
		if !strings.Contains(s.URI, "/API/Auth/") {
			out = append(out, s)
		}
	}
	return out
}

func (f *fakePVWA) all() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.reqs...)
}

func (f *fakePVWA) last(t *testing.T) seen {
	t.Helper()
	r := f.requests()
	if len(r) == 0 {
		t.Fatal("no request reached the server")
	}
	return r[len(r)-1]
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeRaw(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// testConfig returns a config for f that logs at debug level into logs.
func testConfig(baseURL string, logs io.Writer) Config {
	return Config{
		BaseURL:  baseURL,
		Username: testUser,
		Password: secret.New(testPassword),
		Timeout:  5 * time.Second,
		Logger:   zerolog.New(logs).Level(zerolog.DebugLevel),
	}
}

func newTestClient(t *testing.T, f *fakePVWA, mod func(*Config)) (*Client, *testutil.Buffer) {
	t.Helper()
	logs := &testutil.Buffer{}
	cfg := testConfig(f.srv.URL, logs)
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { checkNoSecrets(t, "log", logs.String()) })
	return c, logs
}

// checkNoSecrets fails when s holds a credential or any token.
func checkNoSecrets(t *testing.T, what, s string) {
	t.Helper()
	for _, sec := range []string{testPassword, testSecret, tokenPrefix} {
		if strings.Contains(s, sec) {
			t.Errorf("%s contains a secret (%q):\n%s", what, sec, s)
		}
	}
}

func collect[T any](t *testing.T, seq iter.Seq2[T, error]) ([]T, error) {
	t.Helper()
	var out []T
	for v, err := range seq {
		if err != nil {
			return out, err
		}
		out = append(out, v)
	}
	return out, nil
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
