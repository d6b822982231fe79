package cliconf

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/secret"
)

// Secret variables read by the commands. They have no flags: a secret on the
// command line would show in the process list.
const (
	EnvPassword     = "SAFEPERM_PASSWORD"
	EnvClientSecret = "SAFEPERM_CLIENT_SECRET"
	EnvNATSPassword = "SAFEPERM_NATS_PASSWORD"
)

// AuthMethods are the values of --auth.
var AuthMethods = []string{"cyberark", "ldap", "radius", "windows", "identity"}

// PVWA holds the flags that say how to reach and log on to the PVWA. The
// planner and the worker share them.
type PVWA struct {
	URL              string
	Auth             string
	User             string
	PasswordFile     string
	IdentityURL      string
	ClientID         string
	ClientSecretFile string
	CAFile           string
	Insecure         bool
	Timeout          time.Duration
}

// Register defines the PVWA flags on fs.
func (p *PVWA) Register(fs *FlagSet) {
	fs.StringVar(&p.URL, "pvwa-url", "", "PVWA base URL, with or without /PasswordVault (e.g. https://pvwa.example.com)")
	fs.StringVar(&p.Auth, "auth", "cyberark", "logon method: "+strings.Join(AuthMethods, "|")+" (identity = Privilege Cloud service user, OAuth client credentials)")
	fs.StringVar(&p.User, "user", "", "PVWA user name (not used with --auth identity)")
	fs.StringVar(&p.PasswordFile, "password-file", "", "file holding the PVWA password (else "+EnvPassword+")")
	fs.StringVar(&p.IdentityURL, "identity-url", "", "Identity tenant URL for --auth identity (e.g. https://abc1234.id.cyberark.cloud)")
	fs.StringVar(&p.ClientID, "client-id", "", "service user for --auth identity (e.g. safeperm@cyberark.cloud.12345)")
	fs.StringVar(&p.ClientSecretFile, "client-secret-file", "", "file holding the service user's secret (else "+EnvClientSecret+")")
	fs.StringVar(&p.CAFile, "ca-file", "", "PEM file with the private CA that signed the PVWA certificate")
	fs.BoolVar(&p.Insecure, "insecure-skip-verify", false, "do not verify the PVWA TLS certificate (testing only; logged as a warning)")
	fs.DurationVar(&p.Timeout, "pvwa-timeout", 30*time.Second, "timeout of one PVWA request")
	fs.SecretEnv(EnvPassword, "PVWA password (or --password-file)")
	fs.SecretEnv(EnvClientSecret, "Privilege Cloud service user secret (or --client-secret-file)")
}

// PVWASettings is the validated PVWA configuration with secrets loaded.
type PVWASettings struct {
	URL          string
	Auth         string
	User         string
	Password     secret.Value
	IdentityURL  string
	ClientID     string
	ClientSecret secret.Value
	CAFile       string
	Insecure     bool
	Timeout      time.Duration
}

// Resolve checks every PVWA flag and loads the secrets, reporting all
// problems at once. It reads files and the environment but opens no
// connection.
func (p *PVWA) Resolve(getenv Getenv) (PVWASettings, error) {
	var probs Problems
	s := PVWASettings{
		URL: strings.TrimSpace(p.URL), Auth: strings.ToLower(strings.TrimSpace(p.Auth)), User: strings.TrimSpace(p.User),
		IdentityURL: strings.TrimSpace(p.IdentityURL), ClientID: strings.TrimSpace(p.ClientID),
		CAFile: p.CAFile, Insecure: p.Insecure, Timeout: p.Timeout,
	}
	if s.URL == "" {
		probs.Add("pvwa-url", "", errors.New("required (or "+EnvName("pvwa-url")+")"))
	} else if err := checkHTTPURL(s.URL); err != nil {
		probs.Add("pvwa-url", s.URL, err)
	}
	if !contains(AuthMethods, s.Auth) {
		probs.Addf("auth", p.Auth, "want one of %s", strings.Join(AuthMethods, ", "))
	}
	switch s.Auth {
	case "identity":
		if s.IdentityURL == "" {
			probs.Add("identity-url", "", errors.New("required with --auth identity"))
		} else if err := checkHTTPURL(s.IdentityURL); err != nil {
			probs.Add("identity-url", s.IdentityURL, err)
		}
		if s.ClientID == "" {
			probs.Add("client-id", "", errors.New("required with --auth identity"))
		}
		v, err := loadSecret(getenv, EnvClientSecret, p.ClientSecretFile, "client-secret-file")
		if err != nil {
			probs.AddErr(err)
		}
		s.ClientSecret = v
	case "windows":
		// IIS integrated authentication: the process's own identity.
	default:
		if s.User == "" {
			probs.Add("user", "", fmt.Errorf("required with --auth %s", s.Auth))
		}
		v, err := loadSecret(getenv, EnvPassword, p.PasswordFile, "password-file")
		if err != nil {
			probs.AddErr(err)
		}
		s.Password = v
	}
	if p.CAFile != "" {
		if err := checkCAFile(p.CAFile); err != nil {
			probs.Add("ca-file", p.CAFile, err)
		}
	}
	if p.Timeout <= 0 {
		probs.Add("pvwa-timeout", p.Timeout.String(), errors.New("must be positive"))
	}
	if err := probs.Err(); err != nil {
		return PVWASettings{}, err
	}
	return s, nil
}

// loadSecret takes a secret from its variable or its file flag; exactly one
// must be given.
func loadSecret(getenv Getenv, env, file, fileFlag string) (secret.Value, error) {
	var fromEnv string
	if getenv != nil {
		fromEnv = getenv(env)
	}
	switch {
	case fromEnv != "" && file != "":
		return secret.Value{}, fmt.Errorf("both %s and --%s are set; give one", env, fileFlag)
	case fromEnv != "":
		return secret.New(fromEnv), nil
	case file != "":
		v, err := secret.FromFile(file)
		if err != nil {
			return secret.Value{}, &FieldError{Field: fileFlag, Value: file, Err: err}
		}
		return v, nil
	}
	return secret.Value{}, fmt.Errorf("no secret: set %s or --%s", env, fileFlag)
}

// checkHTTPURL accepts https URLs, and http only to a loopback address where
// nothing crosses a network (the simulator, a local proxy).
func checkHTTPURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %v", err)
	}
	if u.Host == "" || u.Hostname() == "" {
		return errors.New("no host (want e.g. https://pvwa.example.com)")
	}
	if u.User != nil {
		return errors.New("credentials in the URL are not accepted")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return errors.New("no query or fragment allowed")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return errors.New("plain http would send the password unencrypted; use https")
		}
	default:
		return fmt.Errorf("scheme %q: want https", u.Scheme)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkCAFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		return errors.New("no PEM certificate in file")
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// PAM returns the client configuration for these settings; the caller adds
// the logger, limiter and observers.
func (s PVWASettings) PAM() pam.Config {
	return pam.Config{
		BaseURL: s.URL, Auth: s.Auth, Username: s.User, Password: s.Password,
		IdentityURL: s.IdentityURL, ClientID: s.ClientID, ClientSecret: s.ClientSecret,
		CAFile: s.CAFile, InsecureSkipVerify: s.Insecure, Timeout: s.Timeout,
	}
}
