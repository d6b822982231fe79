package pam

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/secret"
	"github.com/safeperm/safeperm/internal/testutil"
)

func TestNewNormalizesBaseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
	}{
		{"https://pvwa.example.com", "https://pvwa.example.com/PasswordVault"},
		{"https://pvwa.example.com/", "https://pvwa.example.com/PasswordVault"},
		{"https://pvwa.example.com/PasswordVault", "https://pvwa.example.com/PasswordVault"},
		{"https://pvwa.example.com/PasswordVault/", "https://pvwa.example.com/PasswordVault"},
		{"https://pvwa.example.com/passwordvault//", "https://pvwa.example.com/PasswordVault"},
		{"HTTPS://pvwa.example.com:8443/PasswordVault", "https://pvwa.example.com:8443/PasswordVault"},
		{"  https://pvwa.example.com  ", "https://pvwa.example.com/PasswordVault"},
		{"https://proxy.example.com/cyberark", "https://proxy.example.com/cyberark/PasswordVault"},
		{"https://proxy.example.com/cyberark/PasswordVault/", "https://proxy.example.com/cyberark/PasswordVault"},
		{"http://10.0.0.5", "http://10.0.0.5/PasswordVault"},
		{"https://[::1]:443/", "https://[::1]:443/PasswordVault"},
		{"https://proxy.example.com/my%20pam/", "https://proxy.example.com/my%20pam/PasswordVault"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			c, err := New(Config{BaseURL: tt.in, Username: "u", Password: secret.New("p")})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if got := c.BaseURL(); got != tt.want {
				t.Errorf("BaseURL() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNewReportsEveryProblem(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		cfg    Config
		fields []string // every field named, in order
		not    []string // text that must not appear (secrets)
	}{
		{
			name:   "empty",
			cfg:    Config{},
			fields: []string{"BaseURL", "Username", "Password"},
		},
		{
			name:   "bad scheme and auth",
			cfg:    Config{BaseURL: "ftp://pvwa", Auth: "kerberos"},
			fields: []string{"BaseURL", "Auth"},
		},
		{
			name:   "user info is refused and redacted",
			cfg:    Config{BaseURL: "https://admin:hunter2-pw@pvwa/", Username: "u", Password: secret.New("p")},
			fields: []string{"BaseURL"},
			not:    []string{"hunter2-pw"},
		},
		{
			name:   "query, fragment",
			cfg:    Config{BaseURL: "https://pvwa/PasswordVault?x=1", Username: "u", Password: secret.New("p")},
			fields: []string{"BaseURL"},
		},
		{
			name:   "fragment",
			cfg:    Config{BaseURL: "https://pvwa/#top", Username: "u", Password: secret.New("p")},
			fields: []string{"BaseURL"},
		},
		{
			name:   "no host",
			cfg:    Config{BaseURL: "https:///PasswordVault", Username: "u", Password: secret.New("p")},
			fields: []string{"BaseURL"},
		},
		{
			name:   "api path",
			cfg:    Config{BaseURL: "https://pvwa/PasswordVault/API/Safes", Username: "u", Password: secret.New("p")},
			fields: []string{"BaseURL"},
		},
		{
			name:   "identity needs its fields",
			cfg:    Config{BaseURL: "https://x.privilegecloud.cyberark.cloud", Auth: "IDENTITY"},
			fields: []string{"IdentityURL", "ClientID", "ClientSecret"},
		},
		{
			name:   "identity URL must be http(s)",
			cfg:    Config{BaseURL: "https://pc", Auth: "identity", IdentityURL: "abc.id.cyberark.cloud", ClientID: "c", ClientSecret: secret.New("s")},
			fields: []string{"IdentityURL"},
		},
		{
			name:   "numbers",
			cfg:    Config{BaseURL: "https://pvwa", Username: "u", Password: secret.New("p"), Timeout: -time.Second, SafesPageSize: -1, MembersPageSize: -2},
			fields: []string{"Timeout", "SafesPageSize", "MembersPageSize"},
		},
		{
			name:   "CA file missing",
			cfg:    Config{BaseURL: "https://pvwa", Username: "u", Password: secret.New("p"), CAFile: filepath.Join(dir, "missing.pem")},
			fields: []string{"CAFile"},
		},
		{
			name:   "CA file not PEM",
			cfg:    Config{BaseURL: "https://pvwa", Username: "u", Password: secret.New("p"), CAFile: notPEM},
			fields: []string{"CAFile"},
		},
		{
			name:   "HTTPClient excludes TLS options",
			cfg:    Config{BaseURL: "https://pvwa", Username: "u", Password: secret.New("p"), HTTPClient: &http.Client{}, CAFile: notPEM, InsecureSkipVerify: true},
			fields: []string{"CAFile", "InsecureSkipVerify"},
		},
		{
			name:   "password never echoed",
			cfg:    Config{BaseURL: "gopher://x", Username: "", Password: secret.New("Sekr1t-Value")},
			fields: []string{"BaseURL", "Username"},
			not:    []string{"Sekr1t-Value"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := New(tt.cfg)
			if err == nil {
				t.Fatalf("New succeeded (%v), want errors on %v", c.BaseURL(), tt.fields)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %v is not a *ConfigError", err, err)
			}
			var got []string
			for _, p := range ce.Problems {
				got = append(got, p.Field)
			}
			if !slices.Equal(got, tt.fields) {
				t.Errorf("fields = %v, want %v (error: %v)", got, tt.fields, err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.fields[0] {
				t.Errorf("errors.As(*FieldError) = %v, want field %s", fe, tt.fields[0])
			}
			for _, s := range tt.not {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q contains %q", err, s)
				}
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	t.Parallel()
	c, err := New(Config{BaseURL: "https://pvwa", Auth: "LDAP", Username: "u", Password: secret.New("p")})
	if err != nil {
		t.Fatal(err)
	}
	if c.s.authPath != "LDAP" || c.s.timeout != DefaultTimeout || c.s.safesLimit != 1000 || c.s.membersLim != 1000 || c.s.userAgent != DefaultUserAgent {
		t.Errorf("settings = %+v", c.s)
	}
	tr, ok := c.s.httpClient.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("transport is %T", c.s.httpClient.Transport)
	}
	if tr.MaxIdleConnsPerHost < 64 || tr.TLSClientConfig.InsecureSkipVerify || tr.ResponseHeaderTimeout != DefaultTimeout ||
		tr.TLSHandshakeTimeout == 0 || tr.IdleConnTimeout == 0 || tr.DisableKeepAlives {
		t.Errorf("transport not tuned: %+v", tr)
	}
	for in, want := range map[string]string{"cyberark": "CyberArk", "RADIUS": "RADIUS", "Windows": "Windows", "": "CyberArk"} {
		c, err := New(Config{BaseURL: "https://pvwa", Auth: in, Username: "u", Password: secret.New("p")})
		if err != nil {
			t.Fatal(err)
		}
		if c.s.authPath != want {
			t.Errorf("Auth %q: path %q, want %q", in, c.s.authPath, want)
		}
	}
	c, err = New(Config{BaseURL: "https://pc", Auth: "identity", IdentityURL: "https://abc1234.id.cyberark.cloud/oauth2/platformtoken/", ClientID: "c", ClientSecret: secret.New("s")})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.s.tokenURL.String(); got != "https://abc1234.id.cyberark.cloud/oauth2/platformtoken" {
		t.Errorf("token URL = %q", got)
	}
}

func TestNewWarnsAboutInsecureTLS(t *testing.T) {
	t.Parallel()
	logs := &testutil.Buffer{}
	cfg := testConfig("http://pvwa", logs)
	cfg.InsecureSkipVerify = true
	if _, err := New(cfg); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "InsecureSkipVerify") || !strings.Contains(out, "plain http") || !strings.Contains(out, `"level":"warn"`) {
		t.Errorf("missing warnings in log:\n%s", out)
	}
}
