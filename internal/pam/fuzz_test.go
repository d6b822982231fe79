package pam

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/safeperm/safeperm/internal/secret"
)

func TestResolveLink(t *testing.T) {
	t.Parallel()
	tests := []struct {
		base, link string
		path, q    string // "" path means an error
	}{
		{"https://pvwa.example.com", "api/safes?offset=25&limit=25&useCache=False", "/PasswordVault/api/safes", "offset=25&limit=25&useCache=False"},
		{"https://pvwa.example.com", "API/Safes?offset=1", "/PasswordVault/API/Safes", "offset=1"},
		{"https://pvwa.example.com", "./api/safes?offset=1", "/PasswordVault/api/safes", "offset=1"},
		{"https://pvwa.example.com", "/PasswordVault/api/safes?offset=1", "/PasswordVault/api/safes", "offset=1"},
		{"https://pvwa.example.com", "/passwordvault/API/Safes?offset=1", "/passwordvault/API/Safes", "offset=1"},
		{"https://pvwa.example.com", "/api/safes?offset=1", "/PasswordVault/api/safes", "offset=1"},
		{"https://pvwa.example.com", "PasswordVault/api/safes?offset=1", "/PasswordVault/api/safes", "offset=1"},
		{"https://pvwa.example.com", "https://PVWA.example.com:443/PasswordVault/api/safes?offset=1#frag", "/PasswordVault/api/safes", "offset=1"},
		{"https://pvwa.example.com", "https://other.example.com/PasswordVault/api/safes?offset=1", "", ""},
		{"https://pvwa.example.com", "http://pvwa.example.com/PasswordVault/api/safes?offset=1", "", ""},
		{"https://pvwa.example.com", "api/safes/Finance%20Team/members?offset=2&search=a b", "/PasswordVault/api/safes/Finance%20Team/members", "offset=2&search=a%20b"},
		{"https://proxy.example.com/pam", "api/safes?offset=1", "/pam/PasswordVault/api/safes", "offset=1"},
		{"https://proxy.example.com/pam", "/PasswordVault/api/safes?offset=1", "/pam/PasswordVault/api/safes", "offset=1"},
		{"https://proxy.example.com/pam", "/pam/PasswordVault/api/safes?offset=1", "/pam/PasswordVault/api/safes", "offset=1"},
	}
	for _, tt := range tests {
		c, err := New(Config{BaseURL: tt.base, Username: "u", Password: secret.New("p")})
		if err != nil {
			t.Fatal(err)
		}
		path, q, err := c.resolveLink(tt.link)
		if tt.path == "" {
			if err == nil {
				t.Errorf("resolveLink(%q) = %q, %q; want an error", tt.link, path, q)
			}
			continue
		}
		if err != nil || path != tt.path || q != tt.q {
			t.Errorf("resolveLink(%q) on %s = %q, %q, %v; want %q, %q", tt.link, tt.base, path, q, err, tt.path, tt.q)
		}
	}
}

// FuzzResolveLink: whatever the server sends as nextLink, the request stays
// on the PVWA, under the base path, with a path and query net/url sends as
// they are.
func FuzzResolveLink(f *testing.F) {
	for _, s := range []string{"api/safes?offset=25&limit=25&useCache=False", "/PasswordVault/API/Safes?x", "https://pvwa/PasswordVault/a?b#c", "//evil/x", "../../etc?%zz", "a b/ü?ü#", "https://evil:443/x", "/PasswordVault/../x"} {
		f.Add(s)
	}
	c, err := New(Config{BaseURL: "https://pvwa", Username: "u", Password: secret.New("p")})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, link string) {
		path, q, err := c.resolveLink(link)
		if err != nil {
			return
		}
		if !hasPrefixFold(path, "/PasswordVault/") && !strings.EqualFold(path, "/PasswordVault") {
			t.Fatalf("resolveLink(%q) path %q leaves the base", link, path)
		}
		u := &url.URL{Scheme: "https", Host: "pvwa", Path: unescapePath(path), RawPath: path, RawQuery: q}
		if got := u.EscapedPath(); got != path {
			t.Fatalf("net/url would send %q instead of %q", got, path)
		}
		if strings.ContainsAny(q, " #\r\n\t") {
			t.Fatalf("query %q has raw blanks or #", q)
		}
	})
}

// FuzzEscapeMemberName: a member name escapes to one segment that net/url
// leaves alone and that decodes back to the name.
func FuzzEscapeMemberName(f *testing.F) {
	for _, s := range []string{"PSMAppUsers", "john.doe@corp.example", "a+b&c%d/e?f#g", "Zoë Müller", "..", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		for _, esc := range []string{escapeMemberName(name), EscapeSafeName(name)} {
			if strings.ContainsAny(esc, "/?#+& ") {
				t.Fatalf("%q escaped to %q", name, esc)
			}
			back, err := url.PathUnescape(esc)
			if err != nil || back != name {
				t.Fatalf("%q escaped to %q decodes to %q, %v", name, esc, back, err)
			}
			if cleanEncoded(esc, encSegment) != esc {
				t.Fatalf("%q is not a clean segment", esc)
			}
		}
	})
}

// FuzzDecodePage: any answer decodes or fails, never panics, and every item
// the callback saw is counted.
func FuzzDecodePage(f *testing.F) {
	for _, s := range []string{
		`{"value":[{"safeName":"a"}],"count":1,"nextLink":"api/safes?offset=1"}`,
		`{"Safes":[{"SafeName":"a"}],"Total":"1"}`,
		`[{"safeName":"a"}]`, `{"value":null}`, `{"value":{}}`, `<html>`, ``, `{"x":[[[{}]]],"value":[]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		pi, err := decodePage(bytes.NewReader(b), safeListKeys, func(dec *json.Decoder) error {
			var w wireSafe
			if err := dec.Decode(&w); err != nil {
				return err
			}
			n++
			return nil
		})
		if err == nil && pi.items != n {
			t.Fatalf("items %d, callback saw %d", pi.items, n)
		}
	})
}

// FuzzParseErrorBody: the message is short, valid UTF-8 text without tags.
func FuzzParseErrorBody(f *testing.F) {
	for _, s := range []string{iisPage, `{"ErrorCode":"X","ErrorMessage":"m","Details":[{"ErrorCode":"Y"}]}`, `{"error":"e","error_description":"d"}`, `"s"`, `<b>x<i`, "\xff<", `{"code":{"a":1}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, msg, _ := parseErrorBody(b)
		if utf8.RuneCountInString(msg) > maxMessage+1 {
			t.Fatalf("message of %d runes", utf8.RuneCountInString(msg))
		}
		if !bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) && !bytes.HasPrefix(bytes.TrimSpace(b), []byte(`"`)) && strings.ContainsAny(msg, "\n\t") {
			t.Fatalf("excerpt %q keeps raw white space", msg)
		}
	})
}
