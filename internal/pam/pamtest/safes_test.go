package pamtest_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
)

func TestRoutesCaseInsensitiveAndSlash(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 200})
	tok := admin(t, srv)
	info := findSafe(t, srv.Vault(), func(i pamtest.SafeInfo) bool {
		return !i.Internal && i.Access == pamtest.AccessFull && strings.Contains(i.Name, " ")
	})
	id := info.URLID
	paths := []string{
		"/PasswordVault/API/Safes",
		"/PasswordVault/API/Safes/",
		"/passwordvault/api/safes",
		"/PASSWORDVAULT/API/SAFES/",
		"/PasswordVault/api/Safes/" + id,
		"/PasswordVault/API/safes/" + id + "/",
		"/PasswordVault/API/Safes/" + id + "/Members",
		"/PasswordVault/api/safes/" + id + "/members/",
		"/PasswordVault/API/Safes/" + id + "/Members/Vault%20Admins",
		"/passwordvault/API/SAFES/" + id + "/MEMBERS/vault%20admins/",
		"/PasswordVault/API/Safes/" + strings.ToUpper(id) + "/Members/", // Safe names are case-insensitive
	}
	for _, p := range paths {
		if r := call(t, srv, "GET", p, tok, nil); r.status != 200 {
			t.Errorf("GET %s = %d %s, want 200", p, r.status, truncate(r.body))
		}
	}
	for _, tt := range []struct{ method, path string }{
		{"GET", "/PasswordVault/API/Nope"},
		{"GET", "/Other/API/Safes"},
		{"GET", "/PasswordVault/API/Safes/a/b/c/d/e"},
	} {
		r := call(t, srv, tt.method, tt.path, tok, nil)
		if r.status != 404 {
			t.Errorf("%s %s = %d, want 404", tt.method, tt.path, r.status)
		}
		r.apiError(t) // JSON
	}
	if r := call(t, srv, "DELETE", "/PasswordVault/API/Safes", tok, nil); r.status != 405 {
		t.Errorf("DELETE /API/Safes = %d, want 405", r.status)
	}
}

// walkSafes follows nextLink from first and returns every Safe name, the
// count of each page and checks the invariants of each page.
func walkSafes(t *testing.T, srv *pamtest.Server, tok, first string, limit int) (names []string, count int, pages int) {
	t.Helper()
	next := first
	offset := 0
	linkRE := regexp.MustCompile(`^api/safes\?offset=(\d+)&limit=(\d+)&useCache=False(&search=[^&]+)?$`)
	for next != "" {
		var l safeList
		r := call(t, srv, "GET", srv.URL+"/"+next, tok, nil)
		if r.status != 200 {
			t.Fatalf("GET %s = %d %s", next, r.status, r.body)
		}
		r.decode(t, &l)
		pages++
		if pages == 1 {
			count = l.Count
		} else if l.Count != count {
			t.Fatalf("count changed from %d to %d", count, l.Count)
		}
		if len(l.Value) > limit {
			t.Fatalf("page of %d Safes, limit %d", len(l.Value), limit)
		}
		for _, s := range l.Value {
			names = append(names, s.SafeName)
		}
		offset += len(l.Value)
		more := offset < count
		switch {
		case more && l.NextLink == nil:
			t.Fatalf("no nextLink at offset %d of %d", offset, count)
		case !more && l.NextLink != nil:
			t.Fatalf("nextLink %q on the last page", *l.NextLink)
		case l.NextLink != nil:
			m := linkRE.FindStringSubmatch(*l.NextLink)
			if m == nil {
				t.Fatalf("nextLink %q not relative api/safes?offset=N&limit=L&useCache=False", *l.NextLink)
			}
			if m[1] != fmt.Sprint(offset) || m[2] != fmt.Sprint(limit) {
				t.Fatalf("nextLink %q, want offset=%d limit=%d", *l.NextLink, offset, limit)
			}
			next = *l.NextLink
		default:
			next = ""
		}
		if len(l.Value) < limit && l.NextLink != nil {
			t.Fatalf("short page with a nextLink")
		}
	}
	return names, count, pages
}

func TestListSafesPaging(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		safes     int
		query     string
		wantLimit int
	}{
		{"default limit 25", 700, "", 25},
		{"limit 1", 150, "?limit=1", 1},
		{"limit 7", 700, "?limit=7", 7},
		{"limit 333", 2345, "?limit=333", 333},
		{"limit 1000", 2345, "?limit=1000", 1000},
		{"limit 5000 clamped", 2345, "?limit=5000", 1000},
		{"limit 0 means default", 300, "?limit=0", 25},
		{"psPAS OffSet casing", 300, "?Limit=50&OffSet=0", 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newSim(t, pamtest.Options{Safes: tt.safes, Seed: 42})
			tok := admin(t, srv)
			names, count, pages := walkSafes(t, srv, tok, "API/Safes"+tt.query, tt.wantLimit)
			var want []string
			for i := 0; i < tt.safes; i++ {
				if info := srv.Vault().Info(i); info.Access != pamtest.AccessHidden {
					want = append(want, info.Name)
				}
			}
			if count != len(want) {
				t.Errorf("count = %d, want %d visible", count, len(want))
			}
			if len(names) != len(want) {
				t.Fatalf("walked %d Safes, want %d", len(names), len(want))
			}
			seen := map[string]bool{}
			for k, n := range names {
				if seen[n] {
					t.Fatalf("Safe %q listed twice", n)
				}
				seen[n] = true
				if n != want[k] {
					t.Fatalf("Safe %d = %q, want %q (index order)", k, n, want[k])
				}
			}
			if wantPages := (len(want) + tt.wantLimit - 1) / tt.wantLimit; pages != wantPages {
				t.Errorf("pages = %d, want %d", pages, wantPages)
			}
		})
	}
}

func TestListSafesParams(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 100, Mix: func() pamtest.Mix { m := pamtest.DefaultMix(); m.Hidden = 0; return m }()})
	tok := admin(t, srv)
	var l safeList
	call(t, srv, "GET", "/PasswordVault/API/Safes?offset=90&limit=25", tok, nil).decode(t, &l)
	if len(l.Value) != 10 || l.Count != 100 || l.NextLink != nil {
		t.Errorf("last partial page: %d items, count %d, nextLink %v", len(l.Value), l.Count, l.NextLink)
	}
	l = safeList{}
	call(t, srv, "GET", "/PasswordVault/API/Safes?offset=500", tok, nil).decode(t, &l)
	if len(l.Value) != 0 || l.Count != 100 || l.NextLink != nil {
		t.Errorf("offset beyond the end: %d items, count %d", len(l.Value), l.Count)
	}
	l = safeList{}
	call(t, srv, "GET", "/PasswordVault/API/Safes?offset=75&limit=25&extendedDetails=false&sort=safeName%20desc&includeAccounts=false", tok, nil).decode(t, &l)
	if len(l.Value) != 25 || l.NextLink != nil {
		t.Errorf("exact last page: %d items, nextLink %v", len(l.Value), l.NextLink)
	}
	for _, q := range []string{"?limit=abc", "?offset=-1", "?limit=-5"} {
		r := call(t, srv, "GET", "/PasswordVault/API/Safes"+q, tok, nil)
		if r.status != 400 || r.apiError(t).ErrorCode != "PASWS167E" {
			t.Errorf("%s: %d %s, want 400 PASWS167E", q, r.status, r.body)
		}
	}
}

func TestSearchSafes(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 3000, Seed: 3})
	tok := admin(t, srv)
	for _, term := range []string{"finance team", "ZÜRICH", "db.prod.0", "psm", "nothing-like-this"} {
		var want []string
		for i := 0; i < srv.Vault().Len(); i++ {
			info := srv.Vault().Info(i)
			if info.Access != pamtest.AccessHidden && strings.Contains(strings.ToLower(info.Name), strings.ToLower(term)) {
				want = append(want, info.Name)
			}
		}
		names, count, _ := walkSafes(t, srv, tok, "API/Safes?limit=40&search="+url.QueryEscape(term), 40)
		if count != len(want) || len(names) != len(want) {
			t.Fatalf("search %q: count %d, walked %d, want %d", term, count, len(names), len(want))
		}
		for k := range want {
			if names[k] != want[k] {
				t.Fatalf("search %q: #%d = %q, want %q", term, k, names[k], want[k])
			}
		}
	}
}

func TestSafeObject(t *testing.T) {
	t.Parallel()
	m := pamtest.DefaultMix()
	m.QuotedCreationTime = 0.5
	srv := newSim(t, pamtest.Options{Safes: 400, Mix: m})
	tok := admin(t, srv)
	var l safeList
	call(t, srv, "GET", "/PasswordVault/API/Safes?limit=1000", tok, nil).decode(t, &l)
	quoted, plain := 0, 0
	for _, s := range l.Value {
		if want := pam.EscapeSafeName(s.SafeName); s.SafeURLID != want {
			t.Errorf("safeUrlId of %q = %q, want %q", s.SafeName, s.SafeURLID, want)
		}
		if strings.Contains(s.SafeURLID, "+") || strings.Contains(s.SafeURLID, " ") {
			t.Errorf("safeUrlId %q holds a space or +", s.SafeURLID)
		}
		if s.Location != `\` || s.IsExpiredMember == nil || s.Creator.ID == "" || s.Creator.Name == "" {
			t.Errorf("Safe %q: location %q, isExpiredMember %v, creator %+v", s.SafeName, s.Location, s.IsExpiredMember, s.Creator)
		}
		if (s.Versions == nil) == (s.Days == nil) {
			t.Errorf("Safe %q: want exactly one retention set: %v %v", s.SafeName, s.Versions, s.Days)
		}
		if s.LastModificationTime < 1_500_000_000_000_000 {
			t.Errorf("lastModificationTime %d not in µs", s.LastModificationTime)
		}
		if s.CreationTime[0] == '"' {
			quoted++
		} else {
			plain++
		}
	}
	if quoted == 0 || plain == 0 {
		t.Errorf("creationTime quoted %d, plain %d; want both", quoted, plain)
	}
	// Every safeUrlId works verbatim as a path segment.
	for _, s := range l.Value[:200] {
		var one safeJSON
		r := call(t, srv, "GET", "/PasswordVault/API/Safes/"+s.SafeURLID+"/", tok, nil)
		if r.status != 200 {
			t.Fatalf("GET Safe %q by safeUrlId %q: %d", s.SafeName, s.SafeURLID, r.status)
		}
		r.decode(t, &one)
		if one.SafeName != s.SafeName || one.SafeNumber != s.SafeNumber {
			t.Errorf("GET %q returned %q", s.SafeURLID, one.SafeName)
		}
	}
	// Raw UTF-8 and a lightly escaped name work too.
	for _, info := range []pamtest.SafeInfo{
		findSafe(t, srv.Vault(), func(i pamtest.SafeInfo) bool {
			return strings.HasPrefix(i.Name, "Zürich") && i.Access != pamtest.AccessHidden
		}),
	} {
		r := call(t, srv, "GET", "/PasswordVault/API/Safes/"+url.PathEscape(info.Name), tok, nil)
		if r.status != 200 {
			t.Errorf("GET %q by PathEscape: %d", info.Name, r.status)
		}
	}
}

func TestInternalSafes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		opts         pamtest.Options
		wantInternal int
	}{
		{"auto large", pamtest.Options{Safes: 100}, 44},
		{"auto small", pamtest.Options{Safes: 99}, 0},
		{"on small", pamtest.Options{Safes: 10, Internal: pamtest.InternalOn}, 10},
		{"off large", pamtest.Options{Safes: 500, Internal: pamtest.InternalOff}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := pamtest.NewVault(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if v.Internal() != tt.wantInternal {
				t.Fatalf("Internal() = %d, want %d", v.Internal(), tt.wantInternal)
			}
			for i := 0; i < v.Len(); i++ {
				info := v.Info(i)
				if info.Internal != (i < tt.wantInternal) || (info.Class == pamtest.ClassInternal) != info.Internal {
					t.Fatalf("Safe %d %q: Internal %v Class %s", i, info.Name, info.Internal, info.Class)
				}
			}
		})
	}
	v, _ := pamtest.NewVault(pamtest.Options{Safes: 1000})
	want := []string{"System", "VaultInternal", "Notification Engine", "SharedAuth_Internal", "PasswordManager_Pending",
		"TelemetryConfig", "PasswordManager", "PasswordManager_Accounts", "PasswordManager_ADInternal", "PasswordManager_Info",
		"PasswordManager_workspace", "cyberark-connec", "cyberark-connec_Accounts", "cyberark-connec_Pending", "PSMPADBridgeCustom"}
	for _, n := range want {
		i, ok := v.Lookup(n)
		if !ok || i >= v.Internal() || v.Name(i) != n {
			t.Errorf("built-in Safe %q: index %d ok %v", n, i, ok)
		}
	}
	psm, _ := v.Lookup("PSMRecordings")
	if info := v.Info(psm); !info.PSMMember || info.PSMPermissions != pam.Perms(pam.ListAccounts, pam.RetrieveAccounts) {
		t.Errorf("PSMRecordings PSMAppUsers: %+v", info)
	}
}

func TestVisibilityAndUnknownSafe(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 1000, Seed: 9})
	tok := admin(t, srv)
	hidden := findSafe(t, srv.Vault(), func(i pamtest.SafeInfo) bool { return i.Access == pamtest.AccessHidden })
	if st, _ := srv.SafeState(hidden.Name); len(st.Members) == 0 {
		t.Fatalf("hidden Safe %q has no members in the dump", hidden.Name)
	}
	for _, tt := range []struct{ name, safe string }{
		{"hidden", hidden.URLID},
		{"unknown", "No%20Such%20Safe"},
		{"width mismatch", "Finance%20Team%2042"},
		{"double escaped", strings.ReplaceAll(hidden.URLID, "%", "%25")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, rq := range []struct{ method, path, body string }{
				{"GET", "/PasswordVault/API/Safes/" + tt.safe + "/", ""},
				{"GET", "/PasswordVault/API/Safes/" + tt.safe + "/Members", ""},
				{"GET", "/PasswordVault/API/Safes/" + tt.safe + "/Members/Auditors/", ""},
				{"POST", "/PasswordVault/API/Safes/" + tt.safe + "/Members/", `{"memberName":"PSMAppUsers","memberType":"Group"}`},
				{"PUT", "/PasswordVault/API/Safes/" + tt.safe + "/Members/Auditors/", `{"permissions":{}}`},
				{"DELETE", "/PasswordVault/API/Safes/" + tt.safe + "/Members/Auditors/", ""},
			} {
				var body any
				if rq.body != "" {
					body = rq.body
				}
				r := call(t, srv, rq.method, rq.path, tok, body)
				if r.status != 404 || r.apiError(t).ErrorCode != "SFWS0007" {
					t.Errorf("%s %s = %d %s, want 404 SFWS0007", rq.method, rq.path, r.status, r.body)
				}
			}
		})
	}
	names, _, _ := walkSafes(t, srv, tok, "API/Safes?limit=1000", 1000)
	for _, n := range names {
		if n == hidden.Name {
			t.Errorf("hidden Safe %q is listed", n)
		}
	}
}

func TestVaultLookupAndUniqueness(t *testing.T) {
	t.Parallel()
	v, err := pamtest.NewVault(pamtest.Options{Safes: 30000, Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[string]int, v.Len())
	for i := 0; i < v.Len(); i++ {
		name := v.Name(i)
		if len([]rune(name)) > 28 {
			t.Fatalf("Safe name %q longer than 28 characters", name)
		}
		if strings.ContainsAny(name, `\/:*?"<>|%&+`) {
			t.Fatalf("Safe name %q holds a forbidden character", name)
		}
		low := strings.ToLower(name)
		if j, dup := seen[low]; dup {
			t.Fatalf("Safes %d and %d share the name %q", j, i, name)
		}
		seen[low] = i
		for _, variant := range []string{name, strings.ToUpper(name), low} {
			if got, ok := v.Lookup(variant); !ok || got != i {
				t.Fatalf("Lookup(%q) = %d, %v; want %d", variant, got, ok, i)
			}
		}
	}
	for _, n := range []string{"", "Finance Team", "Finance Team 0", "Finance Team 99999999", "db.prod.", "APP_00001", "x"} {
		if i, ok := v.Lookup(n); ok && v.Name(i) != n {
			t.Errorf("Lookup(%q) = %d (%q)", n, i, v.Name(i))
		}
	}
	big := v.Members(findSafe(t, v, func(i pamtest.SafeInfo) bool { return i.Big }).Index)
	n := 0
	for _, m := range big {
		if !m.Predefined {
			n++
		}
	}
	if n != pamtest.DefaultBigMemberCount {
		t.Errorf("big Safe has %d non-predefined members, want %d", n, pamtest.DefaultBigMemberCount)
	}
}

func TestMixFractions(t *testing.T) {
	t.Parallel()
	v, err := pamtest.NewVault(pamtest.Options{Safes: 200_000, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	c := v.Census()
	acct := float64(c.Safes - c.Internal)
	mix := pamtest.DefaultMix()
	for _, tt := range []struct {
		name string
		got  int
		want float64
	}{
		{"compliant", c.Classes[pamtest.ClassCompliant], mix.Compliant},
		{"listOnly", c.Classes[pamtest.ClassListOnly], mix.ListOnly},
		{"listUseRetrieve", c.Classes[pamtest.ClassListUseRetrieve], mix.ListUseRetrieve},
		{"manyFlagsExpiring", c.Classes[pamtest.ClassManyFlagsExpiring], mix.ManyFlagsExpiring},
		{"absent", c.Classes[pamtest.ClassAbsent], mix.Absent},
		{"readOnly", c.Access[pamtest.AccessReadOnly], mix.ReadOnly},
		{"hidden", c.Access[pamtest.AccessHidden], mix.Hidden},
		{"big", c.Big, mix.BigMembers},
		{"cpm both", c.ManagingCPM["PasswordManager,cyberark-connec"], mix.CPMBoth},
		{"cpm none", c.ManagingCPM[""], mix.CPMNone},
	} {
		got := float64(tt.got) / acct
		if sd := math.Sqrt(tt.want * (1 - tt.want) / acct); math.Abs(got-tt.want) > 5*sd+1e-4 {
			t.Errorf("%s fraction = %.4f, want %.4f ± %.4f", tt.name, got, tt.want, 5*sd)
		}
	}
	if c.Classes[pamtest.ClassInternal] != 44 {
		t.Errorf("internal Safes = %d, want 44", c.Classes[pamtest.ClassInternal])
	}
}

func TestDeterminism(t *testing.T) {
	t.Parallel()
	dump := func(seed uint64) []byte {
		srv := newSim(t, pamtest.Options{Safes: 1500, Seed: seed})
		var b bytes.Buffer
		if err := srv.WriteState(context.Background(), &b, pamtest.StateQuery{}); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	a1, a2, b := dump(77), dump(77), dump(78)
	if !bytes.Equal(a1, a2) {
		t.Error("same seed gave different vaults")
	}
	if bytes.Equal(a1, b) {
		t.Error("different seeds gave the same vault")
	}
	if n := bytes.Count(a1, []byte("\n")); n != 1500 {
		t.Errorf("state has %d lines, want 1500", n)
	}
	// The listing is deterministic too.
	s1 := newSim(t, pamtest.Options{Safes: 300, Seed: 77})
	s2 := newSim(t, pamtest.Options{Safes: 300, Seed: 77})
	r1 := call(t, s1, "GET", "/PasswordVault/API/Safes?limit=1000", admin(t, s1), nil)
	r2 := call(t, s2, "GET", "/PasswordVault/API/Safes?limit=1000", admin(t, s2), nil)
	if !bytes.Equal(r1.body, r2.body) {
		t.Error("same seed gave different listings")
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	srv := newSim(t, pamtest.Options{Safes: 10, TLS: true})
	if !strings.HasPrefix(srv.URL, "https://127.0.0.1:") || !strings.HasSuffix(srv.URL, "/PasswordVault") {
		t.Fatalf("URL = %q", srv.URL)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(srv.CACertPEM()) {
		t.Fatal("CACertPEM does not parse")
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer c.CloseIdleConnections()
	res, err := c.Post(srv.URL+"/API/Auth/CyberArk/Logon", "application/json", strings.NewReader(`{"username":"Administrator","password":"Cyberark1"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("logon over TLS: %d", res.StatusCode)
	}
	if _, err := http.Get(srv.URL + "/API/Safes"); err == nil {
		t.Error("an untrusting client connected")
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	bad := pamtest.Options{
		Safes:    -1,
		TokenTTL: -time.Second,
		Mix:      pamtest.Mix{Compliant: -1, ReadOnly: 2},
		Users:    []pamtest.User{{Name: "Administrator"}, {Name: "a+b"}, {Name: "psmappusers"}},
		Faults:   pamtest.Faults{P500: 2, MaxInFlight: -1},
	}
	err := bad.Validate()
	if err == nil {
		t.Fatal("Validate accepted bad options")
	}
	for _, field := range []string{"Options.Safes", "Options.TokenTTL", "Mix.Compliant", "Mix.ReadOnly", "Users[0].Name", "Users[1].Name", "Users[2].Name", "Faults.P500", "Faults.MaxInFlight"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error does not name %s: %v", field, err)
		}
	}
	if err := (pamtest.Options{}).Validate(); err != nil {
		t.Errorf("zero Options invalid: %v", err)
	}
}

func TestLargeVault(t *testing.T) {
	if testing.Short() {
		t.Skip("1M Safes")
	}
	t.Parallel()
	start := time.Now()
	srv := newSim(t, pamtest.Options{Safes: 1_000_000, Seed: 1})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("NewServer(1M) took %s", d)
	}
	t.Logf("NewServer(1M) took %s", time.Since(start))
	tok := admin(t, srv)
	var l safeList
	start = time.Now()
	r := call(t, srv, "GET", "/PasswordVault/API/Safes?offset=980000&limit=1000", tok, nil)
	r.decode(t, &l)
	t.Logf("page at 980000 took %s (%d bytes)", time.Since(start), len(r.body))
	if l.Count < 980_000 || len(l.Value) != 1000 || l.NextLink == nil {
		t.Fatalf("count %d, page %d, nextLink %v", l.Count, len(l.Value), l.NextLink)
	}
	last := l.Value[len(l.Value)-1]
	i, ok := srv.Vault().Lookup(last.SafeName)
	if !ok || i < 980_000 {
		t.Errorf("last Safe %q at index %d", last.SafeName, i)
	}
	final := l.Count - 5
	l = safeList{}
	call(t, srv, "GET", fmt.Sprintf("/PasswordVault/API/Safes?offset=%d&limit=1000", final), tok, nil).decode(t, &l)
	if len(l.Value) != 5 || l.NextLink != nil {
		t.Errorf("final page: %d items, nextLink %v", len(l.Value), l.NextLink)
	}
}
