package pam

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestEscapeSafeName(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"Finance Team", "Finance%20Team"},
		{"Test Safe_RDP", "Test%20Safe_RDP"},
		{"a+b&c%d/e?f#g", "a%2Bb%26c%25d%2Fe%3Ff%23g"},
		{"Übersicht (alt)!*'~.-_", "%C3%9Cbersicht%20(alt)!*'~.-_"},
		{"plain", "plain"},
	}
	for _, tt := range tests {
		if got := EscapeSafeName(tt.in); got != tt.want {
			t.Errorf("EscapeSafeName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCleanEncoded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		mode encMode
		want string
	}{
		{"Finance%20Team", encSegment, "Finance%20Team"},
		{"a%2Fb%3f", encSegment, "a%2Fb%3f"},
		{"raw space", encSegment, "raw%20space"},
		{"a/b?c#d", encSegment, "a%2Fb%3Fc%23d"},
		{"100%", encSegment, "100%25"},
		{"%zz", encSegment, "%25zz"},
		{"ü", encSegment, "%C3%BC"},
		{"/PasswordVault/api/safes", encPath, "/PasswordVault/api/safes"},
		{"offset=25&limit=25&useCache=False&search=a%20b", encQuery, "offset=25&limit=25&useCache=False&search=a%20b"},
		{"search=a b?", encQuery, "search=a%20b?"},
	}
	for _, tt := range tests {
		if got := cleanEncoded(tt.in, tt.mode); got != tt.want {
			t.Errorf("cleanEncoded(%q, %d) = %q, want %q", tt.in, tt.mode, got, tt.want)
		}
	}
}

// TestPathsOnTheWire checks the request-target each call sends, byte for
// byte, as the server received it.
func TestPathsOnTheWire(t *testing.T) {
	t.Parallel()
	f := newFakePVWA(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodDelete:
			w.WriteHeader(204)
		case strings.Contains(r.URL.Path, "/Members"):
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/Members") {
				writeRaw(w, 200, `{"value":[],"count":0}`)
				return
			}
			writeRaw(w, 200, memberJSON)
		case strings.HasSuffix(r.URL.Path, "/Safes"):
			writeRaw(w, 200, `{"value":[],"count":0}`)
		default:
			writeRaw(w, 200, `{"safeUrlId":"x","safeName":"x"}`)
		}
	})
	c, _ := newTestClient(t, f, nil)
	ctx := ctxT(t)
	newPSM := NewMember{Name: "PSMAppUsers", Type: "group", Permissions: Perms(ListAccounts, UnlockAccounts)}
	tests := []struct {
		name string
		call func() error
		want string // METHOD request-target
	}{
		{"member with space and dot", func() error { _, err := c.Member(ctx, "Finance%20Team", "john.doe@corp.example"); return err },
			"GET /PasswordVault/API/Safes/Finance%20Team/Members/john.doe@corp.example/"},
		{"member name with space", func() error { _, err := c.Member(ctx, "S", "PSM App Users"); return err },
			"GET /PasswordVault/API/Safes/S/Members/PSM%20App%20Users/"},
		{"member name with + & % / ? #", func() error { _, err := c.Member(ctx, "S", "a+b&c%d/e?f#g"); return err },
			"GET /PasswordVault/API/Safes/S/Members/a%2Bb%26c%25d%2Fe%3Ff%23g/"},
		{"non-ASCII member", func() error { _, err := c.Member(ctx, "S", "Jürgen Ørsted"); return err },
			"GET /PasswordVault/API/Safes/S/Members/J%C3%BCrgen%20%C3%98rsted/"},
		{"safeUrlId verbatim, not re-escaped", func() error { _, err := c.Member(ctx, "Saviynt%20Litmos%20Test", "x"); return err },
			"GET /PasswordVault/API/Safes/Saviynt%20Litmos%20Test/Members/x/"},
		{"encoded slash in safeUrlId stays", func() error { _, err := c.Member(ctx, "a%2Fb", "x"); return err },
			"GET /PasswordVault/API/Safes/a%2Fb/Members/x/"},
		{"raw space in safeUrlId is escaped", func() error { _, err := c.Member(ctx, "raw name", "x"); return err },
			"GET /PasswordVault/API/Safes/raw%20name/Members/x/"},
		{"safe", func() error { _, err := c.Safe(ctx, "Finance%20Team"); return err },
			"GET /PasswordVault/API/Safes/Finance%20Team/"},
		{"list safes", func() error { _, err := collect(t, c.Safes(ctx, SafesOptions{Search: "Fin Team+1"})); return err },
			"GET /PasswordVault/API/Safes?limit=1000&search=Fin%20Team%2B1"},
		{"list safes with limit and offset", func() error { _, err := collect(t, c.Safes(ctx, SafesOptions{Limit: 7, Offset: 14})); return err },
			"GET /PasswordVault/API/Safes?limit=7&offset=14"},
		{"list members", func() error { _, err := collect(t, c.Members(ctx, "Finance%20Team")); return err },
			"GET /PasswordVault/API/Safes/Finance%20Team/Members?limit=1000"},
		{"add member", func() error { _, err := c.AddMember(ctx, "Finance%20Team", newPSM); return err },
			"POST /PasswordVault/API/Safes/Finance%20Team/Members/"},
		{"update member", func() error {
			_, err := c.UpdateMember(ctx, "Finance%20Team", "PSM.App Users", MemberUpdate{})
			return err
		},
			"PUT /PasswordVault/API/Safes/Finance%20Team/Members/PSM.App%20Users/"},
		{"delete member", func() error { return c.DeleteMember(ctx, "Finance%20Team", "PSMAppUsers") },
			"DELETE /PasswordVault/API/Safes/Finance%20Team/Members/PSMAppUsers/"},
	}
	for _, tt := range tests {
		if err := tt.call(); err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		last := f.last(t)
		if got := last.Method + " " + last.URI; got != tt.want {
			t.Errorf("%s:\n got  %s\n want %s", tt.name, got, tt.want)
		}
		if !strings.HasPrefix(last.Auth, tokenPrefix) {
			t.Errorf("%s: Authorization = %q", tt.name, last.Auth)
		}
	}
}

func TestInvalidArgumentsSendNothing(t *testing.T) {
	t.Parallel()
	f := newFakePVWA(t, okMember)
	c, _ := newTestClient(t, f, nil)
	ctx := ctxT(t)
	calls := map[string]func() error{
		"empty member":   func() error { _, err := c.Member(ctx, "S", ""); return err },
		"empty safe":     func() error { _, err := c.Member(ctx, "", "x"); return err },
		"dot-dot safe":   func() error { _, err := c.Safe(ctx, ".."); return err },
		"dot member":     func() error { return c.DeleteMember(ctx, "S", ".") },
		"no member type": func() error { _, err := c.AddMember(ctx, "S", NewMember{Name: "x"}); return err },
		"bad type":       func() error { _, err := c.AddMember(ctx, "S", NewMember{Name: "x", Type: "Computer"}); return err },
		"empty list":     func() error { _, err := collect(t, c.Members(ctx, "")); return err },
	}
	for name, call := range calls {
		err := call()
		if !errors.Is(err, ErrPermanent) || Classify(err) != ClassPermanent {
			t.Errorf("%s: err = %v, want a permanent error", name, err)
		}
	}
	if n := len(f.all()); n != 0 {
		t.Errorf("%d requests sent, want none", n)
	}
}

func TestAddMemberBody(t *testing.T) {
	t.Parallel()
	exp := int64(2051222400)
	neg := int64(-62135596800)
	tests := []struct {
		name     string
		in       NewMember
		wantType string
		wantIn   string
		wantExp  string
	}{
		{"group defaults", NewMember{Name: "PSMAppUsers", Type: "GROUP", Permissions: Perms(ListAccounts, UnlockAccounts)}, "Group", "Vault", "null"},
		{"user with expiry and directory", NewMember{Name: "jdoe", Type: "user", SearchIn: "corp.example", Expiration: &exp, Permissions: Perms(ListAccounts, UnlockAccounts)}, "User", "corp.example", "2051222400"},
		{"negative expiry is null", NewMember{Name: "r", Type: "Role", Expiration: &neg, Permissions: Perms(ListAccounts, UnlockAccounts)}, "Role", "Vault", "null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakePVWA(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(201) }) // empty 201
			c, _ := newTestClient(t, f, nil)
			m, err := c.AddMember(ctxT(t), "S", tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if m.Name != tt.in.Name || m.Type != tt.wantType || m.Permissions != tt.in.Permissions {
				t.Errorf("member from empty answer = %+v", m)
			}
			var body map[string]json.RawMessage
			last := f.last(t)
			if err := json.Unmarshal(last.Body, &body); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(last.CType, "application/json") {
				t.Errorf("Content-Type = %q", last.CType)
			}
			checkField := func(k, want string) {
				t.Helper()
				if got := string(body[k]); got != want {
					t.Errorf("%s = %s, want %s", k, got, want)
				}
			}
			checkField("memberName", `"`+tt.in.Name+`"`)
			checkField("memberType", `"`+tt.wantType+`"`)
			checkField("searchIn", `"`+tt.wantIn+`"`)
			checkField("membershipExpirationDate", tt.wantExp)
			checkAllFlags(t, body["permissions"], Perms(ListAccounts, UnlockAccounts), nil)
		})
	}
}

// checkAllFlags checks a permissions object has the 22 keys in order, the
// flags of want true, then exactly the extra keys.
func checkAllFlags(t *testing.T, raw json.RawMessage, want PermSet, extra map[string]bool) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if _, err := dec.Token(); err != nil {
		t.Fatalf("permissions %s: %v", raw, err)
	}
	var keys []string
	got := map[string]bool{}
	for dec.More() {
		k, _ := dec.Token()
		var v bool
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("permissions %s: %v", raw, err)
		}
		keys = append(keys, k.(string))
		got[k.(string)] = v
	}
	if len(keys) != NumPermissions+len(extra) {
		t.Fatalf("permissions has %d keys, want %d: %s", len(keys), NumPermissions+len(extra), raw)
	}
	for i, n := range PermissionNames() {
		if keys[i] != n {
			t.Errorf("key %d = %q, want %q", i, keys[i], n)
		}
		p, _ := ParsePermission(n)
		if got[n] != want.Has(p) {
			t.Errorf("%s = %v, want %v", n, got[n], want.Has(p))
		}
	}
	for k, v := range extra {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("extra key %s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}

func TestUpdateMemberBody(t *testing.T) {
	t.Parallel()
	future := int64(2051222400)
	tests := []struct {
		name    string
		exp     *int64
		wantExp string
	}{
		{"expiry kept", &future, "2051222400"},
		{"no expiry", nil, "null"},
		{"zero is null", ptr(int64(0)), "null"},
		{"negative is null", ptr(int64(-1)), "null"},
		{"year 9999 is kept", ptr(int64(maxExpiry)), fmt.Sprint(maxExpiry)},
		{"after year 9999 is null", ptr(int64(maxExpiry + 1)), "null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakePVWA(t, func(w http.ResponseWriter, r *http.Request) {
				// The PVWA echoes the member; this one has no permissions key.
				writeRaw(w, 200, `{"memberName":"PSMAppUsers","memberType":"Group","membershipExpirationDate":null}`)
			})
			c, _ := newTestClient(t, f, nil)
			read := Member{Name: "PSMAppUsers", Permissions: Perms(ListAccounts, UseAccounts), Expiration: tt.exp,
				ExtraPermissions: map[string]bool{"futureFlag": true, "otherFlag": false, "ListAccounts": false}}
			u := UpdateOf(read, Perms(ListAccounts, UnlockAccounts))
			m, err := c.UpdateMember(ctxT(t), "S", "PSMAppUsers", u)
			if err != nil {
				t.Fatal(err)
			}
			want := Perms(ListAccounts, UseAccounts, UnlockAccounts)
			if m.Permissions != want || m.ExtraPermissions["futureFlag"] != true {
				t.Errorf("member = %+v, want permissions from the request", m)
			}
			var body map[string]json.RawMessage
			if err := json.Unmarshal(f.last(t).Body, &body); err != nil {
				t.Fatal(err)
			}
			if len(body) != 2 {
				t.Errorf("PUT body keys = %d, want membershipExpirationDate and permissions: %s", len(body), f.last(t).Body)
			}
			if got := string(body["membershipExpirationDate"]); got != tt.wantExp {
				t.Errorf("membershipExpirationDate = %s, want %s", got, tt.wantExp)
			}
			// A known flag in a different case among the extras is not sent twice.
			checkAllFlags(t, body["permissions"], want, map[string]bool{"futureFlag": true, "otherFlag": false})
		})
	}
}

func ptr[T any](v T) *T { return &v }
