package pam

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// pagedSafes serves n Safes named Safe%04d, limit per page, writing nextLink
// with link(offset, limit) while more remain.
func pagedSafes(n int, link func(base string, offset, limit int) string, base *string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		limit, _ := strconv.Atoi(q.Get("limit"))
		offset, _ := strconv.Atoi(q.Get("offset"))
		if limit == 0 {
			limit = 25
		}
		var items []string
		for i := offset; i < min(offset+limit, n); i++ {
			items = append(items, fmt.Sprintf(`{"safeUrlId":"Safe%04d","safeName":"Safe%04d","safeNumber":%d}`, i, i, i))
		}
		body := fmt.Sprintf(`{"value":[%s],"count":%d`, strings.Join(items, ","), n)
		if offset+limit < n {
			body += fmt.Sprintf(`,"nextLink":%q`, link(*base, offset+limit, limit))
		}
		writeRaw(w, 200, body+"}")
	}
}

func TestSafesFollowsNextLink(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		link func(base string, offset, limit int) string
	}{
		{"relative lower case", func(_ string, o, l int) string {
			return fmt.Sprintf("api/safes?offset=%d&limit=%d&useCache=False", o, l)
		}},
		{"relative upper case", func(_ string, o, l int) string {
			return fmt.Sprintf("API/Safes?offset=%d&limit=%d&useCache=False", o, l)
		}},
		{"absolute path", func(_ string, o, l int) string {
			return fmt.Sprintf("/PasswordVault/api/safes?offset=%d&limit=%d", o, l)
		}},
		{"absolute path without base", func(_ string, o, l int) string {
			return fmt.Sprintf("/api/Safes?offset=%d&limit=%d", o, l)
		}},
		{"relative with PasswordVault", func(_ string, o, l int) string {
			return fmt.Sprintf("PasswordVault/API/Safes?offset=%d&limit=%d", o, l)
		}},
		{"absolute URL", func(base string, o, l int) string {
			return fmt.Sprintf("%s/PasswordVault/API/Safes?limit=%d&offset=%d", base, l, o)
		}},
	}
	for _, tt := range tests {
		for _, limit := range []int{1, 7, 25, 1000} {
			t.Run(fmt.Sprintf("%s/limit %d", tt.name, limit), func(t *testing.T) {
				t.Parallel()
				const n = 53
				var base string
				f := newFakePVWA(t, pagedSafes(n, tt.link, &base))
				base = f.srv.URL
				c, _ := newTestClient(t, f, nil)
				safes, err := collect(t, c.Safes(ctxT(t), SafesOptions{Limit: limit}))
				if err != nil {
					t.Fatal(err)
				}
				if len(safes) != n {
					t.Fatalf("got %d Safes, want %d", len(safes), n)
				}
				for i, s := range safes {
					if want := fmt.Sprintf("Safe%04d", i); s.Name != want || s.URLID != want || s.Number != int64(i) {
						t.Fatalf("Safe %d = %+v, want %s", i, s, want)
					}
				}
				if pages, want := len(f.requests()), (n+limit-1)/limit; pages != want {
					t.Errorf("pages requested = %d, want %d", pages, want)
				}
				for _, r := range f.requests() {
					if !strings.HasPrefix(r.URI, "/PasswordVault/") {
						t.Errorf("request outside the base: %s", r.URI)
					}
				}
			})
		}
	}
}

func TestSafesSearchSurvivesNextLink(t *testing.T) {
	t.Parallel()
	var base string
	f := newFakePVWA(t, pagedSafes(5, func(_ string, o, l int) string {
		return fmt.Sprintf("api/safes?offset=%d&limit=%d&useCache=False", o, l) // search dropped
	}, &base))
	c, _ := newTestClient(t, f, nil)
	if _, err := collect(t, c.Safes(ctxT(t), SafesOptions{Limit: 2, Search: "Fin Ops"})); err != nil {
		t.Fatal(err)
	}
	var uris []string
	for _, r := range f.requests() {
		uris = append(uris, r.URI)
	}
	want := []string{
		"/PasswordVault/API/Safes?limit=2&search=Fin%20Ops",
		"/PasswordVault/api/safes?offset=2&limit=2&useCache=False&search=Fin%20Ops",
		"/PasswordVault/api/safes?offset=4&limit=2&useCache=False&search=Fin%20Ops",
	}
	if strings.Join(uris, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(uris, "\n"), strings.Join(want, "\n"))
	}
}

func TestSafesStopsBadPaging(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		pages []string // answers in order
		want  int      // Safes yielded before the error
		err   string
	}{
		{"same link twice", []string{
			`{"value":[{"safeName":"a"}],"nextLink":"api/safes?offset=1&limit=1"}`,
			`{"value":[{"safeName":"b"}],"nextLink":"api/safes?offset=1&limit=1"}`,
		}, 2, "repeats"},
		{"link goes back", []string{
			`{"value":[{"safeName":"a"}],"nextLink":"api/safes?offset=5&limit=1"}`,
			`{"value":[{"safeName":"b"}],"nextLink":"api/safes?offset=2&limit=1"}`,
		}, 2, "goes back"},
		{"empty page with link", []string{
			`{"value":[],"count":9,"nextLink":"api/safes?offset=1&limit=1"}`,
		}, 0, "empty page"},
		{"other host", []string{
			`{"value":[{"safeName":"a"}],"nextLink":"https://elsewhere.example.com/PasswordVault/api/safes?offset=1"}`,
		}, 1, "elsewhere.example.com"},
		{"not JSON", []string{`<html>login</html>`}, 0, "unusable answer"},
		{"no list", []string{`{"count":3}`}, 0, "no list"},
		{"safe without names", []string{`{"value":[{"safeNumber":1}]}`}, 0, "without safeUrlId"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			i := 0
			f := newFakePVWA(t, func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				defer mu.Unlock()
				if i >= len(tt.pages) {
					t.Errorf("request %d after the listing should have stopped: %s", i, r.RequestURI)
					writeRaw(w, 200, `{"value":[]}`)
					return
				}
				writeRaw(w, 200, tt.pages[i])
				i++
			})
			c, _ := newTestClient(t, f, nil)
			got, err := collect(t, c.Safes(ctxT(t), SafesOptions{Limit: 1}))
			var re *ResponseError
			if !errors.As(err, &re) || !strings.Contains(err.Error(), tt.err) || Classify(err) != ClassPermanent {
				t.Fatalf("err = %v, want a *ResponseError about %q", err, tt.err)
			}
			if len(got) != tt.want {
				t.Errorf("yielded %d Safes before the error, want %d", len(got), tt.want)
			}
		})
	}
}

func TestSafesBreakStopsPaging(t *testing.T) {
	t.Parallel()
	var base string
	f := newFakePVWA(t, pagedSafes(100, func(_ string, o, l int) string {
		return fmt.Sprintf("api/safes?offset=%d&limit=%d", o, l)
	}, &base))
	c, _ := newTestClient(t, f, nil)
	n := 0
	for _, err := range c.Safes(ctxT(t), SafesOptions{Limit: 10}) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 15 {
			break
		}
	}
	if pages := len(f.requests()); pages != 2 {
		t.Errorf("pages fetched = %d, want 2", pages)
	}
}

func TestSafeDecodingIsTolerant(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want []Safe
	}{
		{"current shape", `{"value":[{"safeUrlId":"Notification%20Engine","safeName":"Notification Engine","safeNumber":12,"description":"d","managingCPM":"PasswordManager,cyberark-connec","creationTime":1604393826,"lastModificationTime":1604876425326615,"creator":{"id":"2","name":"Administrator"},"olacEnabled":false,"location":"\\","accounts":[{"id":"1_2","name":"x"}]}],"count":1}`,
			[]Safe{{URLID: "Notification%20Engine", Name: "Notification Engine", Number: 12, Description: "d", ManagingCPM: "PasswordManager,cyberark-connec", CreationTime: 1604393826}}},
		{"old shape", `{"Safes":[{"SafeUrlId":"A","SafeName":"A","SafeNumber":"7","Description":null}],"Total":1}`,
			[]Safe{{URLID: "A", Name: "A", Number: 7}}},
		{"odd casing, quoted numbers, unknown keys", `{"@odata.context":{"a":[1,{"b":2}]},"VALUE":[{"SAFEURLID":"B","safename":"B","safeNumber":"42","creationTime":"1604393826"}],"Count":"1","NEXTLINK":null,"x":"y"}`,
			[]Safe{{URLID: "B", Name: "B", Number: 42, CreationTime: 1604393826}}},
		{"no safeUrlId: derived with %20", `{"value":[{"safeName":"Finance Team+1"}]}`,
			[]Safe{{URLID: "Finance%20Team%2B1", Name: "Finance Team+1"}}},
		{"no safeName: decoded", `{"value":[{"safeUrlId":"Test%20Safe_RDP"}]}`,
			[]Safe{{URLID: "Test%20Safe_RDP", Name: "Test Safe_RDP"}}},
		{"garbage numbers read as 0", `{"value":[{"safeName":"C","safeNumber":"n/a","creationTime":true}]}`,
			[]Safe{{URLID: "C", Name: "C"}}},
		{"bare list", `[{"safeName":"D"}]`, []Safe{{URLID: "D", Name: "D"}}},
		{"null list", `{"value":null,"count":0}`, nil},
		{"escaped strings", `{"value":[{"safeName":"Q\"uote\u00e9"}]}`, []Safe{{URLID: "Q%22uote%C3%A9", Name: "Q\"uoteé"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakePVWA(t, func(w http.ResponseWriter, r *http.Request) { writeRaw(w, 200, tt.body) })
			c, _ := newTestClient(t, f, nil)
			got, err := collect(t, c.Safes(ctxT(t), SafesOptions{}))
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestMemberDecodingIsTolerant(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		body    string
		want    string // fmt of the member's key fields
		wantErr bool
	}{
		{"numeric memberId", `{"safeUrlId":"S","safeName":"S","memberId":217,"memberName":"PSMAppUsers","memberType":"Group","membershipExpirationDate":null,"isExpiredMembershipEnable":false,"isPredefinedUser":false,"permissions":{"listAccounts":true,"unlockAccounts":true}}`,
			"S 217 PSMAppUsers Group <nil> listAccounts,unlockAccounts map[] false false", false},
		{"string memberId, expiry number, read-only", `{"memberId":"65","memberName":"u","memberType":"User","membershipExpirationDate":2051222400,"isReadOnly":true,"isPredefinedUser":"true","permissions":{"useAccounts":true}}`,
			"S 65 u User 2051222400 useAccounts map[] true true", false},
		{"expiry as string, odd casing, unknown keys kept", `{"MemberID":"Privilege_Cloud_Admins_ID","MEMBERNAME":"Admins","MemberType":"Group","MembershipExpirationDate":"1999999999","Permissions":{"ListAccounts":true,"UNLOCKACCOUNTS":true,"someNewFlag":true,"other":false,"comment":"x"},"extra":{"a":1}}`,
			"S Privilege_Cloud_Admins_ID Admins Group 1999999999 listAccounts,unlockAccounts map[other:false someNewFlag:true] false false", false},
		{"expiry empty string is none", `{"memberName":"u","membershipExpirationDate":"","permissions":{}}`,
			"S  u  <nil>  map[] false false", false},
		{"no permissions is refused", `{"memberName":"u","memberType":"User"}`, "", true},
		{"bad expiry is refused", `{"memberName":"u","membershipExpirationDate":"12/31/2030","permissions":{}}`, "", true},
		{"non-boolean flag is refused", `{"memberName":"u","permissions":{"listAccounts":"yes"}}`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakePVWA(t, func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/Members") {
					writeRaw(w, 200, `{"value":[`+tt.body+`],"count":1}`)
					return
				}
				writeRaw(w, 200, tt.body)
			})
			c, _ := newTestClient(t, f, nil)
			one, err := c.Member(ctxT(t), "S", "u")
			list, lerr := collect(t, c.Members(ctxT(t), "S"))
			if tt.wantErr {
				var re *ResponseError
				if !errors.As(err, &re) || !errors.As(lerr, &re) {
					t.Fatalf("errors = %v / %v, want *ResponseError", err, lerr)
				}
				return
			}
			if err != nil || lerr != nil {
				t.Fatalf("errors: %v / %v", err, lerr)
			}
			if len(list) != 1 {
				t.Fatalf("list has %d members", len(list))
			}
			for _, m := range []Member{one, list[0]} {
				exp := "<nil>"
				if m.Expiration != nil {
					exp = fmt.Sprint(*m.Expiration)
				}
				got := fmt.Sprintf("%s %s %s %s %s %s %v %v %v", m.SafeURLID, m.ID, m.Name, m.Type, exp, m.Permissions, m.ExtraPermissions, m.IsReadOnly, m.IsPredefined)
				if got != tt.want {
					t.Errorf("got  %s\nwant %s", got, tt.want)
				}
			}
		})
	}
}

func TestMembersPaging(t *testing.T) {
	t.Parallel()
	const n = 60
	member := func(i int) string {
		return fmt.Sprintf(`{"memberName":"m%02d","memberType":"User","permissions":{"listAccounts":true}}`, i)
	}
	tests := []struct {
		name  string
		serve func(offset, limit int) string
		limit int
		pages int
	}{
		{"offset and count", func(o, l int) string {
			var items []string
			for i := o; i < min(o+l, n); i++ {
				items = append(items, member(i))
			}
			return fmt.Sprintf(`{"value":[%s],"count":%d}`, strings.Join(items, ","), n)
		}, 25, 3},
		{"nextLink", func(o, l int) string {
			var items []string
			for i := o; i < min(o+l, n); i++ {
				items = append(items, member(i))
			}
			link := ""
			if o+l < n {
				link = fmt.Sprintf(`,"nextLink":"api/Safes/S%%20x/Members?offset=%d&limit=%d"`, o+l, l)
			}
			return fmt.Sprintf(`{"value":[%s]%s}`, strings.Join(items, ","), link)
		}, 25, 3},
		{"no count: until a short page", func(o, l int) string {
			var items []string
			for i := o; i < min(o+l, n); i++ {
				items = append(items, member(i))
			}
			return fmt.Sprintf(`{"value":[%s]}`, strings.Join(items, ","))
		}, 20, 4},
		{"server caps the page", func(o, l int) string {
			var items []string
			for i := o; i < min(o+10, n); i++ {
				items = append(items, member(i))
			}
			return fmt.Sprintf(`{"value":[%s],"count":%d}`, strings.Join(items, ","), n)
		}, 1000, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakePVWA(t, func(w http.ResponseWriter, r *http.Request) {
				q := r.URL.Query()
				o, _ := strconv.Atoi(q.Get("offset"))
				l, _ := strconv.Atoi(q.Get("limit"))
				writeRaw(w, 200, tt.serve(o, l))
			})
			c, _ := newTestClient(t, f, func(cfg *Config) { cfg.MembersPageSize = tt.limit })
			got, err := collect(t, c.Members(ctxT(t), "S%20x"))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != n {
				t.Fatalf("got %d members, want %d", len(got), n)
			}
			for i, m := range got {
				if m.Name != fmt.Sprintf("m%02d", i) || m.SafeURLID != "S%20x" {
					t.Fatalf("member %d = %+v", i, m)
				}
			}
			reqs := f.requests()
			if len(reqs) != tt.pages {
				t.Errorf("pages = %d, want %d", len(reqs), tt.pages)
			}
			for _, r := range reqs {
				if !strings.Contains(r.URI, "/S%20x/Members?") {
					t.Errorf("page URI %s", r.URI)
				}
			}
		})
	}
}
