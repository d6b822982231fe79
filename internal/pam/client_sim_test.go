package pam_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
	"github.com/safeperm/safeperm/internal/secret"
)

// These tests run the client against the PVWA simulator over real HTTP.

func newSim(t testing.TB, opts pamtest.Options) *pamtest.Server {
	t.Helper()
	srv, err := pamtest.NewServer(opts)
	if err != nil {
		t.Fatalf("pamtest.NewServer: %v", err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// simClient returns a client logged on to srv as the admin user (the
// Identity service user in Cloud mode).
func simClient(t testing.TB, srv *pamtest.Server, mod func(*pam.Config)) *pam.Client {
	t.Helper()
	info := srv.Info()
	cfg := pam.Config{
		BaseURL:  srv.URL,
		Username: pamtest.DefaultAdminUser,
		Password: secret.New(pamtest.DefaultAdminPassword),
		Timeout:  10 * time.Second,
	}
	if info.Cloud {
		cfg.Auth, cfg.Username, cfg.Password = pam.AuthIdentity, "", secret.Value{}
		cfg.IdentityURL = srv.IdentityURL
		cfg.ClientID, cfg.ClientSecret = pamtest.DefaultAdminUser, secret.New(pamtest.DefaultAdminPassword)
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := pam.New(cfg)
	if err != nil {
		t.Fatalf("pam.New: %v", err)
	}
	// Before srv.Close, so that the server need not wait for connections
	// the client opened but never used.
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func simCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// visibleSafes returns what the admin user should list: every Safe it is a
// member of, in index order.
func visibleSafes(v *pamtest.Vault) []pamtest.SafeInfo {
	var out []pamtest.SafeInfo
	for i := range v.Len() {
		if in := v.Info(i); in.Access != pamtest.AccessHidden {
			out = append(out, in)
		}
	}
	return out
}

// findSafe returns the first Safe of v that pred accepts.
func findSafe(t testing.TB, v *pamtest.Vault, pred func(pamtest.SafeInfo) bool) pamtest.SafeInfo {
	t.Helper()
	for i := range v.Len() {
		if in := v.Info(i); pred(in) {
			return in
		}
	}
	t.Fatal("no Safe in the vault matches")
	return pamtest.SafeInfo{}
}

func listAll(t testing.TB, c *pam.Client, opt pam.SafesOptions) []pam.Safe {
	t.Helper()
	var out []pam.Safe
	for s, err := range c.Safes(simCtx(t), opt) {
		if err != nil {
			t.Fatalf("Safes after %d: %v", len(out), err)
		}
		out = append(out, s)
	}
	return out
}

func TestSimSafesPaging(t *testing.T) {
	t.Parallel()
	mix := pamtest.DefaultMix()
	mix.QuotedCreationTime = 0.3 // exercise tolerant decoding
	tests := []struct {
		name   string
		opts   pamtest.Options
		limits []int
	}{
		{"self-hosted", pamtest.Options{Safes: 1500, Seed: 11, Mix: mix}, []int{7, 25, 1000, 5000}},
		{"cloud", pamtest.Options{Safes: 1500, Seed: 12, Cloud: true}, []int{7, 1000}},
		{"limit 1", pamtest.Options{Safes: 150, Seed: 13}, []int{1}},
		{"upper-case nextLink", pamtest.Options{Safes: 300, Seed: 14, NextLinkPrefix: "/PasswordVault/API/Safes"}, []int{25}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newSim(t, tt.opts)
			want := visibleSafes(srv.Vault())
			c := simClient(t, srv, nil)
			for _, limit := range tt.limits {
				srv.ResetStats()
				got := listAll(t, c, pam.SafesOptions{Limit: limit})
				if len(got) != len(want) {
					t.Fatalf("limit %d: %d Safes, want %d", limit, len(got), len(want))
				}
				for i, s := range got {
					w := want[i]
					if s.Name != w.Name || s.URLID != w.URLID || s.Number != w.Number || s.ManagingCPM != w.ManagingCPM || s.CreationTime != w.CreationTime {
						t.Fatalf("limit %d: Safe %d = %+v, want %+v", limit, i, s, w)
					}
					if s.URLID != pam.EscapeSafeName(s.Name) {
						t.Errorf("safeUrlId %q is not EscapeSafeName(%q) = %q", s.URLID, s.Name, pam.EscapeSafeName(s.Name))
					}
				}
				pageSize := min(limit, pamtest.MaxLimit)
				if pages, wantPages := srv.Stats().Count(pamtest.RouteSafes, 200), int64((len(want)+pageSize-1)/pageSize); pages != wantPages {
					t.Errorf("limit %d: %d pages, want %d", limit, pages, wantPages)
				}
			}
			// search is echoed by the simulator's nextLink; the listing
			// must hold exactly the matching Safes.
			var wantTeam int
			for _, w := range want {
				if strings.Contains(strings.ToLower(w.Name), "team") {
					wantTeam++
				}
			}
			got := listAll(t, c, pam.SafesOptions{Limit: 10, Search: "TEAM"})
			if len(got) != wantTeam || wantTeam == 0 {
				t.Errorf("search: %d Safes, want %d", len(got), wantTeam)
			}
		})
	}
}

func TestSimMembersAndEncodedNames(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 3000, Seed: 21, StrictDots: true})
	v := srv.Vault()
	c := simClient(t, srv, func(cfg *pam.Config) { cfg.MembersPageSize = 7 })
	ctx := simCtx(t)

	kinds := map[string]func(pamtest.SafeInfo) bool{
		"space":     func(in pamtest.SafeInfo) bool { return strings.Contains(in.Name, " ") },
		"dot":       func(in pamtest.SafeInfo) bool { return strings.Contains(in.Name, ".") },
		"non-ASCII": func(in pamtest.SafeInfo) bool { return in.Name != "" && !isASCII(in.Name) },
		"parens":    func(in pamtest.SafeInfo) bool { return strings.Contains(in.Name, "(") },
		"big":       func(in pamtest.SafeInfo) bool { return in.Big },
	}
	for kind, pred := range kinds {
		in := findSafe(t, v, func(in pamtest.SafeInfo) bool {
			return !in.Internal && in.Access == pamtest.AccessFull && pred(in)
		})
		t.Run(kind+" "+in.Name, func(t *testing.T) {
			s, err := c.Safe(ctx, in.URLID)
			if err != nil || s.Name != in.Name {
				t.Fatalf("Safe(%q) = %+v, %v", in.URLID, s, err)
			}
			state, _ := srv.SafeState(in.Name)
			var wantNames []string
			for _, m := range state.Members {
				if !m.Predefined {
					wantNames = append(wantNames, m.Name)
				}
			}
			var gotNames []string
			for m, err := range c.Members(ctx, in.URLID) {
				if err != nil {
					t.Fatal(err)
				}
				gotNames = append(gotNames, m.Name)
				// Every listed member can be read by name: names with
				// spaces and dots ("Vault Admins", "ops.user.07").
				one, err := c.Member(ctx, in.URLID, m.Name)
				if err != nil || one.Permissions != m.Permissions || one.ID != m.ID {
					t.Errorf("Member(%q) = %+v, %v; listed as %+v", m.Name, one, err, m)
				}
			}
			if strings.Join(gotNames, "|") != strings.Join(wantNames, "|") {
				t.Errorf("members:\n got %v\nwant %v", gotNames, wantNames)
			}
			if in.PSMMember {
				m, err := c.Member(ctx, in.URLID, pamtest.PSMAppUsers)
				if err != nil || m.Permissions != in.PSMPermissions || m.Type != pam.MemberTypeGroup {
					t.Errorf("PSMAppUsers = %+v, %v; want %s", m, err, in.PSMPermissions)
				}
			}
		})
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func TestSimMemberWrites(t *testing.T) {
	t.Parallel()
	principals := []pamtest.Principal{
		{Name: "john.doe@corp.example", Type: pam.MemberTypeUser},
		{Name: "Zoë Müller-Łukasz", Type: pam.MemberTypeUser},
		{Name: "App Owners (EU)", Type: pam.MemberTypeGroup},
	}
	srv := newSim(t, pamtest.Options{Safes: 2000, Seed: 31, StrictDots: true, Principals: principals})
	v := srv.Vault()
	c := simClient(t, srv, nil)
	ctx := simCtx(t)
	grant := pam.Perms(pam.ListAccounts, pam.UnlockAccounts)

	t.Run("add, re-add, update, delete PSMAppUsers", func(t *testing.T) {
		in := findSafe(t, v, func(in pamtest.SafeInfo) bool {
			return in.Class == pamtest.ClassAbsent && in.Access == pamtest.AccessFull && strings.Contains(in.Name, " ")
		})
		if _, err := c.Member(ctx, in.URLID, pamtest.PSMAppUsers); !errors.Is(err, pam.ErrMemberNotFound) || errors.Is(err, pam.ErrSafeNotFound) {
			t.Fatalf("Member before add: %v, want ErrMemberNotFound", err)
		}
		m, err := c.AddMember(ctx, in.URLID, pam.NewMember{Name: pamtest.PSMAppUsers, Type: "group", Permissions: grant})
		if err != nil || m.Permissions != grant || m.Type != pam.MemberTypeGroup {
			t.Fatalf("AddMember = %+v, %v", m, err)
		}
		if _, err := c.AddMember(ctx, in.URLID, pam.NewMember{Name: pamtest.PSMAppUsers, Type: "Group", Permissions: grant}); !errors.Is(err, pam.ErrAlreadyMember) || pam.ErrorCode(err) != pam.CodeAlreadyMember {
			t.Fatalf("second AddMember: %v, want ErrAlreadyMember", err)
		}
		state, _ := srv.SafeState(in.Name)
		if ms, ok := state.Member(pamtest.PSMAppUsers); !ok || ms.Permissions != grant || ms.Expiration != nil {
			t.Errorf("vault holds %+v", ms)
		}
		if err := c.DeleteMember(ctx, in.URLID, pamtest.PSMAppUsers); err != nil {
			t.Fatal(err)
		}
		if err := c.DeleteMember(ctx, in.URLID, pamtest.PSMAppUsers); !errors.Is(err, pam.ErrMemberNotFound) {
			t.Errorf("second delete: %v, want ErrMemberNotFound", err)
		}
		if _, err := c.UpdateMember(ctx, in.URLID, pamtest.PSMAppUsers, pam.MemberUpdate{Permissions: grant}); !errors.Is(err, pam.ErrMemberNotFound) {
			t.Errorf("update of a non-member: %v, want ErrMemberNotFound", err)
		}
	})

	t.Run("update keeps the other flags and the expiry", func(t *testing.T) {
		in := findSafe(t, v, func(in pamtest.SafeInfo) bool {
			return in.Class == pamtest.ClassManyFlagsExpiring && in.Access == pamtest.AccessFull
		})
		read, err := c.Member(ctx, in.URLID, pamtest.PSMAppUsers)
		if err != nil {
			t.Fatal(err)
		}
		if read.Expiration == nil || *read.Expiration != in.PSMExpiration {
			t.Fatalf("read expiry %v, want %d", read.Expiration, in.PSMExpiration)
		}
		m, err := c.UpdateMember(ctx, in.URLID, read.Name, pam.UpdateOf(read, grant))
		if err != nil {
			t.Fatal(err)
		}
		want := in.PSMPermissions.Union(grant)
		state, _ := srv.SafeState(in.Name)
		ms, _ := state.Member(pamtest.PSMAppUsers)
		if m.Permissions != want || ms.Permissions != want || ms.Expiration == nil || *ms.Expiration != in.PSMExpiration {
			t.Errorf("after update: answer %s, vault %s exp %v; want %s exp %d", m.Permissions, ms.Permissions, ms.Expiration, want, in.PSMExpiration)
		}
	})

	t.Run("encoded member names", func(t *testing.T) {
		in := findSafe(t, v, func(in pamtest.SafeInfo) bool {
			return in.Access == pamtest.AccessFull && strings.Contains(in.Name, ".") && !in.Internal
		})
		for _, p := range principals {
			m, err := c.AddMember(ctx, in.URLID, pam.NewMember{Name: p.Name, Type: p.Type, Permissions: pam.Perms(pam.ListAccounts)})
			if err != nil || m.Name != p.Name {
				t.Fatalf("AddMember(%q) = %+v, %v", p.Name, m, err)
			}
			if m, err = c.Member(ctx, in.URLID, p.Name); err != nil || m.Name != p.Name {
				t.Fatalf("Member(%q) = %+v, %v", p.Name, m, err)
			}
			if _, err = c.UpdateMember(ctx, in.URLID, p.Name, pam.UpdateOf(m, grant)); err != nil {
				t.Fatalf("UpdateMember(%q): %v", p.Name, err)
			}
			state, _ := srv.SafeState(in.Name)
			if ms, ok := state.Member(p.Name); !ok || ms.Permissions != grant {
				t.Errorf("vault holds %q as %+v", p.Name, ms)
			}
			if err := c.DeleteMember(ctx, in.URLID, p.Name); err != nil {
				t.Fatalf("DeleteMember(%q): %v", p.Name, err)
			}
		}
	})

	t.Run("unknown principal", func(t *testing.T) {
		in := findSafe(t, v, func(in pamtest.SafeInfo) bool { return in.Access == pamtest.AccessFull && !in.Internal })
		tests := []struct {
			name string
			m    pam.NewMember
		}{
			{"name unknown to the vault", pam.NewMember{Name: "nobody at all", Type: "User", Permissions: grant}},
			{"known name, wrong type", pam.NewMember{Name: principals[2].Name, Type: "User", Permissions: grant}},
		}
		for _, tt := range tests {
			_, err := c.AddMember(ctx, in.URLID, tt.m)
			if !errors.Is(err, pam.ErrUnknownPrincipal) || errors.Is(err, pam.ErrMemberNotFound) || errors.Is(err, pam.ErrSafeNotFound) ||
				pam.Classify(err) != pam.ClassPermanent {
				t.Errorf("%s: err = %v, want a permanent ErrUnknownPrincipal that is neither ErrMemberNotFound nor ErrSafeNotFound", tt.name, err)
			}
		}
		if _, err := c.AddMember(ctx, "No%20Such%20Safe", pam.NewMember{Name: pamtest.PSMAppUsers, Type: "Group", Permissions: grant}); !errors.Is(err, pam.ErrSafeNotFound) || errors.Is(err, pam.ErrUnknownPrincipal) {
			t.Errorf("add to a missing Safe: %v, want ErrSafeNotFound", err)
		}
	})

	t.Run("missing Safe", func(t *testing.T) {
		_, err := c.Member(ctx, "No%20Such%20Safe", pamtest.PSMAppUsers)
		if !errors.Is(err, pam.ErrSafeNotFound) || errors.Is(err, pam.ErrMemberNotFound) {
			t.Errorf("err = %v, want ErrSafeNotFound", err)
		}
		in := findSafe(t, v, func(in pamtest.SafeInfo) bool {
			return in.Access == pamtest.AccessFull && !in.Internal && in.Index > 1000
		})
		if err := srv.DeleteSafe(in.Name); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Safe(ctx, in.URLID); !errors.Is(err, pam.ErrSafeNotFound) {
			t.Errorf("deleted Safe: %v, want ErrSafeNotFound", err)
		}
	})

	t.Run("read-only Safe: read works, write is 403", func(t *testing.T) {
		in := findSafe(t, v, func(in pamtest.SafeInfo) bool {
			return in.Access == pamtest.AccessReadOnly && in.PSMMember
		})
		m, err := c.Member(ctx, in.URLID, pamtest.PSMAppUsers)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.UpdateMember(ctx, in.URLID, m.Name, pam.UpdateOf(m, grant))
		var ae *pam.APIError
		if !errors.Is(err, pam.ErrForbidden) || !errors.As(err, &ae) || ae.Status != 403 || pam.Classify(err) != pam.ClassPermanent {
			t.Errorf("err = %v, want a permanent 403", err)
		}
	})
}

func TestSimSessions(t *testing.T) {
	t.Parallel()
	t.Run("expired sessions: one re-logon for concurrent callers", func(t *testing.T) {
		t.Parallel()
		srv := newSim(t, pamtest.Options{Safes: 500, Seed: 41})
		c := simClient(t, srv, nil)
		ctx := simCtx(t)
		in := findSafe(t, srv.Vault(), func(in pamtest.SafeInfo) bool { return in.Access == pamtest.AccessFull && in.PSMMember })
		if _, err := c.Member(ctx, in.URLID, pamtest.PSMAppUsers); err != nil {
			t.Fatal(err)
		}
		srv.ExpireSessions()
		srv.ResetStats()
		const callers = 24
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				if _, err := c.Member(ctx, in.URLID, pamtest.PSMAppUsers); err != nil {
					t.Errorf("Member: %v", err)
				}
			})
		}
		wg.Wait()
		st := srv.Stats()
		if st.Logons != 1 {
			t.Errorf("logons after expiry = %d, want 1", st.Logons)
		}
		if ok := st.Count(pamtest.RouteMember, 200); ok != callers {
			t.Errorf("successful GETs = %d, want %d", ok, callers)
		}
	})

	t.Run("cloud: token expiry, proactive renewal", func(t *testing.T) {
		t.Parallel()
		clock := &simClock{t: time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)}
		srv := newSim(t, pamtest.Options{Safes: 300, Seed: 42, Cloud: true, TokenTTL: 900 * time.Second, Now: clock.Now})
		ctx := simCtx(t)
		in := findSafe(t, srv.Vault(), func(in pamtest.SafeInfo) bool {
			return in.Access == pamtest.AccessFull && in.Class == pamtest.ClassAbsent
		})

		// Client and server share the clock: renewed at 80%, no 401 ever.
		c := simClient(t, srv, func(cfg *pam.Config) { cfg.Now = clock.Now })
		if _, err := c.AddMember(ctx, in.URLID, pam.NewMember{Name: pamtest.PSMAppUsers, Type: "Group", Permissions: pam.Perms(pam.ListAccounts)}); err != nil {
			t.Fatalf("AddMember in cloud mode: %v", err)
		}
		for range 4 {
			clock.Add(400 * time.Second)
			if _, err := c.Member(ctx, in.URLID, pamtest.PSMAppUsers); err != nil {
				t.Fatal(err)
			}
		}
		st := srv.Stats()
		if st.Logons < 2 || st.Count(pamtest.RouteMember, 401) != 0 {
			t.Errorf("logons %d, 401s %d; want renewals and no 401", st.Logons, st.Count(pamtest.RouteMember, 401))
		}

		// A client whose clock does not move sees the token expire (401
		// PASWS006E), logs on again and replays.
		c2 := simClient(t, srv, nil)
		if _, err := c2.Member(ctx, in.URLID, pamtest.PSMAppUsers); err != nil {
			t.Fatal(err)
		}
		srv.ResetStats()
		clock.Add(901 * time.Second)
		if _, err := c2.Member(ctx, in.URLID, pamtest.PSMAppUsers); err != nil {
			t.Fatalf("after expiry: %v", err)
		}
		st = srv.Stats()
		if st.Logons != 1 || st.Count(pamtest.RouteMember, 401) != 1 || st.Count(pamtest.RouteMember, 200) != 1 {
			t.Errorf("stats after expiry: logons %d, requests %v; want 1 logon, one 401 then one 200", st.Logons, st.Requests)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		t.Parallel()
		srv := newSim(t, pamtest.Options{Safes: 10, Seed: 43})
		c := simClient(t, srv, func(cfg *pam.Config) { cfg.Password = secret.New("wrong-pass-123") })
		err := c.Logon(simCtx(t))
		if !errors.Is(err, pam.ErrUnauthorized) || pam.ErrorCode(err) != "ITATS004E" || strings.Contains(err.Error(), "wrong-pass-123") {
			t.Errorf("err = %v, want ErrUnauthorized ITATS004E without the password", err)
		}
	})

	t.Run("wrong client secret", func(t *testing.T) {
		t.Parallel()
		srv := newSim(t, pamtest.Options{Safes: 10, Seed: 44, Cloud: true})
		c := simClient(t, srv, func(cfg *pam.Config) { cfg.ClientSecret = secret.New("wrong-secret-123") })
		err := c.Logon(simCtx(t))
		if !errors.Is(err, pam.ErrUnauthorized) || strings.Contains(err.Error(), "wrong-secret-123") {
			t.Errorf("err = %v, want ErrUnauthorized without the secret", err)
		}
	})
}

type simClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *simClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *simClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestSimFaultsAndTLS(t *testing.T) {
	t.Parallel()
	t.Run("faults are classified", func(t *testing.T) {
		t.Parallel()
		srv := newSim(t, pamtest.Options{Safes: 200, Seed: 51})
		c := simClient(t, srv, nil)
		ctx := simCtx(t)
		if err := c.Logon(ctx); err != nil {
			t.Fatal(err)
		}
		in := findSafe(t, srv.Vault(), func(in pamtest.SafeInfo) bool { return in.Access == pamtest.AccessFull && in.PSMMember })
		tests := []struct {
			name   string
			faults pamtest.Faults
			class  pam.Class
			check  func(error) bool
		}{
			{"HTML 500", pamtest.Faults{P500: 1}, pam.ClassTransient, func(err error) bool {
				var ae *pam.APIError
				return errors.As(err, &ae) && ae.Status == 500 && ae.Code == "" && ae.Message != "" && !strings.Contains(ae.Message, "<")
			}},
			{"429 with Retry-After", pamtest.Faults{P429: 1, P429RetryAfter: 1, RetryAfter: 3 * time.Second}, pam.ClassThrottled, func(err error) bool {
				d, ok := pam.RetryAfter(err)
				return ok && d == 3*time.Second
			}},
			{"403", pamtest.Faults{P403: 1}, pam.ClassPermanent, func(err error) bool { return errors.Is(err, pam.ErrForbidden) }},
		}
		for _, tt := range tests {
			if err := srv.SetFaults(tt.faults); err != nil {
				t.Fatal(err)
			}
			_, err := c.Member(ctx, in.URLID, pamtest.PSMAppUsers)
			if got := pam.Classify(err); got != tt.class || !tt.check(err) {
				t.Errorf("%s: err = %v (class %s), want class %s", tt.name, err, got, tt.class)
			}
		}
	})

	t.Run("TLS with CAFile", func(t *testing.T) {
		t.Parallel()
		srv := newSim(t, pamtest.Options{Safes: 120, Seed: 52, TLS: true})
		caFile := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(caFile, srv.CACertPEM(), 0o600); err != nil {
			t.Fatal(err)
		}
		c := simClient(t, srv, func(cfg *pam.Config) { cfg.CAFile = caFile })
		if got := listAll(t, c, pam.SafesOptions{Limit: 50}); len(got) != len(visibleSafes(srv.Vault())) {
			t.Errorf("listed %d Safes over TLS", len(got))
		}
		bare := simClient(t, srv, nil)
		if err := bare.Logon(simCtx(t)); !errors.Is(err, pam.ErrTransient) || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("without CAFile: %v, want a TLS transport error", err)
		}
	})
}

// BenchmarkSafesPaging pages through every Safe of a simulated vault with
// the default page size (1000) and reports the client's allocation per Safe
// (B/safe) and the peak heap (peak-heap-MiB), which should stay flat as the
// vault grows from 10k to 1M Safes: the client holds one page at a time.
//
// How the client is measured alone: the simulator runs in a child process
// (this test binary, see TestSimChildProcess), so neither its vault nor its
// request handling is in this process's heap or allocation counters.
// Subtracting a baseline taken after an in-process simulator had built its
// vault would not do: the simulator allocates on every request (JSON
// pages), and those bytes would be counted as the client's. The peak is the
// largest value of /memory/classes/heap/objects:bytes (live and not yet
// swept objects, read without stopping the world) sampled after every page,
// after a GC at the start; it includes the test binary's own small heap.
//
// Run: go test -run '^$' -bench SafesPaging ./internal/pam/. Figures
// measured so far are in docs/pam-api-coverage.md.
func BenchmarkSafesPaging(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("safes=%d", n), func(b *testing.B) {
			url := startSimProcess(b, n)
			c, err := pam.New(pam.Config{
				BaseURL:  url,
				Username: pamtest.DefaultAdminUser,
				Password: secret.New(pamtest.DefaultAdminPassword),
				Timeout:  time.Minute,
			})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if err := c.Logon(ctx); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			peak := newHeapPeak()
			total := 0
			for b.Loop() {
				count := 0
				for _, err := range c.Safes(ctx, pam.SafesOptions{}) {
					if err != nil {
						b.Fatal(err)
					}
					if count++; count%1000 == 0 {
						peak.sample()
					}
				}
				total += count
			}
			b.StopTimer()
			allocs := peak.allocated()
			b.ReportMetric(float64(allocs)/float64(total), "B/safe")
			b.ReportMetric(float64(peak.max)/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "safes/s")
		})
	}
}

// simChildEnv makes TestSimChildProcess serve a vault of that many Safes.
const simChildEnv = "SAFEPERM_PAMTEST_CHILD_SAFES"

// TestSimChildProcess is not a test: run by startSimProcess in a child
// process, it serves a simulated vault until its stdin closes.
func TestSimChildProcess(t *testing.T) {
	spec := os.Getenv(simChildEnv)
	if spec == "" {
		t.Skip("helper process of BenchmarkSafesPaging")
	}
	n, err := strconv.Atoi(spec)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := pamtest.NewServer(pamtest.Options{Safes: n, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	fmt.Println("URL " + srv.URL)
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// startSimProcess starts a simulator of n Safes in a child process and
// returns its API base URL; the child ends with the benchmark.
func startSimProcess(b *testing.B, n int) string {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSimChildProcess$", "-test.bench=^$", "-test.count=1")
	cmd.Env = append(os.Environ(), simChildEnv+"="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if url, ok := strings.CutPrefix(sc.Text(), "URL "); ok {
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			return url
		}
	}
	b.Fatalf("simulator process gave no URL: %v", sc.Err())
	return ""
}

// heapPeak tracks the heap during a benchmark with runtime/metrics, which
// does not stop the world.
type heapPeak struct {
	s          []metrics.Sample
	max        uint64
	allocStart uint64
}

func newHeapPeak() *heapPeak {
	runtime.GC()
	h := &heapPeak{s: []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/allocs:bytes"}}}
	metrics.Read(h.s)
	h.max, h.allocStart = h.s[0].Value.Uint64(), h.s[1].Value.Uint64()
	return h
}

func (h *heapPeak) sample() {
	metrics.Read(h.s[:1])
	h.max = max(h.max, h.s[0].Value.Uint64())
}

// allocated returns the bytes allocated since newHeapPeak.
func (h *heapPeak) allocated() uint64 {
	metrics.Read(h.s[1:])
	return h.s[1].Value.Uint64() - h.allocStart
}
