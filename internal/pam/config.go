package pam

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/secret"
)

// Authentication methods for Config.Auth.
const (
	// AuthCyberArk, AuthLDAP and AuthRADIUS log on with Username and
	// Password at /API/Auth/{CyberArk|LDAP|RADIUS}/Logon.
	AuthCyberArk = "cyberark"
	AuthLDAP     = "ldap"
	AuthRADIUS   = "radius"
	// AuthWindows posts to /API/Auth/Windows/Logon with no credentials in
	// the body: IIS authenticates the connection itself (Negotiate/NTLM).
	// Go's standard library does not speak Negotiate, so this only works
	// with an HTTPClient whose transport does, or behind a proxy that
	// authenticates for us; a two-step answer (AdditionalInfo) is refused.
	AuthWindows = "windows"
	// AuthIdentity is a Privilege Cloud (ISPSS) service user: an OAuth
	// client-credentials token from IdentityURL, sent as "Bearer <token>".
	AuthIdentity = "identity"
)

// authPathNames maps Config.Auth to the casing of the Logon path segment.
var authPathNames = map[string]string{
	AuthCyberArk: "CyberArk",
	AuthLDAP:     "LDAP",
	AuthRADIUS:   "RADIUS",
	AuthWindows:  "Windows",
	AuthIdentity: "",
}

// Defaults applied by New to zero fields of Config.
const (
	DefaultAuth            = AuthCyberArk
	DefaultTimeout         = 30 * time.Second
	DefaultSafesPageSize   = 1000
	DefaultMembersPageSize = 1000
	DefaultUserAgent       = "safeperm"
)

// Transport tuning used when New builds the HTTP client.
const (
	dialTimeout         = 10 * time.Second
	tlsHandshakeTimeout = 10 * time.Second
	idleConnTimeout     = 90 * time.Second
	maxIdleConnsPerHost = 128
)

// Limiter paces requests. Wait blocks until one request may go or ctx ends.
// *golang.org/x/time/rate.Limiter satisfies it.
type Limiter interface {
	Wait(ctx context.Context) error
}

// CallInfo describes one HTTP request the client made, for metrics.
type CallInfo struct {
	// Route is the method and path template, e.g.
	// "GET /API/Safes/{id}/Members/{name}" or "POST /oauth2/platformtoken".
	Route string
	// Status is the HTTP status, 0 when no answer came (transport error,
	// timeout, canceled context).
	Status int
	// Duration is the time from sending the request to having read the
	// answer.
	Duration time.Duration
	// Attempt is 1, or 2 for the replay after a fresh logon.
	Attempt int
	// Err is the error of this request, nil on success.
	Err error
}

// Config configures a Client. The zero value of every optional field is a
// documented default; New validates it all at once.
type Config struct {
	// BaseURL is the PVWA address, e.g. "https://pvwa.example.com". It may
	// end with /PasswordVault (any case) and a slash; a path prefix in
	// front of /PasswordVault (reverse proxy) is kept. Required. It must be
	// http or https with a host and no user info, query or fragment.
	BaseURL string
	// Auth is the logon method: cyberark (default), ldap, radius, windows or
	// identity, case-insensitive.
	Auth string
	// Username and Password are the vault credentials for cyberark, ldap
	// and radius (required there, unused otherwise).
	Username string
	Password secret.Value
	// IdentityURL is the Identity tenant, e.g.
	// "https://abc1234.id.cyberark.cloud", for Auth identity (required
	// there). A trailing /oauth2/platformtoken is accepted.
	IdentityURL string
	// ClientID and ClientSecret are the Identity service user's
	// credentials for Auth identity (required there).
	ClientID     string
	ClientSecret secret.Value
	// CAFile is a PEM file of extra CA certificates to trust besides the
	// system pool, for a PVWA with a private CA.
	CAFile string
	// InsecureSkipVerify turns off TLS certificate verification. For labs
	// only; New logs a warning.
	InsecureSkipVerify bool
	// Timeout bounds each HTTP request, answer included (default 30s). The
	// caller's context bounds the whole call.
	Timeout time.Duration
	// SafesPageSize is the limit of each GET /API/Safes page when
	// SafesOptions.Limit is 0 (default 1000, the largest the PVWA is known
	// to honour).
	SafesPageSize int
	// MembersPageSize is the limit of each Safe members page (default 1000).
	MembersPageSize int
	// UserAgent is sent with every request (default "safeperm").
	UserAgent string
	// Logger receives the client's logs; the zero value logs nothing.
	// Credentials and tokens are never logged.
	Logger zerolog.Logger
	// HTTPClient replaces the HTTP client New would build (tests, special
	// transports). CAFile and InsecureSkipVerify cannot be combined with
	// it. Its redirect policy is used as is; New's client follows none.
	HTTPClient *http.Client
	// Limiter, when set, is waited on before every HTTP request, logons and
	// replays included.
	Limiter Limiter
	// WrapTransport, when set, wraps the HTTP transport (New's own or
	// HTTPClient's) so middleware sees every request: adaptive concurrency,
	// a shared rate budget, metrics. It is called once, from New.
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Observe, when set, is called after every HTTP request, from the
	// goroutine that made it. It must be safe for concurrent use and fast.
	Observe func(CallInfo)
	// Now is the clock that decides when an Identity token is renewed
	// (default time.Now); tests replace it.
	Now func() time.Time
}

// FieldError is one problem with one Config field.
type FieldError struct {
	// Field is the Config field name, e.g. "BaseURL".
	Field string
	// Value is the offending value, with any credential redacted; empty
	// for secrets and missing values.
	Value string
	// Problem says what is wrong.
	Problem string
}

// Error names the field, the value (if any) and the problem.
func (e *FieldError) Error() string {
	if e.Value == "" {
		return e.Field + ": " + e.Problem
	}
	return fmt.Sprintf("%s %q: %s", e.Field, e.Value, e.Problem)
}

// ConfigError lists every problem New found in a Config.
type ConfigError struct {
	Problems []*FieldError
}

// Error lists every problem on one line.
func (e *ConfigError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Error()
	}
	return "pam: invalid config: " + strings.Join(parts, "; ")
}

// Unwrap returns the problems, so errors.As finds each *FieldError.
func (e *ConfigError) Unwrap() []error {
	out := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		out[i] = p
	}
	return out
}

// settings is a validated, normalized Config.
type settings struct {
	base       *url.URL // scheme, host and Path ".../PasswordVault"
	authType   string   // one of the Auth constants
	authPath   string   // "CyberArk", "LDAP", "RADIUS" or "Windows"
	tokenURL   *url.URL // identity only: .../oauth2/platformtoken
	httpClient *http.Client
	timeout    time.Duration
	safesLimit int
	membersLim int
	userAgent  string
	warnings   []string
}

// validate checks cfg and returns the normalized settings or every problem.
func (cfg *Config) validate() (*settings, error) {
	var probs []*FieldError
	bad := func(field, value, problem string) {
		probs = append(probs, &FieldError{Field: field, Value: value, Problem: problem})
	}
	s := &settings{}

	base, problem := normalizeBaseURL(cfg.BaseURL)
	if problem != "" {
		bad("BaseURL", redactURL(cfg.BaseURL), problem)
	}
	s.base = base

	auth := strings.ToLower(strings.TrimSpace(cfg.Auth))
	if auth == "" {
		auth = DefaultAuth
	}
	if p, ok := authPathNames[auth]; ok {
		s.authType, s.authPath = auth, p
	} else {
		bad("Auth", cfg.Auth, "must be one of cyberark, ldap, radius, windows, identity")
	}

	switch s.authType {
	case AuthCyberArk, AuthLDAP, AuthRADIUS:
		if strings.TrimSpace(cfg.Username) == "" {
			bad("Username", "", "is required for auth "+s.authType)
		}
		if cfg.Password.IsZero() {
			bad("Password", "", "is required for auth "+s.authType)
		}
	case AuthIdentity:
		if strings.TrimSpace(cfg.IdentityURL) == "" {
			bad("IdentityURL", "", "is required for auth identity")
		} else if u, problem := normalizeIdentityURL(cfg.IdentityURL); problem != "" {
			bad("IdentityURL", redactURL(cfg.IdentityURL), problem)
		} else {
			s.tokenURL = u
		}
		if strings.TrimSpace(cfg.ClientID) == "" {
			bad("ClientID", "", "is required for auth identity")
		}
		if cfg.ClientSecret.IsZero() {
			bad("ClientSecret", "", "is required for auth identity")
		}
	}

	switch {
	case cfg.Timeout < 0:
		bad("Timeout", cfg.Timeout.String(), "must not be negative")
	case cfg.Timeout == 0:
		s.timeout = DefaultTimeout
	default:
		s.timeout = cfg.Timeout
	}
	s.safesLimit = orDefault(cfg.SafesPageSize, DefaultSafesPageSize)
	if cfg.SafesPageSize < 0 {
		bad("SafesPageSize", fmt.Sprint(cfg.SafesPageSize), "must not be negative")
	}
	s.membersLim = orDefault(cfg.MembersPageSize, DefaultMembersPageSize)
	if cfg.MembersPageSize < 0 {
		bad("MembersPageSize", fmt.Sprint(cfg.MembersPageSize), "must not be negative")
	}
	s.userAgent = cfg.UserAgent
	if s.userAgent == "" {
		s.userAgent = DefaultUserAgent
	}

	if cfg.HTTPClient != nil {
		if cfg.CAFile != "" {
			bad("CAFile", cfg.CAFile, "cannot be combined with HTTPClient; configure that client's TLS instead")
		}
		if cfg.InsecureSkipVerify {
			bad("InsecureSkipVerify", "", "cannot be combined with HTTPClient; configure that client's TLS instead")
		}
		s.httpClient = cfg.HTTPClient
	} else {
		var pool *x509.CertPool
		if cfg.CAFile != "" {
			var problem string
			if pool, problem = loadCAFile(cfg.CAFile); problem != "" {
				bad("CAFile", cfg.CAFile, problem)
			}
		}
		s.httpClient = newHTTPClient(pool, cfg.InsecureSkipVerify, s.timeout)
	}
	if cfg.WrapTransport != nil {
		hc := *s.httpClient
		if hc.Transport == nil {
			hc.Transport = http.DefaultTransport
		}
		hc.Transport = cfg.WrapTransport(hc.Transport)
		s.httpClient = &hc
	}
	if cfg.InsecureSkipVerify {
		s.warnings = append(s.warnings, "TLS certificate verification is off (InsecureSkipVerify): anyone on the path can read the credentials")
	}
	if s.base != nil && s.base.Scheme == "http" {
		s.warnings = append(s.warnings, "BaseURL uses plain http: credentials and session token travel unencrypted")
	}

	if len(probs) > 0 {
		return nil, &ConfigError{Problems: probs}
	}
	return s, nil
}

func orDefault(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// normalizeBaseURL returns the PVWA base as scheme://host[:port][/prefix]/PasswordVault.
func normalizeBaseURL(raw string) (*url.URL, string) {
	u, problem := parseHTTPURL(raw)
	if problem != "" {
		return nil, problem
	}
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(segs) == 1 && segs[0] == "" {
		segs = nil
	}
	for i, sg := range segs {
		if strings.EqualFold(sg, "PasswordVault") && i != len(segs)-1 {
			return nil, "must end at /PasswordVault, without an API path"
		}
	}
	if n := len(segs); n > 0 && strings.EqualFold(segs[n-1], "PasswordVault") {
		segs[n-1] = "PasswordVault"
	} else {
		segs = append(segs, "PasswordVault")
	}
	u.Path = "/" + strings.Join(segs, "/")
	u.RawPath = ""
	return u, ""
}

// normalizeIdentityURL returns the platform token endpoint of an Identity
// tenant given as its base URL (or the endpoint itself).
func normalizeIdentityURL(raw string) (*url.URL, string) {
	u, problem := parseHTTPURL(raw)
	if problem != "" {
		return nil, problem
	}
	p := strings.TrimRight(u.Path, "/")
	const endpoint = "/oauth2/platformtoken"
	if len(p) >= len(endpoint) && strings.EqualFold(p[len(p)-len(endpoint):], endpoint) {
		p = p[:len(p)-len(endpoint)]
	}
	u.Path = p + endpoint
	u.RawPath = ""
	return u, ""
}

func parseHTTPURL(raw string) (*url.URL, string) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, "is required"
	}
	u, err := url.Parse(raw)
	if err != nil {
		// The parse error quotes the URL, which may hold credentials.
		return nil, "is not a valid URL"
	}
	u.Scheme = strings.ToLower(u.Scheme)
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, "must be an http or https URL"
	case u.Opaque != "" || u.Hostname() == "":
		return nil, "has no host"
	case u.User != nil:
		return nil, "must not contain user info; put credentials in their own fields"
	case u.RawQuery != "" || u.ForceQuery:
		return nil, "must not have a query"
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, "must not have a fragment"
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}, ""
}

// redactURL returns raw fit for an error message: any password in user info
// is replaced, and an unparsable value that might hold one is hidden.
func redactURL(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		if strings.Contains(raw, "@") {
			return secret.Redacted
		}
		return raw
	}
	if u.User != nil {
		u.User = url.User(secret.Redacted)
	}
	return u.String()
}

func loadCAFile(path string) (*x509.CertPool, string) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, "cannot be read: " + err.Error()
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, "holds no PEM certificate"
	}
	return pool, ""
}

// newHTTPClient builds the client used when Config.HTTPClient is nil: TLS
// verified against the system pool (plus pool), connections kept alive and
// reused, no redirects followed (a PVWA API answer is never a redirect; a
// redirect to a login page would otherwise look like a success), cookies kept
// so that a load balancer's sticky cookie routes every request to the PVWA
// node that issued the session token.
func newHTTPClient(pool *x509.CertPool, insecure bool, timeout time.Duration) *http.Client {
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   dialTimeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          4 * maxIdleConnsPerHost,
		MaxIdleConnsPerHost:   maxIdleConnsPerHost,
		IdleConnTimeout:       idleConnTimeout,
		TLSHandshakeTimeout:   tlsHandshakeTimeout,
		ResponseHeaderTimeout: timeout,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig: &tls.Config{
			MinVersion:         tls.VersionTLS12,
			RootCAs:            pool,
			InsecureSkipVerify: insecure, //nolint:gosec // opt-in, warned about at New
		},
	}
	jar, _ := cookiejar.New(nil) // never fails with nil options
	return &http.Client{
		Transport: tr,
		Jar:       jar,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
