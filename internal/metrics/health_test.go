package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// get serves one request to h and returns its status and body.
func get(t testing.TB, h http.Handler, method, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	body, err := io.ReadAll(rec.Result().Body)
	if err != nil {
		t.Fatal(err)
	}
	return rec.Code, string(body)
}

func pass(context.Context) error { return nil }

func fail(msg string) func(context.Context) error {
	return func(context.Context) error { return errors.New(msg) }
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	// Liveness ignores readiness: a failing dependency must not restart the
	// process.
	h := New("").Handler(Check{Name: "nats", Fn: fail("down")})
	tests := []struct {
		method   string
		wantCode int
		wantBody string
	}{
		{http.MethodGet, http.StatusOK, "ok"},
		{http.MethodHead, http.StatusOK, ""},
		{http.MethodPost, http.StatusMethodNotAllowed, ""},
	}
	for _, tt := range tests {
		code, body := get(t, h, tt.method, "/healthz")
		if code != tt.wantCode {
			t.Errorf("%s /healthz: status %d, want %d", tt.method, code, tt.wantCode)
		}
		if tt.wantBody != "" && body != tt.wantBody {
			t.Errorf("%s /healthz: body %q, want %q", tt.method, body, tt.wantBody)
		}
	}
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		checks   []Check
		wantCode int
		wantBody string
	}{
		{name: "no checks", wantCode: http.StatusOK, wantBody: "ok"},
		{
			name:     "all pass",
			checks:   []Check{{Name: "nats", Fn: pass}, {Name: "pvwa", Fn: pass}},
			wantCode: http.StatusOK, wantBody: "ok",
		},
		{
			name: "one fails",
			checks: []Check{
				{Name: "nats", Fn: fail("nats: connection closed")},
				{Name: "pvwa", Fn: pass},
			},
			wantCode: http.StatusServiceUnavailable,
			wantBody: "nats: nats: connection closed\n",
		},
		{
			name: "every failure listed in order, one line each",
			checks: []Check{
				{Name: "pvwa", Fn: fail("logon: 403 ITATS004E\nAuthentication failure")},
				{Name: "nats", Fn: pass},
				{Name: "jetstream", Fn: fail("stream SAFEPERM_JOBS not found")},
			},
			wantCode: http.StatusServiceUnavailable,
			wantBody: "pvwa: logon: 403 ITATS004E Authentication failure\njetstream: stream SAFEPERM_JOBS not found\n",
		},
		{
			name:     "a panicking check fails",
			checks:   []Check{{Name: "boom", Fn: func(context.Context) error { panic("nil map") }}},
			wantCode: http.StatusServiceUnavailable,
			wantBody: "boom: panic: nil map\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := New("").Handler(tt.checks...)
			code, body := get(t, h, http.MethodGet, "/readyz")
			if code != tt.wantCode || body != tt.wantBody {
				t.Errorf("GET /readyz = %d %q, want %d %q", code, body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

func TestReadyzTimeout(t *testing.T) {
	t.Parallel()
	m := New("")
	m.checkTimeout = 50 * time.Millisecond
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	h := m.Handler(
		Check{Name: "nats", Fn: pass},
		// Honours ctx.
		Check{Name: "slow", Fn: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }},
		// Ignores ctx: the answer must not wait for it.
		Check{Name: "stuck", Fn: func(context.Context) error { <-release; return nil }},
	)
	start := time.Now()
	code, body := get(t, h, http.MethodGet, "/readyz")
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("GET /readyz took %s with a 50ms check timeout", took)
	}
	if code != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", code)
	}
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "slow: ") || !strings.HasPrefix(lines[1], "stuck: no answer within 50ms") {
		t.Errorf("body %q, want a line for slow, then stuck with no answer within 50ms", body)
	}
}

func TestHandlerRejectsCheckWithoutFn(t *testing.T) {
	t.Parallel()
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(r.(string), `"nats"`) {
			t.Errorf("Handler with a nil Fn: recovered %v, want a panic naming the check", r)
		}
	}()
	New("").Handler(Check{Name: "pvwa", Fn: pass}, Check{Name: "nats"})
}

func TestHandlerRoutes(t *testing.T) {
	t.Parallel()
	h := New("").Handler()
	tests := []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/metrics", http.StatusOK},
		{http.MethodPost, "/metrics", http.StatusMethodNotAllowed},
		{http.MethodGet, "/readyz", http.StatusOK},
		{http.MethodGet, "/", http.StatusNotFound},
		{http.MethodGet, "/debug/pprof/", http.StatusNotFound},
	}
	for _, tt := range tests {
		if code, _ := get(t, h, tt.method, tt.path); code != tt.want {
			t.Errorf("%s %s: status %d, want %d", tt.method, tt.path, code, tt.want)
		}
	}
}
