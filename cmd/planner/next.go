package main

import (
	"net/url"
	"strings"
	"time"

	"github.com/safeperm/safeperm/internal/cliconf"
	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/watch"
)

// defaultDataDir is --data-dir's default; other values are repeated in the
// next-step commands.
const defaultDataDir = "safeperm-data"

// natsArgs are the flags that reach the same NATS as n and dataDir: the
// external servers and their credentials' files (never a secret: the NATS
// password is never a flag), or the embedded server's --data-dir when it is
// not the default.
func natsArgs(n cliconf.NATS, dataDir string) []string {
	if strings.TrimSpace(n.URL) == "" {
		if dataDir != "" && dataDir != defaultDataDir {
			return []string{"--data-dir", dataDir}
		}
		return nil
	}
	args := []string{"--nats-url", n.URL}
	for _, f := range []struct{ flag, val string }{
		{"--nats-creds", n.Creds}, {"--nats-user", n.User}, {"--nats-password-file", n.PasswordFile},
		{"--nats-ca-file", n.CAFile}, {"--nats-cert-file", n.CertFile}, {"--nats-key-file", n.KeyFile},
	} {
		if f.val != "" {
			args = append(args, f.flag, f.val)
		}
	}
	return args
}

// pvwaArgs are the PVWA flags of p that differ from their defaults, to
// record in the run (jobs.RunParams.PVWAFlags). Secrets are never flags; the
// files holding them are named like any other file.
func pvwaArgs(p cliconf.PVWA) []string {
	var args []string
	add := func(flag, val string) {
		if val = strings.TrimSpace(val); val != "" {
			args = append(args, flag, val)
		}
	}
	add("--pvwa-url", cleanURL(p.URL))
	if a := strings.ToLower(strings.TrimSpace(p.Auth)); a != "" && a != "cyberark" {
		add("--auth", a)
	}
	add("--user", p.User)
	add("--password-file", p.PasswordFile)
	add("--identity-url", cleanURL(p.IdentityURL))
	add("--client-id", p.ClientID)
	add("--client-secret-file", p.ClientSecretFile)
	add("--ca-file", p.CAFile)
	if p.Insecure {
		args = append(args, "--insecure-skip-verify")
	}
	if p.Timeout != 0 && p.Timeout != 30*time.Second {
		add("--pvwa-timeout", p.Timeout.String())
	}
	return args
}

// cleanURL drops what a URL must not carry into a record or a printed
// command: user info, query and fragment.
func cleanURL(raw string) string {
	raw = strings.TrimSpace(raw)
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return raw
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// nextSteps returns the commands to follow, report on and undo run, reaching
// NATS with where; reportFile is the report this command wrote, if any.
// Only a finished apply run can be rolled back; the rollback command names
// the run's PVWA, and the password comes from the environment as for the run.
func nextSteps(run jobs.Run, where []string, reportFile string) watch.NextSteps {
	id := run.ID
	n := watch.NextSteps{
		ReportFile: reportFile,
		Report:     shellLine(append([]string{"planner", "report", id, "--format", "csv"}, where...)),
		Watch:      shellLine(append([]string{"planner", "watch", id}, where...)),
	}
	if run.Mode == jobs.ModeApply {
		pvwa := run.Params.PVWAFlags
		if len(pvwa) == 0 && run.Params.PVWAHost != "" {
			// A run recorded before pvwaFlags existed: its host is all
			// there is (add --user and the rest by hand).
			pvwa = []string{"--pvwa-url", "https://" + run.Params.PVWAHost}
		}
		n.Rollback = shellLine(append(append([]string{"planner", "rollback", id}, pvwa...), where...))
	}
	return n
}

// shellLine joins args into a line a POSIX shell reads back as args.
func shellLine(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = shellQuote(a)
	}
	return strings.Join(out, " ")
}

// shellQuote quotes s for a POSIX shell when it holds anything but
// letters, digits and -_./:=,@+%.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,@+%", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
