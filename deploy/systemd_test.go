package deploy_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const envFilePath = "/etc/safeperm/safeperm.env"

// directive is one "Key=value" line of a unit file.
type directive struct {
	section, key, value string
	line                int
}

// unitFile is a parsed systemd unit.
type unitFile struct {
	name       string
	directives []directive
}

func (u *unitFile) all(section, key string) []string {
	var out []string
	for _, d := range u.directives {
		if d.section == section && d.key == key {
			out = append(out, d.value)
		}
	}
	return out
}

func (u *unitFile) get(section, key string) string {
	vals := u.all(section, key)
	if len(vals) == 0 {
		return ""
	}
	return vals[len(vals)-1]
}

// parseUnit reads a unit file: sections, Key=value lines, comments, "\" continuations.
func parseUnit(path string) (*unitFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	u := &unitFile{name: filepath.Base(path)}
	section := ""
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		n := i + 1
		line := strings.TrimSpace(lines[i])
		for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
			i++
			line = strings.TrimSuffix(line, "\\") + " " + strings.TrimSpace(lines[i])
		}
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				return nil, fmt.Errorf("%s:%d: not a Key=value line in a section: %q", u.name, n, line)
			}
			u.directives = append(u.directives, directive{section, strings.TrimSpace(k), strings.TrimSpace(v), n})
		}
	}
	return u, nil
}

// splitWords splits a command line the way systemd (and a shell, for these cases) does:
// whitespace-separated words, with single and double quotes and backslash escapes.
func splitWords(s string) []string {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for i := 0; i < len(s); i++ {
		ch := rune(s[i])
		switch {
		case quote != 0 && ch == quote:
			quote = 0
		case quote != '\'' && ch == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case quote != 0:
			cur.WriteRune(ch)
		case ch == '"' || ch == '\'':
			quote, inWord = ch, true
		case ch == ' ' || ch == '\t' || ch == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(ch)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// execArgv splits an Exec*= value, dropping systemd's "-@:+!" prefixes.
func execArgv(v string) []string {
	argv := splitWords(v)
	if len(argv) > 0 {
		argv[0] = strings.TrimLeft(argv[0], "-@:+!")
	}
	return argv
}

// parseTimespan parses a systemd time span ("120", "90s", "4h", "1min 30s").
func parseTimespan(s string) (time.Duration, error) {
	units := map[string]time.Duration{
		"": time.Second, "us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "sec": time.Second,
		"second": time.Second, "seconds": time.Second, "m": time.Minute, "min": time.Minute, "minute": time.Minute,
		"minutes": time.Minute, "h": time.Hour, "hr": time.Hour, "hour": time.Hour, "hours": time.Hour,
		"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
	}
	re := regexp.MustCompile(`^\s*(\d+)\s*([a-z]*)`)
	rest := strings.TrimSpace(s)
	if rest == "" {
		return 0, fmt.Errorf("empty time span")
	}
	var total time.Duration
	for rest != "" {
		m := re.FindStringSubmatch(rest)
		if m == nil {
			return 0, fmt.Errorf("bad time span %q", s)
		}
		n, _ := strconv.Atoi(m[1])
		u, ok := units[m[2]]
		if !ok {
			return 0, fmt.Errorf("bad time unit %q in %q", m[2], s)
		}
		total += time.Duration(n) * u
		rest = strings.TrimSpace(rest[len(m[0]):])
	}
	return total, nil
}

// credentialFlags are the flags that name a file holding a secret.
var credentialFlags = []string{"password-file", "client-secret-file", "nats-password-file", "nats-key-file", "nats-creds"}

// validateSystemd checks the units: every safeperm command line and variable against c, the
// hardening and the timeouts the worker's shutdown needs, and systemd-analyze verify.
func validateSystemd(t *testing.T, root string, c *cli) []error {
	dir := filepath.Join(root, "deploy", "systemd")
	var paths []string
	for _, pat := range []string{"*.service", "*.timer"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		paths = append(paths, m...)
	}
	if len(paths) == 0 {
		return []error{fmt.Errorf("deploy/systemd: no units")}
	}
	var errs []error
	units := map[string]*unitFile{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, scanEnvNames("deploy/systemd/"+filepath.Base(p), string(b), c)...)
		u, err := parseUnit(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("deploy/systemd/%w", err))
			continue
		}
		units[u.name] = u
	}
	for _, name := range sortedKeys(units) {
		u := units[name]
		where := "deploy/systemd/" + name
		switch filepath.Ext(name) {
		case ".service":
			errs = append(errs, wrap(where, checkService(u, c)...)...)
		case ".timer":
			errs = append(errs, wrap(where, checkTimer(u, units)...)...)
		}
	}
	for _, want := range []string{"safeperm-worker.service", "safeperm-drift.service", "safeperm-drift.timer"} {
		if units[want] == nil {
			errs = append(errs, fmt.Errorf("deploy/systemd: %s is missing", want))
		}
	}
	return append(errs, systemdAnalyzeVerify(t, paths)...)
}

// checkService checks one .service unit.
func checkService(u *unitFile, c *cli) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	var fs *flagSet
	var argv []string
	for _, key := range []string{"ExecStartPre", "ExecStart", "ExecStartPost", "ExecStop", "ExecReload"} {
		for _, v := range u.all("Service", key) {
			a := execArgv(v)
			f, ferrs := c.checkArgv(a)
			errs = append(errs, wrap(key, ferrs...)...)
			if key == "ExecStart" && f != nil {
				fs, argv = f, a
			}
		}
	}
	if fs == nil {
		return errs // not a safeperm unit (e.g. nats-server.service)
	}
	for _, v := range u.all("Service", "Environment") {
		for _, kv := range splitWords(v) {
			name, value, _ := strings.Cut(kv, "=")
			if isSecretVar(name) {
				bad("Environment=%s: secrets go through LoadCredential=, not the environment", name)
			}
			if strings.HasPrefix(name, "SAFEPERM_") {
				if err := checkEnv(fs, name, value); err != nil {
					bad("Environment=: %v", err)
				}
			}
		}
	}
	envFiles := u.all("Service", "EnvironmentFile")
	if !slices.ContainsFunc(envFiles, func(s string) bool { return strings.TrimPrefix(s, "-") == envFilePath }) {
		bad("EnvironmentFile=%s is missing", envFilePath)
	}
	want := map[string][]string{
		"NoNewPrivileges": {"yes", "true"},
		"ProtectSystem":   {"strict"},
		"ProtectHome":     {"yes", "true", "read-only", "tmpfs"},
		"PrivateTmp":      {"yes", "true"},
	}
	for _, key := range sortedKeys(want) {
		if got := u.get("Service", key); !slices.Contains(want[key], got) {
			bad("%s=%s, want %s", key, got, strings.Join(want[key], " or "))
		}
	}
	if dyn, user := u.get("Service", "DynamicUser"), u.get("Service", "User"); dyn != "yes" && (user == "" || user == "root" || user == "0") {
		bad("runs as root: set DynamicUser=yes or User=safeperm")
	}
	creds := map[string]bool{}
	for _, v := range u.all("Service", "LoadCredential") {
		name, _, _ := strings.Cut(v, ":")
		creds[name] = true
	}
	flags := flagValues(fs, argv)
	for _, f := range credentialFlags {
		v, ok := flags[f]
		if !ok {
			continue
		}
		cred, isCred := strings.CutPrefix(v, "%d/")
		switch {
		case !isCred:
			bad("--%s %s: secrets come from LoadCredential= (%%d/NAME), not a path the service user can read", f, v)
		case !creds[cred]:
			bad("--%s %s: no LoadCredential=%s:...", f, v, cred)
		}
	}
	switch filepath.Base(argv[0]) {
	case "worker":
		if r := u.get("Service", "Restart"); r != "on-failure" && r != "always" {
			bad("Restart=%s, want on-failure", r)
		}
		if s := u.get("Service", "KillSignal"); s != "SIGTERM" && s != "TERM" {
			bad("KillSignal=%s, want SIGTERM (the worker drains on it)", s)
		}
		st, ok := flags["shutdown-timeout"]
		d, err := time.ParseDuration(st)
		if !ok || err != nil {
			bad("set --shutdown-timeout on ExecStart (TimeoutStopSec must exceed it)")
			break
		}
		stop, err := parseTimespan(u.get("Service", "TimeoutStopSec"))
		if err != nil {
			bad("TimeoutStopSec: %v", err)
		} else if stop <= d {
			bad("TimeoutStopSec=%v must exceed --shutdown-timeout %v, or systemd kills in-flight jobs", stop, d)
		}
	case "planner":
		if argv[1] == "run" {
			if typ := u.get("Service", "Type"); typ != "oneshot" {
				bad("Type=%s, want Type=oneshot for planner run", typ)
			}
			if w, ok := flags["watch"]; !ok || w == "false" {
				bad("planner run needs --watch so the unit's result is the run's")
			}
			if m := flags["mode"]; m != "apply" && m != "check" {
				bad("planner run --mode %q, want apply or check", m)
			}
		}
	}
	return errs
}

// checkTimer checks a .timer unit.
func checkTimer(u *unitFile, units map[string]*unitFile) []error {
	var errs []error
	if u.get("Timer", "OnCalendar") == "" {
		errs = append(errs, fmt.Errorf("no OnCalendar="))
	}
	if u.get("Timer", "Persistent") != "true" && u.get("Timer", "Persistent") != "yes" {
		errs = append(errs, fmt.Errorf("Persistent=true missing (a missed run would be skipped)"))
	}
	if u.get("Timer", "RandomizedDelaySec") == "" {
		errs = append(errs, fmt.Errorf("RandomizedDelaySec= missing"))
	}
	target := u.get("Timer", "Unit")
	if target == "" {
		target = strings.TrimSuffix(u.name, ".timer") + ".service"
	}
	if units[target] == nil {
		errs = append(errs, fmt.Errorf("triggers %s, which is not in deploy/systemd", target))
	}
	return errs
}

// systemdAnalyzeVerify runs `systemd-analyze verify` on copies of the units whose
// /usr/local/bin executables point at stubs (they are not installed here); any message is an
// error (unknown keys and bad values are only warnings to systemd, printed as "file:line: ...").
func systemdAnalyzeVerify(t *testing.T, paths []string) []error {
	bin := lookPathOr("systemd-analyze")
	if bin == "" {
		t.Log("systemd-analyze not installed: units not verified by systemd")
		return nil
	}
	tmp := t.TempDir()
	stubs := filepath.Join(tmp, "bin")
	if err := os.Mkdir(stubs, 0o755); err != nil {
		return []error{err}
	}
	exe := regexp.MustCompile(`/usr/local/bin/([A-Za-z0-9_.-]+)`)
	var copies []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return []error{err}
		}
		for _, m := range exe.FindAllStringSubmatch(string(b), -1) {
			if err := os.WriteFile(filepath.Join(stubs, m[1]), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
				return []error{err}
			}
		}
		dst := filepath.Join(tmp, filepath.Base(p))
		if err := os.WriteFile(dst, []byte(exe.ReplaceAllString(string(b), stubs+"/$1")), 0o644); err != nil {
			return []error{err}
		}
		copies = append(copies, dst)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"verify", "--man=no"}, copies...)...)
	cmd.Dir = tmp
	out, err := cmd.CombinedOutput()
	var errs []error
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := strings.TrimSpace(strings.ReplaceAll(sc.Text(), tmp+"/", "deploy/systemd/"))
		if line != "" {
			errs = append(errs, fmt.Errorf("systemd-analyze verify: %s", line))
		}
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("systemd-analyze verify: %v", err))
	}
	return errs
}

var envLineRE = regexp.MustCompile(`^(#\s?)?(SAFEPERM_[A-Z0-9_]+)=(.*)$`)

// validateEnvFile checks safeperm.env.example: every line is valid EnvironmentFile syntax, every
// variable is accepted with a value of the right type and explained on the line above, every
// variable the binaries accept is documented, and no secret is set.
func validateEnvFile(t *testing.T, root string, c *cli) []error {
	const where = "deploy/systemd/safeperm.env.example"
	b, err := os.ReadFile(filepath.Join(root, where))
	if err != nil {
		return []error{err}
	}
	errs := scanEnvNames(where, string(b), c)
	bad := func(n int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s:%d: %s", where, n, fmt.Sprintf(format, args...)))
	}
	documented := map[string]int{}
	prev := ""
	for i, line := range strings.Split(string(b), "\n") {
		n := i + 1
		m := envLineRE.FindStringSubmatch(line)
		switch {
		case m != nil:
			name, value, commented := m[2], m[3], m[1] != ""
			if first, dup := documented[name]; dup {
				bad(n, "%s again (first on line %d)", name, first)
			}
			documented[name] = n
			if !strings.HasPrefix(prev, "#") || envLineRE.MatchString(prev) {
				bad(n, "%s has no explanation on the line above", name)
			}
			if !commented && strings.Contains(value, "#") {
				bad(n, "%s=%s: EnvironmentFile has no inline comments, so this is not a valid value", name, value)
			}
			if !commented && isSecretVar(name) && value != "" {
				bad(n, "secret %s set in the env file: use the *-file flags with LoadCredential=", name)
			}
			for _, fs := range c.all() {
				if fs.env[name] && value != "" {
					if err := checkValue(fs.envType(name), value); err != nil {
						bad(n, "%s (%s): %v", name, fs.name, err)
					}
				}
			}
		case strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#"):
		default:
			bad(n, "not a SAFEPERM_NAME=value line or a comment: %q", line)
		}
		prev = line
	}
	for _, fs := range c.all() {
		for _, name := range sortedKeys(fs.env) {
			if _, ok := documented[name]; !ok {
				errs = append(errs, fmt.Errorf("%s: %s is not documented (accepted by %s)", where, name, fs.name))
				documented[name] = -1 // report once
			}
		}
	}
	return errs
}
