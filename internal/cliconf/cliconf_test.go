package cliconf

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) Getenv { return func(k string) string { return m[k] } }

func TestEnvName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"nats-url": "SAFEPERM_NATS_URL", "rate": "SAFEPERM_RATE", "insecure-skip-verify": "SAFEPERM_INSECURE_SKIP_VERIFY"} {
		if got := EnvName(in); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParsePrecedence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    string
		wantN   int
		wantErr string
	}{
		{"default", nil, nil, "def", 1, ""},
		{"env", nil, map[string]string{"SAFEPERM_NAME": "fromenv", "SAFEPERM_COUNT": "4"}, "fromenv", 4, ""},
		{"flag beats env", []string{"--name", "fromflag"}, map[string]string{"SAFEPERM_NAME": "fromenv"}, "fromflag", 1, ""},
		{"bad env value names the variable", nil, map[string]string{"SAFEPERM_COUNT": "many"}, "", 0, `SAFEPERM_COUNT="many"`},
		{"unknown flag", []string{"--nmae", "x"}, nil, "", 0, "flag provided but not defined: -nmae"},
		{"password flag refused", []string{"--password", "hunter2"}, nil, "", 0, "SAFEPERM_PASSWORD"},
		{"password= flag refused", []string{"-password=hunter2"}, nil, "", 0, "process list"},
		{"client secret refused", []string{"--client-secret=x"}, nil, "", 0, "SAFEPERM_CLIENT_SECRET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			fs := NewFlagSet("x", "x [flags]", &out)
			name := fs.String("name", "def", "")
			n := fs.Int("count", 1, "")
			err := fs.Parse(tt.args, env(tt.env))
			if tt.wantErr != "" {
				var ue *UsageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse err = %v, want UsageError containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error repeats the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *name != tt.want || *n != tt.wantN {
				t.Errorf("got name=%q count=%d, want %q %d", *name, *n, tt.want, tt.wantN)
			}
		})
	}
}

func TestUsageListsEnvironment(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	fs := NewFlagSet("worker", "worker [flags]", &out)
	var p PVWA
	p.Register(fs)
	if err := fs.Parse([]string{"-h"}, nil); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Parse(-h) = %v, want flag.ErrHelp", err)
	}
	u := out.String()
	for _, want := range []string{"  -pvwa-url string", "Environment variables:", "  SAFEPERM_PVWA_URL\n", "  SAFEPERM_PASSWORD\n"} {
		if !strings.Contains(u, want) {
			t.Errorf("usage lacks %q:\n%s", want, u)
		}
	}
	if got := fs.EnvNames(); !contains(got, "SAFEPERM_CLIENT_SECRET") || !contains(got, "SAFEPERM_INSECURE_SKIP_VERIFY") {
		t.Errorf("EnvNames() = %v", got)
	}
}

func TestPVWAResolve(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("filepw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := PVWA{URL: "https://pvwa.example.com", Auth: "CyberArk", User: "admin", Timeout: time.Second}
	tests := []struct {
		name     string
		mod      func(*PVWA)
		env      map[string]string
		wantErrs []string
		wantPW   string
	}{
		{"env password", nil, map[string]string{EnvPassword: "envpw"}, nil, "envpw"},
		{"file password", func(p *PVWA) { p.PasswordFile = pwFile }, nil, nil, "filepw"},
		{"loopback http ok", func(p *PVWA) { p.URL = "http://127.0.0.1:8080/PasswordVault" }, map[string]string{EnvPassword: "x"}, nil, "x"},
		{"no password", nil, nil, []string{"no secret: set SAFEPERM_PASSWORD or --password-file"}, ""},
		{"both passwords", func(p *PVWA) { p.PasswordFile = pwFile }, map[string]string{EnvPassword: "x"}, []string{"both SAFEPERM_PASSWORD and --password-file"}, ""},
		{"everything wrong at once", func(p *PVWA) {
			p.URL = "http://pvwa.example.com"
			p.Auth = "kerberos"
			p.CAFile = notPEM
			p.Timeout = 0
		}, map[string]string{EnvPassword: "x"}, []string{"--pvwa-url", "unencrypted", `--auth "kerberos"`, "--ca-file", "no PEM certificate", "--pvwa-timeout"}, ""},
		{"missing url and user", func(p *PVWA) { p.URL = ""; p.User = "" }, map[string]string{EnvPassword: "x"}, []string{"--pvwa-url: required", "--user: required"}, ""},
		{"url with credentials", func(p *PVWA) { p.URL = "https://a:b@pvwa" }, map[string]string{EnvPassword: "x"}, []string{"credentials in the URL"}, ""},
		{"ftp url", func(p *PVWA) { p.URL = "ftp://pvwa" }, map[string]string{EnvPassword: "x"}, []string{`scheme "ftp"`}, ""},
		{"identity needs its fields", func(p *PVWA) { p.Auth = "identity" }, nil, []string{"--identity-url: required", "--client-id: required", "SAFEPERM_CLIENT_SECRET"}, ""},
		{"missing password file", func(p *PVWA) { p.PasswordFile = filepath.Join(dir, "nope") }, nil, []string{"--password-file", "nope"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := ok
			if tt.mod != nil {
				tt.mod(&p)
			}
			s, err := p.Resolve(env(tt.env))
			if len(tt.wantErrs) == 0 {
				if err != nil {
					t.Fatalf("Resolve: %v", err)
				}
				if s.Password.Reveal() != tt.wantPW {
					t.Errorf("password = %q, want %q", s.Password.Reveal(), tt.wantPW)
				}
				return
			}
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("Resolve err = %v, want *UsageError", err)
			}
			for _, w := range tt.wantErrs {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestNATSResolve(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		n        NATS
		env      map[string]string
		wantURLs int
		wantErrs []string
	}{
		{"embedded", NATS{Replicas: 1}, nil, 0, nil},
		{"cluster", NATS{URL: "nats://a:4222, nats://b:4222,tls://c:4222", Replicas: 3}, nil, 3, nil},
		{"user with env password", NATS{URL: "nats://a:4222", User: "worker", Replicas: 1}, map[string]string{EnvNATSPassword: "p"}, 1, nil},
		{"bad scheme", NATS{URL: "http://a:4222", Replicas: 1}, nil, 0, []string{"want nats://"}},
		{"password in url", NATS{URL: "nats://u:p@a:4222", Replicas: 1}, nil, 0, []string{"process list"}},
		{"user without password", NATS{URL: "nats://a", User: "w", Replicas: 1}, nil, 0, []string{"SAFEPERM_NATS_PASSWORD"}},
		{"replicas 2", NATS{URL: "nats://a", Replicas: 2}, nil, 0, []string{"--nats-replicas"}},
		{"missing creds", NATS{URL: "nats://a", Creds: "/nonexistent.creds", Replicas: 1}, nil, 0, []string{"--nats-creds"}},
		{"cert without key", NATS{URL: "nats://a", CertFile: "/etc/hostname", Replicas: 1}, nil, 0, []string{"go together"}},
		{"tls but embedded", NATS{CAFile: "/etc/hostname", Replicas: 1}, nil, 0, []string{"no --nats-url"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := tt.n.Resolve(env(tt.env))
			if len(tt.wantErrs) == 0 {
				if err != nil {
					t.Fatalf("Resolve: %v", err)
				}
				if len(s.URLs) != tt.wantURLs || s.Embedded() != (tt.wantURLs == 0) {
					t.Errorf("URLs = %v, want %d", s.URLs, tt.wantURLs)
				}
				return
			}
			if err == nil {
				t.Fatal("Resolve succeeded, want error")
			}
			for _, w := range tt.wantErrs {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{errors.New("boom"), ExitFailed},
		{Usagef("bad"), ExitUsage},
		{&ExitError{Code: ExitDrift}, ExitDrift},
		{errors.Join(errors.New("x"), &ExitError{Code: 3}), 3},
	}
	for _, tt := range tests {
		if got := ExitCode(tt.err); got != tt.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := Log{Level: "warn", Format: "json"}
	lg, err := l.Logger(&buf)
	if err != nil {
		t.Fatal(err)
	}
	lg.Info().Msg("hidden")
	lg.Warn().Msg("shown")
	if strings.Contains(buf.String(), "hidden") || !strings.Contains(buf.String(), `"message":"shown"`) {
		t.Errorf("log output %q", buf.String())
	}
	if _, err := (&Log{Level: "loud", Format: "json"}).Logger(&buf); err == nil {
		t.Error("bad level accepted")
	}
	if _, err := (&Log{Level: "info", Format: "xml"}).Logger(&buf); err == nil {
		t.Error("bad format accepted")
	}
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		args     []string
		wantPos  []string
		wantJSON bool
		wantURL  string
	}{
		{[]string{"RUN", "--json", "--nats-url", "nats://x:4222"}, []string{"RUN"}, true, "nats://x:4222"},
		{[]string{"--json", "RUN"}, []string{"RUN"}, true, ""},
		{[]string{"--nats-url=nats://y:1", "RUN", "EXTRA"}, []string{"RUN", "EXTRA"}, false, "nats://y:1"},
		{[]string{"--", "--json"}, []string{"--json"}, false, ""},
	}
	for _, tc := range tests {
		fs := NewFlagSet("t", "t", io.Discard)
		var js bool
		var u string
		fs.BoolVar(&js, "json", false, "")
		fs.StringVar(&u, "nats-url", "", "")
		if err := fs.Parse(tc.args, nil); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if js != tc.wantJSON || u != tc.wantURL || strings.Join(fs.Args(), " ") != strings.Join(tc.wantPos, " ") {
			t.Errorf("%v: json %v url %q args %v", tc.args, js, u, fs.Args())
		}
	}
}
