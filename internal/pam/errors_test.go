package pam

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/testutil"
)

// iisPage is the IIS 500 page seen in cyberark/epv-api-scripts#331.
const iisPage = `<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"/>
<title>500 - Internal server error.</title>
<style type="text/css">
<!--
body{margin:0;font-size:.7em;font-family:Verdana, Arial, Helvetica, sans-serif;background:#EEEEEE;}
-->
</style>
</head>
<body>
<div id="header"><h1>Server Error</h1></div>
<div id="content">
 <div class="content-container"><fieldset>
  <h2>500 - Internal server error.</h2>
  <h3>There is a problem with the resource you are looking for, and it cannot be displayed.</h3>
 </fieldset></div>
</div>
</body>
</html>`

func TestErrorClasses(t *testing.T) {
	t.Parallel()
	type call int
	const (
		getMember call = iota
		getSafe
		addMember
		updateMember
		listMembers
	)
	tests := []struct {
		name    string
		call    call
		status  int
		body    string
		header  map[string]string
		is      []error
		isNot   []error
		class   Class
		code    string
		msg     string // substring of Message
		details int
		retry   time.Duration
	}{
		{name: "400 with details", call: addMember, status: 400,
			body: `{"ErrorCode":"PASWS167E","ErrorMessage":"There are some invalid parameters","Details":[{"ErrorCode":"PASWS179E","ErrorMessage":"Property [MemberType] not found"},{"ErrorCode":"PASWS011E","ErrorMessage":"Missing mandatory parameter [MemberType]"}]}`,
			is:   []error{ErrBadRequest, ErrPermanent}, isNot: []error{ErrTransient, ErrUnauthorized},
			class: ClassPermanent, code: "PASWS167E", msg: "invalid parameters", details: 2},
		{name: "403 forbidden", call: updateMember, status: 403, body: `{"ErrorCode":"CAWS00001E","ErrorMessage":""}`,
			is: []error{ErrForbidden, ErrPermanent}, isNot: []error{ErrUnauthorized, ErrTransient}, class: ClassPermanent, code: "CAWS00001E"},
		{name: "404 SFWS0007 on a member URL is the Safe", call: getMember, status: 404, body: `{"ErrorCode":"SFWS0007","ErrorMessage":"Safe has been deleted or does not exist."}`,
			is: []error{ErrSafeNotFound, ErrPermanent}, isNot: []error{ErrMemberNotFound}, class: ClassPermanent, code: "SFWS0007"},
		{name: "404 other code on a member URL is the member", call: getMember, status: 404, body: `{"ErrorCode":"CAWS00001E","ErrorMessage":"User or Group was not found."}`,
			is: []error{ErrMemberNotFound}, isNot: []error{ErrSafeNotFound, ErrUnknownPrincipal}, class: ClassPermanent, code: "CAWS00001E"},
		// POST to the members collection: only SFWS0007 is the Safe; any
		// other 404 the PVWA explains is a name the vault does not know,
		// and must not read as "not a member" (the worker would POST again).
		{name: "add: 404 CAWS00001E is an unknown principal", call: addMember, status: 404,
			body: `{"ErrorCode":"CAWS00001E","ErrorMessage":"Failed to add User or Group nobody. Reason: User or Group was not found."}`,
			is:   []error{ErrUnknownPrincipal, ErrPermanent}, isNot: []error{ErrMemberNotFound, ErrSafeNotFound, ErrTransient},
			class: ClassPermanent, code: "CAWS00001E", msg: "was not found"},
		{name: "add: 404 with another code is an unknown principal", call: addMember, status: 404,
			body: `{"ErrorCode":"ITATS034E","ErrorMessage":"Owner nobody not found."}`,
			is:   []error{ErrUnknownPrincipal, ErrPermanent}, isNot: []error{ErrMemberNotFound, ErrSafeNotFound}, class: ClassPermanent, code: "ITATS034E"},
		{name: "add: 404 without code, message says not defined", call: addMember, status: 404,
			body: `{"ErrorMessage":"User nobody hasn't been defined."}`,
			is:   []error{ErrUnknownPrincipal, ErrPermanent}, isNot: []error{ErrMemberNotFound, ErrSafeNotFound}, class: ClassPermanent, msg: "defined"},
		{name: "add: 404 SFWS0007 is the Safe", call: addMember, status: 404,
			body: `{"ErrorCode":"SFWS0007","ErrorMessage":"Safe has been deleted or does not exist."}`,
			is:   []error{ErrSafeNotFound, ErrPermanent}, isNot: []error{ErrUnknownPrincipal, ErrMemberNotFound}, class: ClassPermanent, code: "SFWS0007"},
		{name: "add: bare 404 is neither", call: addMember, status: 404, body: ``,
			is: []error{ErrPermanent}, isNot: []error{ErrUnknownPrincipal, ErrMemberNotFound, ErrSafeNotFound}, class: ClassPermanent},
		{name: "list members: 404 is the Safe", call: listMembers, status: 404,
			body: `{"ErrorCode":"CAWS00001E","ErrorMessage":"not found"}`,
			is:   []error{ErrSafeNotFound, ErrPermanent}, isNot: []error{ErrMemberNotFound, ErrUnknownPrincipal}, class: ClassPermanent, code: "CAWS00001E"},
		{name: "404 bare on a member URL is the member", call: updateMember, status: 404, body: ``,
			is: []error{ErrMemberNotFound}, isNot: []error{ErrSafeNotFound}, class: ClassPermanent},
		{name: "SFWS0008 is the member", call: updateMember, status: 404, body: `{"ErrorCode":"SFWS0008","ErrorMessage":"not a member"}`,
			is: []error{ErrMemberNotFound}, isNot: []error{ErrSafeNotFound}, class: ClassPermanent, code: "SFWS0008"},
		{name: "404 bare on a Safe URL is the Safe", call: getSafe, status: 404, body: `{}`,
			is: []error{ErrSafeNotFound}, isNot: []error{ErrMemberNotFound}, class: ClassPermanent},
		{name: "409 already a member", call: addMember, status: 409, body: `{"ErrorCode":"SFWS0012","ErrorMessage":"PSMAppUsers is already a member of safe S."}`,
			is: []error{ErrAlreadyMember, ErrPermanent}, class: ClassPermanent, code: "SFWS0012", msg: "already a member"},
		{name: "429 with seconds", call: getMember, status: 429, header: map[string]string{"Retry-After": "7"},
			is: []error{ErrThrottled, ErrTransient}, isNot: []error{ErrPermanent}, class: ClassThrottled, retry: 7 * time.Second},
		{name: "429 with HTTP date", call: getMember, status: 429, header: map[string]string{"Retry-After": "now+90s"},
			is: []error{ErrThrottled}, class: ClassThrottled, retry: 90 * time.Second},
		{name: "429 without Retry-After", call: getMember, status: 429, body: `Too Many Requests`,
			is: []error{ErrThrottled}, class: ClassThrottled, msg: "Too Many Requests"},
		{name: "500 IIS HTML page", call: updateMember, status: 500, body: iisPage,
			is: []error{ErrTransient}, isNot: []error{ErrPermanent}, class: ClassTransient, msg: "500 - Internal server error. Server Error"},
		{name: "503 empty", call: getSafe, status: 503, is: []error{ErrTransient}, class: ClassTransient},
		{name: "408", call: getSafe, status: 408, is: []error{ErrTransient}, isNot: []error{ErrPermanent}, class: ClassTransient},
		{name: "OAuth-style body", call: getSafe, status: 400, body: `{"error":"invalid_request","error_description":"bad"}`,
			is: []error{ErrBadRequest}, class: ClassPermanent, code: "invalid_request", msg: "bad"},
		{name: "code/message body", call: getSafe, status: 400, body: `{"code":42,"message":"nope"}`,
			class: ClassPermanent, code: "42", msg: "nope"},
		{name: "JSON string body", call: getSafe, status: 400, body: `"just text"`, class: ClassPermanent, msg: "just text"},
		{name: "redirect is not followed", call: getSafe, status: 302, header: map[string]string{"Location": "/login"},
			is: []error{ErrPermanent}, class: ClassPermanent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakePVWA(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					if v == "now+90s" {
						v = time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
					}
					w.Header().Set(k, v)
				}
				if strings.HasPrefix(tt.body, "<") {
					w.Header().Set("Content-Type", "text/html")
				}
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			})
			c, _ := newTestClient(t, f, nil)
			ctx := ctxT(t)
			var err error
			var wantOp, wantPath string
			switch tt.call {
			case getMember:
				_, err = c.Member(ctx, "Finance%20Team", "PSMAppUsers")
				wantOp, wantPath = `get member "PSMAppUsers" on safe "Finance%20Team"`, "/PasswordVault/API/Safes/Finance%20Team/Members/PSMAppUsers/"
			case getSafe:
				_, err = c.Safe(ctx, "Finance%20Team")
				wantOp, wantPath = `get safe "Finance%20Team"`, "/PasswordVault/API/Safes/Finance%20Team/"
			case addMember:
				_, err = c.AddMember(ctx, "Finance%20Team", NewMember{Name: "PSMAppUsers", Type: "Group"})
				wantOp, wantPath = `add member "PSMAppUsers" to safe "Finance%20Team"`, "/PasswordVault/API/Safes/Finance%20Team/Members/"
			case updateMember:
				_, err = c.UpdateMember(ctx, "Finance%20Team", "PSMAppUsers", MemberUpdate{})
				wantOp, wantPath = `update member "PSMAppUsers" on safe "Finance%20Team"`, "/PasswordVault/API/Safes/Finance%20Team/Members/PSMAppUsers/"
			case listMembers:
				_, err = collect(t, c.Members(ctx, "Finance%20Team"))
				wantOp, wantPath = `list members of safe "Finance%20Team"`, "/PasswordVault/API/Safes/Finance%20Team/Members"
			}
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %T %v, want *APIError", err, err)
			}
			// An HTTP date has whole seconds and the clock moves on.
			retryOK := ae.RetryAfter == tt.retry || tt.retry > 0 && (ae.RetryAfter-tt.retry).Abs() <= 5*time.Second
			if ae.Op != wantOp || ae.Path != wantPath || ae.Status != tt.status || ae.Code != tt.code || len(ae.Details) != tt.details || !retryOK {
				t.Errorf("APIError = %#v\nwant op %q path %q status %d code %q details %d retry %s", ae, wantOp, wantPath, tt.status, tt.code, tt.details, tt.retry)
			}
			if !strings.Contains(ae.Message, tt.msg) {
				t.Errorf("Message = %q, want it to contain %q", ae.Message, tt.msg)
			}
			if len([]rune(ae.Message)) > maxMessage+1 || strings.ContainsAny(ae.Message, "<>\n") {
				t.Errorf("Message not sanitized: %q", ae.Message)
			}
			for _, target := range tt.is {
				if !errors.Is(err, target) {
					t.Errorf("errors.Is(err, %v) = false; err = %v", target, err)
				}
			}
			for _, target := range tt.isNot {
				if errors.Is(err, target) {
					t.Errorf("errors.Is(err, %v) = true; err = %v", target, err)
				}
			}
			wantCode := tt.code
			if wantCode == "" {
				wantCode = fmt.Sprintf("HTTP%d", tt.status)
			}
			if got := ErrorCode(err); got != wantCode {
				t.Errorf("ErrorCode = %q, want %q", got, wantCode)
			}
			if got := Classify(err); got != tt.class {
				t.Errorf("Classify = %s, want %s", got, tt.class)
			}
			if d, ok := RetryAfter(err); ok != (tt.retry > 0) || d != ae.RetryAfter {
				t.Errorf("RetryAfter = %s, %v", d, ok)
			}
			if n := len(f.requests()); n != 1 {
				t.Errorf("%d requests, want 1: the client must not retry", n)
			}
		})
	}
}

func TestParseErrorBodyHTMLExcerpt(t *testing.T) {
	t.Parallel()
	_, msg, _ := parseErrorBody([]byte(iisPage))
	if !strings.HasPrefix(msg, "500 - Internal server error. Server Error 500 - Internal server error.") || len([]rune(msg)) > maxExcerpt+1 {
		t.Errorf("excerpt = %q", msg)
	}
	if strings.Contains(msg, "font-family") || strings.Contains(msg, "DOCTYPE") {
		t.Errorf("style or doctype leaked into %q", msg)
	}
	_, msg, _ = parseErrorBody([]byte("<b>unterminated <i"))
	if msg != "unterminated" {
		t.Errorf("unterminated tag: %q", msg)
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"-5", 0},
		{"120", 2 * time.Minute},
		{"999999999", 24 * time.Hour},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{now.Add(-30 * time.Second).Format(http.TimeFormat), 0},
		{"soon", 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestTransportErrorsAndContext(t *testing.T) {
	t.Parallel()
	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		c, err := New(testConfig("http://"+addr, &testutil.Buffer{}))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Member(ctxT(t), "S", "x")
		var te *TransportError
		if !errors.As(err, &te) || !errors.Is(err, ErrTransient) || Classify(err) != ClassTransient {
			t.Fatalf("err = %T %v, want a transient *TransportError", err, err)
		}
		// A logon that cannot connect is transient, not a credential problem.
		if errors.Is(err, ErrUnauthorized) {
			t.Errorf("unreachable logon matches ErrUnauthorized: %v", err)
		}
	})

	slow := func(d time.Duration) *fakePVWA {
		return newFakePVWA(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
			}
			okMember(w, r)
		})
	}
	t.Run("request timeout", func(t *testing.T) {
		t.Parallel()
		f := slow(2 * time.Second)
		c, _ := newTestClient(t, f, func(cfg *Config) { cfg.Timeout = 100 * time.Millisecond })
		_, err := c.Member(ctxT(t), "S", "x")
		var te *TransportError
		if !errors.As(err, &te) || Classify(err) != ClassTransient || !strings.Contains(err.Error(), "timeout") && !strings.Contains(err.Error(), "100ms") {
			t.Fatalf("err = %T %v, want a transient timeout", err, err)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("a request timeout must not look like the caller's deadline: %v", err)
		}
	})
	t.Run("caller canceled", func(t *testing.T) {
		t.Parallel()
		f := slow(2 * time.Second)
		c, _ := newTestClient(t, f, nil)
		if err := c.Logon(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(ctxT(t))
		time.AfterFunc(50*time.Millisecond, cancel)
		_, err := c.Member(ctx, "S", "x")
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTransient) || Classify(err) != ClassCanceled {
			t.Fatalf("err = %v (class %s), want context.Canceled only", err, Classify(err))
		}
	})
	t.Run("caller deadline", func(t *testing.T) {
		t.Parallel()
		f := slow(2 * time.Second)
		c, _ := newTestClient(t, f, nil)
		ctx, cancel := context.WithTimeout(ctxT(t), 100*time.Millisecond)
		defer cancel()
		_, err := collect(t, c.Safes(ctx, SafesOptions{}))
		if !errors.Is(err, context.DeadlineExceeded) || Classify(err) != ClassCanceled {
			t.Fatalf("err = %v (class %s), want context.DeadlineExceeded", err, Classify(err))
		}
	})
	t.Run("limiter error", func(t *testing.T) {
		t.Parallel()
		f := newFakePVWA(t, okMember)
		boom := errors.New("would exceed deadline")
		c, _ := newTestClient(t, f, func(cfg *Config) {
			cfg.Limiter = limiterFunc(func(context.Context) error { return boom })
		})
		_, err := c.Member(ctxT(t), "S", "x")
		if !errors.Is(err, boom) || len(f.all()) != 0 {
			t.Fatalf("err = %v, requests %d; want the limiter's error and nothing sent", err, len(f.all()))
		}
	})
	t.Run("body cut short", func(t *testing.T) {
		t.Parallel()
		f := newFakePVWA(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "500")
			w.WriteHeader(200)
			_, _ = w.Write([]byte(`{"value":[{"safeName":"a"},`))
		})
		c, _ := newTestClient(t, f, nil)
		_, err := collect(t, c.Safes(ctxT(t), SafesOptions{}))
		var te *TransportError
		if !errors.As(err, &te) || Classify(err) != ClassTransient {
			t.Fatalf("err = %T %v, want a transient *TransportError", err, err)
		}
	})
}

func TestTLS(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/Logon") {
			writeJSON(w, 200, tokenPrefix+"tls")
			return
		}
		okMember(w, r)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		caFile   string
		insecure bool
		ok       bool
	}{
		{"system pool only: refused", "", false, false},
		{"CAFile: trusted", caFile, false, true},
		{"InsecureSkipVerify: accepted", "", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			logs := &testutil.Buffer{}
			cfg := testConfig(srv.URL, logs)
			cfg.CAFile, cfg.InsecureSkipVerify = tt.caFile, tt.insecure
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Member(ctxT(t), "S", "PSMAppUsers")
			if tt.ok && err != nil {
				t.Fatalf("Member: %v", err)
			}
			if !tt.ok {
				var te *TransportError
				if !errors.As(err, &te) || !strings.Contains(err.Error(), "certificate") {
					t.Fatalf("err = %v, want a TLS *TransportError", err)
				}
			}
			if tt.insecure && !strings.Contains(logs.String(), "InsecureSkipVerify") {
				t.Errorf("no warning logged")
			}
			checkNoSecrets(t, "log", logs.String())
		})
	}
	t.Run("HTTPClient override", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig(srv.URL, io.Discard)
		cfg.HTTPClient = srv.Client()
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Member(ctxT(t), "S", "PSMAppUsers"); err != nil {
			t.Fatal(err)
		}
	})
}
