package pamtest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/pam/pamtest"
)

// newSim starts a simulator that the test closes.
func newSim(t testing.TB, opts pamtest.Options) *pamtest.Server {
	t.Helper()
	srv, err := pamtest.NewServer(opts)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// resp is an HTTP answer.
type resp struct {
	status int
	header http.Header
	body   []byte
}

// apiError is the PVWA error body.
type apiError struct {
	ErrorCode    string
	ErrorMessage string
	Details      []struct{ ErrorCode, ErrorMessage string }
}

func (r resp) apiError(t testing.TB) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", r.body, err)
	}
	return e
}

func (r resp) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %q: %v", truncate(r.body), err)
	}
}

func truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

// call sends a request to srv; path is relative to the server root unless
// it is absolute. body is sent as JSON unless it is a string or []byte.
func call(t testing.TB, srv *pamtest.Server, method, path, auth string, body any) resp {
	t.Helper()
	r, err := tryCall(srv, method, path, auth, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// tryCall is call for goroutines other than the test's: it returns errors.
func tryCall(srv *pamtest.Server, method, path, auth string, body any) (resp, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return resp{}, err
		}
		rd = bytes.NewReader(j)
	}
	u := path
	if !strings.HasPrefix(path, "http") {
		u = srv.IdentityURL + path
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return resp{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		return resp{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return resp{}, err
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}, nil
}

// logon returns the raw token of a PVWA logon.
func logon(t testing.TB, srv *pamtest.Server, user, pass string, concurrent bool) string {
	t.Helper()
	r := call(t, srv, "POST", "/PasswordVault/API/Auth/CyberArk/Logon", "",
		map[string]any{"username": user, "password": pass, "concurrentSession": concurrent})
	if r.status != 200 {
		t.Fatalf("logon %s: HTTP %d %s", user, r.status, r.body)
	}
	var tok string
	r.decode(t, &tok)
	return tok
}

// admin logs the default admin user on with a concurrent session.
func admin(t testing.TB, srv *pamtest.Server) string {
	t.Helper()
	return logon(t, srv, pamtest.DefaultAdminUser, pamtest.DefaultAdminPassword, true)
}

// safeJSON is the Safe object.
type safeJSON struct {
	SafeURLID            string `json:"safeUrlId"`
	SafeName             string `json:"safeName"`
	SafeNumber           int64  `json:"safeNumber"`
	Description          string `json:"description"`
	Location             string `json:"location"`
	Creator              struct{ ID, Name string }
	OLACEnabled          bool            `json:"olacEnabled"`
	ManagingCPM          string          `json:"managingCPM"`
	Versions             *int            `json:"numberOfVersionsRetention"`
	Days                 *int            `json:"numberOfDaysRetention"`
	AutoPurgeEnabled     bool            `json:"autoPurgeEnabled"`
	CreationTime         json.RawMessage `json:"creationTime"`
	LastModificationTime int64           `json:"lastModificationTime"`
	IsExpiredMember      *bool           `json:"isExpiredMember"`
}

type safeList struct {
	Value    []safeJSON `json:"value"`
	Count    int        `json:"count"`
	NextLink *string    `json:"nextLink"`
}

// memberJSON is the member object.
type memberJSON struct {
	SafeURLID   string          `json:"safeUrlId"`
	SafeName    string          `json:"safeName"`
	SafeNumber  int64           `json:"safeNumber"`
	MemberID    json.RawMessage `json:"memberId"`
	MemberName  string          `json:"memberName"`
	MemberType  string          `json:"memberType"`
	Expiration  *int64          `json:"membershipExpirationDate"`
	IsExpired   *bool           `json:"isExpiredMembershipEnable"`
	Predefined  *bool           `json:"isPredefinedUser"`
	ReadOnly    *bool           `json:"isReadOnly"`
	Permissions map[string]bool `json:"permissions"`
}

type memberList struct {
	Value    []memberJSON `json:"value"`
	Count    int          `json:"count"`
	NextLink *string      `json:"nextLink"`
}

// trueFlags returns the names of the true flags of a permissions object.
func trueFlags(p map[string]bool) []string {
	var out []string
	for k, v := range p {
		if v {
			out = append(out, k)
		}
	}
	return out
}

// membersPath is the members URL of a Safe name.
func membersPath(safe string) string {
	return "/PasswordVault/API/Safes/" + url.PathEscape(safe) + "/Members/"
}

// memberPath is the URL of one member.
func memberPath(safe, member string) string {
	return "/PasswordVault/API/Safes/" + url.PathEscape(safe) + "/Members/" + url.PathEscape(member) + "/"
}

// fakeClock is a settable clock for Options.Now.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// findSafe returns the first index in [from, n) whose info satisfies ok.
func findSafe(t testing.TB, v *pamtest.Vault, ok func(pamtest.SafeInfo) bool) pamtest.SafeInfo {
	t.Helper()
	for i := 0; i < v.Len(); i++ {
		if info := v.Info(i); ok(info) {
			return info
		}
	}
	t.Fatalf("no Safe in the vault satisfies the condition")
	return pamtest.SafeInfo{}
}
