package cliconf

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/rs/zerolog"
	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/secret"
)

// NATS holds the flags that say how to reach NATS JetStream.
type NATS struct {
	URL          string
	Creds        string
	User         string
	PasswordFile string
	CAFile       string
	CertFile     string
	KeyFile      string
	Replicas     int
}

// Register defines the NATS flags on fs. embeddedHint says what an empty
// --nats-url means for this command.
func (n *NATS) Register(fs *FlagSet, embeddedHint string) {
	fs.StringVar(&n.URL, "nats-url", "", "NATS server URLs, comma-separated (nats://h1:4222,nats://h2:4222); "+embeddedHint)
	fs.StringVar(&n.Creds, "nats-creds", "", "NATS credentials file (JWT + NKey)")
	fs.StringVar(&n.User, "nats-user", "", "NATS user name (password from "+EnvNATSPassword+" or --nats-password-file)")
	fs.StringVar(&n.PasswordFile, "nats-password-file", "", "file holding the NATS password")
	fs.StringVar(&n.CAFile, "nats-ca-file", "", "PEM CA for the NATS servers' TLS certificates")
	fs.StringVar(&n.CertFile, "nats-cert-file", "", "client certificate for NATS mutual TLS")
	fs.StringVar(&n.KeyFile, "nats-key-file", "", "client key for NATS mutual TLS")
	fs.IntVar(&n.Replicas, "nats-replicas", 1, "replicas of safeperm's streams (1, or 3 on a 3-node cluster)")
	fs.SecretEnv(EnvNATSPassword, "NATS password (or --nats-password-file)")
}

// NATSSettings is the validated NATS configuration with secrets loaded.
type NATSSettings struct {
	// URLs is empty for the embedded server.
	URLs     []string
	Creds    string
	User     string
	Password secret.Value
	CAFile   string
	CertFile string
	KeyFile  string
	Replicas int
}

// Embedded reports whether no external server was named.
func (s NATSSettings) Embedded() bool { return len(s.URLs) == 0 }

// Resolve checks the NATS flags and loads the password, reporting all
// problems at once.
func (n *NATS) Resolve(getenv Getenv) (NATSSettings, error) {
	var probs Problems
	s := NATSSettings{Creds: n.Creds, User: n.User, CAFile: n.CAFile, CertFile: n.CertFile, KeyFile: n.KeyFile, Replicas: n.Replicas}
	for _, raw := range strings.Split(n.URL, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		switch {
		case err != nil:
			probs.Add("nats-url", raw, fmt.Errorf("not a URL: %v", err))
		case u.Scheme != "nats" && u.Scheme != "tls" && u.Scheme != "ws" && u.Scheme != "wss":
			probs.Add("nats-url", raw, errors.New("want nats://host:port (or tls://, ws://, wss://)"))
		case u.Host == "":
			probs.Add("nats-url", raw, errors.New("no host"))
		case u.User != nil:
			probs.Add("nats-url", raw, errors.New("credentials in the URL would show in the process list; use --nats-user and "+EnvNATSPassword))
		default:
			s.URLs = append(s.URLs, raw)
		}
	}
	for _, f := range []struct{ flag, path string }{
		{"nats-creds", n.Creds}, {"nats-ca-file", n.CAFile}, {"nats-cert-file", n.CertFile}, {"nats-key-file", n.KeyFile},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			probs.Add(f.flag, f.path, err)
		}
	}
	if (n.CertFile == "") != (n.KeyFile == "") {
		probs.Add("nats-cert-file", n.CertFile, errors.New("--nats-cert-file and --nats-key-file go together"))
	}
	if n.Creds != "" && n.User != "" {
		probs.Add("nats-user", n.User, errors.New("give --nats-creds or --nats-user, not both"))
	}
	if n.User != "" {
		v, err := loadSecret(getenv, EnvNATSPassword, n.PasswordFile, "nats-password-file")
		if err != nil {
			probs.AddErr(err)
		}
		s.Password = v
	}
	if n.Replicas != 1 && n.Replicas != 3 && n.Replicas != 5 {
		probs.Addf("nats-replicas", fmt.Sprint(n.Replicas), "want 1, 3 or 5")
	}
	if len(s.URLs) == 0 && (n.Creds != "" || n.User != "" || n.CAFile != "") {
		probs.Add("nats-url", "", errors.New("NATS credentials or TLS given but no --nats-url (the embedded server needs none)"))
	}
	if err := probs.Err(); err != nil {
		return NATSSettings{}, err
	}
	return s, nil
}

// ConnectOptions returns how to connect to the external servers; name is
// the connection name the servers show.
func (s NATSSettings) ConnectOptions(name string, log zerolog.Logger) jobs.ConnectOptions {
	return jobs.ConnectOptions{
		URLs: s.URLs, Name: name, CredsFile: s.Creds, User: s.User, Password: s.Password,
		TLSCA: s.CAFile, TLSCert: s.CertFile, TLSKey: s.KeyFile, Logger: log,
	}
}
