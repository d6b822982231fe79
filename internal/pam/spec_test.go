package pam

import (
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// Tests for pam-api.md facts that no other test pins down; see
// docs/pam-api-coverage.md.

// TestKeepsLoadBalancerCookie: a PVWA token is valid only on the node that
// issued it (pam-api.md §1.3, §7), so the client keeps the load balancer's
// sticky cookie from the logon answer and sends it with every call.
func TestKeepsLoadBalancerCookie(t *testing.T) {
	t.Parallel()
	f := newFakePVWA(t, func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie("LBNODE"); err != nil || c.Value != "pvwa-2" {
			writeJSON(w, 401, map[string]string{"ErrorCode": "PASWS006E", "ErrorMessage": "token from another node"})
			return
		}
		okMember(w, r)
	})
	// Wrapped before the first request, so no request reads it concurrently.
	inner := f.srv.Config.Handler
	f.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/Logon") {
			http.SetCookie(w, &http.Cookie{Name: "LBNODE", Value: "pvwa-2", Path: "/"})
		}
		inner.ServeHTTP(w, r)
	})
	c, _ := newTestClient(t, f, nil)
	if _, err := c.Member(ctxT(t), "S", "PSMAppUsers"); err != nil {
		t.Fatalf("Member: %v (the sticky cookie was not sent back)", err)
	}
	if n := f.logons.Load(); n != 1 {
		t.Errorf("logons = %d, want 1", n)
	}
}

// TestListingErrorsAreNotTruncation: a Safes listing that fails midway
// (e.g. the PSMMaster bug, CAWS00001E, pam-api.md §2 and §7) yields the
// Safes read so far and then the error; it never ends as if complete.
func TestListingErrorsAreNotTruncation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status int
		body   string
		class  Class
		code   string
	}{
		{"CAWS00001E 500", 500, `{"ErrorCode":"CAWS00001E","ErrorMessage":"Object reference not set"}`, ClassTransient, "CAWS00001E"},
		{"CAWS00001E 400", 400, `{"ErrorCode":"CAWS00001E","ErrorMessage":""}`, ClassPermanent, "CAWS00001E"},
		{"IIS page", 500, iisPage, ClassTransient, "HTTP500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var page atomic.Int32
			f := newFakePVWA(t, func(w http.ResponseWriter, r *http.Request) {
				if page.Add(1) == 1 {
					writeRaw(w, 200, `{"value":[{"safeName":"a"},{"safeName":"b"}],"count":5,"nextLink":"api/safes?offset=2&limit=2"}`)
					return
				}
				writeRaw(w, tt.status, tt.body)
			})
			c, _ := newTestClient(t, f, nil)
			got, err := collect(t, c.Safes(ctxT(t), SafesOptions{Limit: 2}))
			if len(got) != 2 || err == nil {
				t.Fatalf("got %d Safes and err %v, want 2 and an error", len(got), err)
			}
			if Classify(err) != tt.class || ErrorCode(err) != tt.code {
				t.Errorf("err = %v: class %s code %s, want %s %s", err, Classify(err), ErrorCode(err), tt.class, tt.code)
			}
		})
	}
}

// TestGarbledHeader403IsNotReplayed: 403 CAIWS001E ("Couldn't retrieve
// session token from request header", pam-api.md §1.3) is not one of the
// session-expired codes: the client built the header itself, so a fresh
// logon would not change it. It is a permanent ErrForbidden, sent once.
func TestGarbledHeader403IsNotReplayed(t *testing.T) {
	t.Parallel()
	f := newFakePVWA(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 403, map[string]string{"ErrorCode": "CAIWS001E", "ErrorMessage": "Couldn't retrieve session token from request header."})
	})
	c, _ := newTestClient(t, f, nil)
	_, err := c.Member(ctxT(t), "S", "PSMAppUsers")
	if !errors.Is(err, ErrForbidden) || errors.Is(err, ErrUnauthorized) || Classify(err) != ClassPermanent {
		t.Errorf("err = %v, want a permanent ErrForbidden", err)
	}
	if n, logons := len(f.requests()), f.logons.Load(); n != 1 || logons != 1 {
		t.Errorf("requests %d, logons %d; want 1 and 1", n, logons)
	}
}
