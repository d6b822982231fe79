// Package deploy_test validates everything an operator deploys safeperm with: the NATS server
// configs (deploy/nats), the Kubernetes manifests (deploy/kubernetes), the systemd units and
// environment file (deploy/systemd), the root Dockerfile and docs/deploy.md.
//
// Each file is checked by what consumes it (nats-server's own config parser, the real
// Kubernetes API types decoded strictly, systemd-analyze verify) and every --flag and SAFEPERM_*
// variable they name is checked against what the binaries accept, read from the usage text that
// `worker -h` and `planner <subcommand> -h` print. TestMutationsAreRejected proves the
// validators bite by breaking copies of the shipped files in known ways.
package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/proctest"
)

// Where the image and the units install the binaries.
const (
	plannerPath = "/usr/local/bin/planner"
	workerPath  = "/usr/local/bin/worker"
)

// plannerSubcommands are the planner's subcommands; each has its own flag set.
var plannerSubcommands = []string{"run", "watch", "status", "report", "rollback"}

// secretEnv are the variables that carry secrets. They have no flag (secrets never go on a
// command line) and may only come from a Secret (Kubernetes) or a credential file.
var secretEnv = []string{"SAFEPERM_PASSWORD", "SAFEPERM_CLIENT_SECRET", "SAFEPERM_NATS_PASSWORD"}

// natsObjectNames look like variables but name streams; the text scan ignores them.
var natsObjectNames = map[string]bool{
	"SAFEPERM_JOBS": true, "SAFEPERM_RESULTS": true, "SAFEPERM_DLQ": true, "SAFEPERM_ADVISORIES": true,
}

// flagSet is what one command (the worker, or one planner subcommand) accepts.
type flagSet struct {
	name       string            // "worker", "planner run"
	positional int               // arguments allowed after the flags (planner watch RUN)
	flags      map[string]string // flag name -> type as Go's flag package prints it ("bool" when none)
	env        map[string]bool   // SAFEPERM_* variables listed under "Environment variables:"
}

// cli is what both binaries accept.
type cli struct {
	source  string // "contract" or "binaries": says which in error messages
	worker  *flagSet
	planner map[string]*flagSet
}

// all returns every flag set, worker first, then the planner subcommands in order.
func (c *cli) all() []*flagSet {
	out := []*flagSet{c.worker}
	for _, sub := range plannerSubcommands {
		if fs := c.planner[sub]; fs != nil {
			out = append(out, fs)
		}
	}
	return out
}

// anyEnv reports whether some command accepts the variable.
func (c *cli) anyEnv(name string) bool {
	for _, fs := range c.all() {
		if fs.env[name] {
			return true
		}
	}
	return false
}

// everyEnv reports whether every command accepts the variable (what an image-wide ENV needs).
func (c *cli) everyEnv(name string) bool {
	for _, fs := range c.all() {
		if !fs.env[name] {
			return false
		}
	}
	return true
}

// envType returns the flag type behind a variable ("string" for the secret variables).
func (fs *flagSet) envType(name string) string {
	for f, typ := range fs.flags {
		if envName(f) == name {
			return typ
		}
	}
	return "string"
}

// envName maps a flag to its variable: --nats-url <-> SAFEPERM_NATS_URL.
func envName(flagName string) string {
	return "SAFEPERM_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

var (
	// Go's flag.PrintDefaults: "  -name type" (type omitted for bools) then "    \tusage", or
	// "  -x\tusage" for one-letter names.
	usageFlagRE = regexp.MustCompile(`^  --?([A-Za-z0-9][A-Za-z0-9_.-]*)(?: ([^\s]+))?(?:\t.*)?$`)
	usageEnvRE  = regexp.MustCompile(`^\s+(SAFEPERM_[A-Z0-9_]+)\b`)
	envTokenRE  = regexp.MustCompile(`SAFEPERM_[A-Z0-9_]*[A-Z0-9]`)
)

// positionalArgs are the commands that take an argument after their flags.
var positionalArgs = map[string]int{"planner watch": 1, "planner report": 1, "planner rollback": 1}

// parseUsage reads the -h output of one command: the flag list, then the section starting with
// the line "Environment variables:".
func parseUsage(name, text string) (*flagSet, error) {
	fs := &flagSet{name: name, positional: positionalArgs[name], flags: map[string]string{}, env: map[string]bool{}}
	inEnv := false
	for _, line := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		if strings.TrimSpace(line) == "Environment variables:" {
			inEnv = true
			continue
		}
		if inEnv {
			if m := usageEnvRE.FindStringSubmatch(line); m != nil {
				fs.env[m[1]] = true
			}
			continue
		}
		if m := usageFlagRE.FindStringSubmatch(line); m != nil {
			typ := m[2]
			if typ == "" {
				typ = "bool"
			}
			fs.flags[m[1]] = typ
		}
	}
	var problems []string
	if len(fs.flags) == 0 {
		problems = append(problems, "no flags (lines like \"  -nats-url string\")")
	}
	if !inEnv {
		problems = append(problems, "no \"Environment variables:\" section")
	} else if len(fs.env) == 0 {
		problems = append(problems, "no SAFEPERM_* names after \"Environment variables:\"")
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s -h: %s", name, strings.Join(problems, "; "))
	}
	return fs, nil
}

// checkValue checks a flag or variable value against the flag's type.
func checkValue(typ, value string) error {
	if strings.Contains(value, "%") || strings.Contains(value, "$") {
		return nil // a systemd specifier or a variable, resolved at run time
	}
	var err error
	switch typ {
	case "bool":
		_, err = strconv.ParseBool(value)
	case "int":
		_, err = strconv.ParseInt(value, 0, 64)
	case "uint":
		_, err = strconv.ParseUint(value, 0, 64)
	case "float":
		_, err = strconv.ParseFloat(value, 64)
	case "duration":
		_, err = time.ParseDuration(value)
	}
	if err != nil {
		return fmt.Errorf("value %q is not a valid %s", value, typ)
	}
	return nil
}

// checkFlags parses args the way Go's flag package does and reports every flag the command
// does not define, every value of the wrong type, and any argument that would stop flag parsing
// (Go's flag package silently ignores every flag after the first non-flag argument).
func checkFlags(fs *flagSet, args []string) []error {
	var errs []error
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			if i+1 < len(args) {
				errs = append(errs, fmt.Errorf("%s: arguments after \"--\": %q", fs.name, args[i+1:]))
			}
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			rest := args[i:]
			switch {
			case fs.positional > 0 && slices.ContainsFunc(rest, func(s string) bool { return strings.HasPrefix(s, "-") }):
				errs = append(errs, fmt.Errorf("%s: flags after %q are ignored: put them before it", fs.name, a))
			case len(rest) > fs.positional:
				errs = append(errs, fmt.Errorf("%s: unexpected argument %q: flag parsing stops here, so %q would be ignored (a bool flag takes no separate value: use --flag=false)", fs.name, a, rest))
			}
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name == "h" || name == "help" {
			continue
		}
		typ, ok := fs.flags[name]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: flag provided but not defined: --%s (%s accepts %s)", fs.name, name, fs.name, strings.Join(sortedKeys(fs.flags), " ")))
			continue
		}
		if typ == "bool" {
			if hasValue {
				if err := checkValue(typ, value); err != nil {
					errs = append(errs, fmt.Errorf("%s: --%s: %w", fs.name, name, err))
				}
			}
			continue
		}
		if !hasValue {
			if i+1 >= len(args) {
				errs = append(errs, fmt.Errorf("%s: flag needs an argument: --%s", fs.name, name))
				break
			}
			i++
			value = args[i]
		}
		if err := checkValue(typ, value); err != nil {
			errs = append(errs, fmt.Errorf("%s: --%s: %w", fs.name, name, err))
		}
	}
	return errs
}

// checkEnv checks one SAFEPERM_* variable given to a command.
func checkEnv(fs *flagSet, name, value string) error {
	if !fs.env[name] {
		return fmt.Errorf("%s does not accept %s", fs.name, name)
	}
	if value == "" {
		return nil
	}
	if err := checkValue(fs.envType(name), value); err != nil {
		return fmt.Errorf("%s=%s: %w", name, value, err)
	}
	return nil
}

// command resolves argv ("/usr/local/bin/planner run --watch") to the flag set of that binary
// and subcommand and the remaining flag arguments. ok is false when argv is not a safeperm binary.
func (c *cli) command(argv []string) (fs *flagSet, args []string, ok bool, err error) {
	if len(argv) == 0 {
		return nil, nil, false, nil
	}
	switch filepath.Base(argv[0]) {
	case "worker":
		return c.worker, argv[1:], true, nil
	case "planner":
		if len(argv) < 2 {
			return nil, nil, true, fmt.Errorf("planner without a subcommand: %q", argv)
		}
		fs := c.planner[argv[1]]
		if fs == nil {
			if slices.Contains(plannerSubcommands, argv[1]) {
				return nil, nil, true, fmt.Errorf("planner %s: its -h output could not be read, so this command line cannot be checked", argv[1])
			}
			return nil, nil, true, fmt.Errorf("planner has no subcommand %q (have %s)", argv[1], strings.Join(plannerSubcommands, ", "))
		}
		return fs, argv[2:], true, nil
	}
	return nil, nil, false, nil
}

// checkArgv checks a whole command line: binary, subcommand and flags.
func (c *cli) checkArgv(argv []string) (*flagSet, []error) {
	fs, args, ok, err := c.command(argv)
	if err != nil {
		return nil, []error{err}
	}
	if !ok {
		return nil, nil
	}
	return fs, checkFlags(fs, args)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// wrap prefixes errors with the file (and object) they were found in.
func wrap(where string, errs ...error) []error {
	out := make([]error, 0, len(errs))
	for _, err := range errs {
		if err != nil {
			out = append(out, fmt.Errorf("%s: %w", where, err))
		}
	}
	return out
}

// repoRoot is the module root (deploy/..).
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}

// The contract: the flags and variables the brief fixed for both binaries. Used to check the
// shipped files independently of the binaries, and by the mutation table. Flag types the
// contract leaves open are "string", which accepts any value.
var contractFlags = struct {
	pvwa, nats, logging, run, worker map[string]string
}{
	pvwa: map[string]string{
		"pvwa-url": "string", "auth": "string", "user": "string", "password-file": "string",
		"identity-url": "string", "client-id": "string", "client-secret-file": "string",
		"ca-file": "string", "insecure-skip-verify": "bool", "pvwa-timeout": "duration",
	},
	nats: map[string]string{
		"nats-url": "string", "nats-creds": "string", "nats-user": "string",
		"nats-password-file": "string", "nats-ca-file": "string", "nats-cert-file": "string",
		"nats-key-file": "string", "nats-replicas": "int",
	},
	logging: map[string]string{"log-level": "string", "log-format": "string"},
	run: map[string]string{
		"mode": "string", "member": "string", "member-type": "string", "search-in": "string",
		"permissions": "string", "include": "string", "exclude": "string", "cpm": "string",
		"report": "string", "watch": "bool", "run-id": "string", "data-dir": "string",
		"workers": "int", "concurrency": "int", "rate": "float",
		"embedded-listen": "string", "json": "bool", "policy": "string", "allow-removals": "bool",
	},
	worker: map[string]string{
		"concurrency": "int", "rate": "float", "metrics-addr": "string", "shutdown-timeout": "duration",
	},
}

// contractUsage renders the usage text a binary following the contract prints, with Go's own
// flag package, so the parser is tested on the real format.
func contractUsage(name string, groups ...map[string]string) string {
	fset := flag.NewFlagSet(name, flag.ContinueOnError)
	var buf bytes.Buffer
	fset.SetOutput(&buf)
	flags := map[string]string{}
	for _, g := range groups {
		for k, v := range g {
			flags[k] = v
		}
	}
	for _, f := range sortedKeys(flags) {
		switch flags[f] {
		case "bool":
			fset.Bool(f, false, "a switch")
		case "int":
			fset.Int(f, 0, "a number")
		case "float":
			fset.Float64(f, 0, "a rate")
		case "duration":
			fset.Duration(f, 0, "a duration")
		default:
			fset.String(f, "", "a value")
		}
	}
	fmt.Fprintf(&buf, "Usage of %s:\n", name)
	fset.PrintDefaults()
	buf.WriteString("\nEnvironment variables:\n")
	for _, f := range sortedKeys(flags) {
		fmt.Fprintf(&buf, "  %s\n", envName(f))
	}
	if _, ok := flags["nats-url"]; ok {
		fmt.Fprintf(&buf, "  SAFEPERM_NATS_PASSWORD\n")
	}
	if _, ok := flags["pvwa-url"]; ok {
		fmt.Fprintf(&buf, "  SAFEPERM_PASSWORD\n  SAFEPERM_CLIENT_SECRET\n")
	}
	return buf.String()
}

// contractCLI is the cli the contract describes.
func contractCLI(t *testing.T) *cli {
	t.Helper()
	f := contractFlags
	usages := map[string][]map[string]string{
		"worker":           {f.pvwa, f.nats, f.logging, f.worker},
		"planner run":      {f.pvwa, f.nats, f.logging, f.run},
		"planner rollback": {f.pvwa, f.nats, f.logging},
		"planner watch":    {f.nats, f.logging, {"json": "bool"}},
		"planner status":   {f.nats, f.logging, {"limit": "int", "json": "bool", "failures": "bool"}},
		"planner report":   {f.nats, f.logging, {"format": "string", "json": "bool"}},
	}
	c := &cli{source: "contract", planner: map[string]*flagSet{}}
	for name, groups := range usages {
		fs, err := parseUsage(name, contractUsage(name, groups...))
		if err != nil {
			t.Fatal(err)
		}
		if name == "worker" {
			c.worker = fs
		} else {
			c.planner[strings.TrimPrefix(name, "planner ")] = fs
		}
	}
	return c
}

var built struct {
	once sync.Once
	dir  string
	out  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// binariesCLI builds ./cmd/planner and ./cmd/worker and reads their -h output.
func binariesCLI(t *testing.T) *cli {
	t.Helper()
	root := repoRoot(t)
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "safeperm-deploy-bin-")
		if err != nil {
			built.err = err
			return
		}
		built.dir = dir
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(os.PathSeparator), "./cmd/planner", "./cmd/worker")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		built.out, built.err = string(out), err
	})
	if built.err != nil {
		t.Fatalf("go build ./cmd/planner ./cmd/worker: %v\n%s", built.err, built.out)
	}
	help := func(bin string, args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(built.dir, bin), append(args, "-h")...)
		cmd.Env = proctest.BaseEnv() // so -h is not influenced by the caller's SAFEPERM_*
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("%s %s -h: %v", bin, strings.Join(args, " "), err)
		}
		return string(out)
	}
	c := &cli{source: "binaries", planner: map[string]*flagSet{}}
	var err error
	if c.worker, err = parseUsage("worker", help("worker")); err != nil {
		t.Fatal(err)
	}
	// A subcommand whose usage cannot be read is an error, but the files are still checked
	// against the others (a command line using it is then reported as unknown).
	for _, sub := range plannerSubcommands {
		fs, err := parseUsage("planner "+sub, help("planner", sub))
		if err != nil {
			t.Errorf("%v (is planner %s implemented?)", err, sub)
			continue
		}
		c.planner[sub] = fs
	}
	if c.planner["run"] == nil {
		t.FailNow()
	}
	return c
}

// validator checks one area of the shipped files under root and returns every problem.
type validator func(t *testing.T, root string, c *cli) []error

var validators = []struct {
	name string
	fn   validator
}{
	{"nats", validateNATS},
	{"kubernetes", validateKubernetes},
	{"systemd", validateSystemd},
	{"envfile", validateEnvFile},
	{"dockerfile", validateDockerfile},
	{"docs", validateDocs},
}

func reportErrs(t *testing.T, errs []error) {
	t.Helper()
	for _, err := range errs {
		t.Error(err)
	}
}

func TestUsageParser(t *testing.T) {
	t.Parallel()
	text := `Usage of worker:
  -concurrency int
    	jobs in parallel (default 4)
  -insecure-skip-verify
    	skip TLS verification
  -nats-url string
    	NATS URL; empty = embedded
  -shutdown-timeout duration
    	drain time (default 1m30s)
  -v	verbose
Environment variables:
  SAFEPERM_CONCURRENCY
  SAFEPERM_INSECURE_SKIP_VERIFY
  SAFEPERM_NATS_URL
  SAFEPERM_SHUTDOWN_TIMEOUT   drain time
  SAFEPERM_NATS_PASSWORD
`
	fs, err := parseUsage("worker", text)
	if err != nil {
		t.Fatal(err)
	}
	wantFlags := map[string]string{"concurrency": "int", "insecure-skip-verify": "bool", "nats-url": "string", "shutdown-timeout": "duration", "v": "bool"}
	if got := fmt.Sprint(fs.flags); got != fmt.Sprint(wantFlags) {
		t.Errorf("flags = %s, want %s", got, fmt.Sprint(wantFlags))
	}
	wantEnv := []string{"SAFEPERM_CONCURRENCY", "SAFEPERM_INSECURE_SKIP_VERIFY", "SAFEPERM_NATS_PASSWORD", "SAFEPERM_NATS_URL", "SAFEPERM_SHUTDOWN_TIMEOUT"}
	if got := sortedKeys(fs.env); !slices.Equal(got, wantEnv) {
		t.Errorf("env = %q, want %q", got, wantEnv)
	}

	tests := []struct {
		name    string
		args    []string
		wantErr string // "" = valid
	}{
		{"ok", []string{"--nats-url", "nats://x:4222", "--concurrency=8", "--shutdown-timeout", "90s", "-insecure-skip-verify"}, ""},
		{"bool with =", []string{"--insecure-skip-verify=false"}, ""},
		{"help", []string{"-h"}, ""},
		{"misspelled", []string{"--nats-ulr", "x"}, "not defined: --nats-ulr"},
		{"bool with separate value", []string{"--insecure-skip-verify", "true", "--nats-url", "x"}, "unexpected argument \"true\""},
		{"int", []string{"--concurrency", "many"}, "not a valid int"},
		{"duration without unit", []string{"--shutdown-timeout", "90"}, "not a valid duration"},
		{"missing value", []string{"--nats-url"}, "needs an argument"},
		{"systemd specifier", []string{"--concurrency", "%i"}, ""},
	}
	for _, tt := range tests {
		errs := checkFlags(fs, tt.args)
		switch {
		case tt.wantErr == "" && len(errs) > 0:
			t.Errorf("%s: checkFlags(%q) = %v, want no error", tt.name, tt.args, errs)
		case tt.wantErr != "" && !containsErr(errs, tt.wantErr):
			t.Errorf("%s: checkFlags(%q) = %v, want an error containing %q", tt.name, tt.args, errs, tt.wantErr)
		}
	}
	watch := &flagSet{name: "planner watch", positional: 1, flags: map[string]string{"nats-url": "string"}}
	if errs := checkFlags(watch, []string{"--nats-url", "x", "r1"}); len(errs) > 0 {
		t.Errorf("planner watch --nats-url x r1: %v", errs)
	}
	if errs := checkFlags(watch, []string{"r1", "--nats-url", "x"}); !containsErr(errs, "flags after") {
		t.Errorf("planner watch r1 --nats-url x: %v, want flags after the run id reported", errs)
	}
	if err := checkEnv(fs, "SAFEPERM_NATS_ULR", "x"); err == nil {
		t.Error("checkEnv accepted SAFEPERM_NATS_ULR")
	}
	if err := checkEnv(fs, "SAFEPERM_CONCURRENCY", "4x"); err == nil {
		t.Error("checkEnv accepted SAFEPERM_CONCURRENCY=4x")
	}
	if _, err := parseUsage("worker", "Usage of worker:\n  -a string\n"); err == nil {
		t.Error("parseUsage accepted a usage text without an Environment variables section")
	}
}

func containsErr(errs []error, sub string) bool {
	for _, err := range errs {
		if strings.Contains(err.Error(), sub) {
			return true
		}
	}
	return false
}

// TestShippedFiles validates every shipped file against the contract's flags and variables.
func TestShippedFiles(t *testing.T) {
	setNATSEnv(t)
	c := contractCLI(t)
	root := repoRoot(t)
	for _, v := range validators {
		t.Run(v.name, func(t *testing.T) {
			reportErrs(t, v.fn(t, root, c))
		})
	}
}

// TestShippedFilesAgainstBinaries builds the real planner and worker and validates every
// shipped invocation, variable and documented variable against their -h output. It fails (does
// not skip) when the binaries do not build.
func TestShippedFilesAgainstBinaries(t *testing.T) {
	c := binariesCLI(t)
	root := repoRoot(t)

	t.Run("binaries follow the contract", func(t *testing.T) {
		reportErrs(t, checkBinariesAgainstContract(contractCLI(t), c))
	})
	t.Run("dockerfile packages exist", func(t *testing.T) {
		reportErrs(t, checkDockerfilePackages(root))
	})
	for _, v := range validators {
		if v.name == "nats" {
			continue // no flags in there
		}
		t.Run(v.name, func(t *testing.T) {
			reportErrs(t, v.fn(t, root, c))
		})
	}
}

// checkBinariesAgainstContract reports contract flags or variables a binary lacks, flags
// without their variable, and secrets offered as flags.
func checkBinariesAgainstContract(contract, real *cli) []error {
	var errs []error
	for _, want := range contract.all() {
		var got *flagSet
		if want.name == "worker" {
			got = real.worker
		} else {
			got = real.planner[strings.TrimPrefix(want.name, "planner ")]
		}
		if got == nil {
			errs = append(errs, fmt.Errorf("%s -h: no usage to compare with the contract", want.name))
			continue
		}
		for _, f := range sortedKeys(want.flags) {
			typ, ok := got.flags[f]
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("%s -h: contract flag --%s missing", got.name, f))
			case want.flags[f] != "string" && typ != want.flags[f]:
				errs = append(errs, fmt.Errorf("%s -h: --%s is %s, the deploy files assume %s", got.name, f, typ, want.flags[f]))
			}
		}
		for _, e := range sortedKeys(want.env) {
			if !got.env[e] {
				errs = append(errs, fmt.Errorf("%s -h: variable %s missing from \"Environment variables:\"", got.name, e))
			}
		}
		for _, f := range sortedKeys(got.flags) {
			if !got.env[envName(f)] {
				errs = append(errs, fmt.Errorf("%s -h: flag --%s has no %s under \"Environment variables:\"", got.name, f, envName(f)))
			}
			if slices.Contains(secretEnv, envName(f)) {
				errs = append(errs, fmt.Errorf("%s -h: --%s puts a secret on the command line; secrets come only from env or files", got.name, f))
			}
		}
	}
	return errs
}

// checkDockerfilePackages reports ./cmd/... packages the Dockerfile builds that do not exist.
func checkDockerfilePackages(root string) []error {
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, pkg := range regexp.MustCompile(`\./cmd/[a-z0-9]+`).FindAllString(string(b), -1) {
		if _, err := os.Stat(filepath.Join(root, pkg, "main.go")); err != nil {
			errs = append(errs, fmt.Errorf("Dockerfile builds %s: %w", pkg, err))
		}
	}
	return errs
}

// mutation breaks one file of a copy of the shipped tree; validator must then report an error
// containing want.
type mutation struct {
	name      string
	file      string // relative to the repo root
	old, new  string // old must occur in the file; every occurrence is replaced
	validator validator
	want      string
	needs     string // a command that must be on PATH, else the row is skipped
}

// TestMutationsAreRejected proves the validators bite: each row breaks a copy of one shipped
// file in a way an operator might, and the validator of that area must reject it.
func TestMutationsAreRejected(t *testing.T) {
	setNATSEnv(t)
	c := contractCLI(t)
	root := repoRoot(t)
	const (
		dep     = "deploy/kubernetes/worker-deployment.yaml"
		cron    = "deploy/kubernetes/planner-cronjob.yaml"
		cm      = "deploy/kubernetes/configmap.yaml"
		kust    = "deploy/kubernetes/kustomization.yaml"
		wunit   = "deploy/systemd/safeperm-worker.service"
		dunit   = "deploy/systemd/safeperm-drift.service"
		timer   = "deploy/systemd/safeperm-drift.timer"
		envfile = "deploy/systemd/safeperm.env.example"
		n1      = "deploy/nats/cluster/n1.conf"
		single  = "deploy/nats/single/nats.conf"
		acc     = "deploy/nats/accounts.conf"
	)
	tests := []mutation{
		// Kubernetes
		{name: "unknown field in a Deployment", file: dep, old: "  replicas: 3\n", new: "  replicas: 3\n  replica: 3\n", validator: validateKubernetes, want: `unknown field "replica"`},
		{name: "misspelled field in a pod spec", file: dep, old: "terminationGracePeriodSeconds:", new: "terminationGracePeriodSecond:", validator: validateKubernetes, want: "unknown field"},
		{name: "unknown kind", file: "deploy/kubernetes/service.yaml", old: "kind: Service\n", new: "kind: Servic\n", validator: validateKubernetes, want: "unknown kind v1/Servic"},
		{name: "misspelled flag in worker args", file: dep, old: "- --metrics-addr\n", new: "- --nats-ulr\n            - nats://x:4222\n            - --metrics-addr\n", validator: validateKubernetes, want: "not defined: --nats-ulr"},
		{name: "misspelled flag in cronjob args", file: cron, old: `"--watch"]`, new: `"--watch", "--nats-ulr", "nats://x"]`, validator: validateKubernetes, want: "not defined: --nats-ulr"},
		{name: "bool flag with a separate value", file: cron, old: `"--watch"]`, new: `"--watch", "true"]`, validator: validateKubernetes, want: `unexpected argument "true"`},
		{name: "worker flag on the planner", file: cron, old: `"--watch"]`, new: `"--watch", "--metrics-addr", ":9090"]`, validator: validateKubernetes, want: "not defined: --metrics-addr"},
		{name: "unknown variable in a ConfigMap", file: cm, old: "SAFEPERM_NATS_URL:", new: "SAFEPERM_NATS_ULR:", validator: validateKubernetes, want: "does not accept SAFEPERM_NATS_ULR"},
		{name: "wrongly typed variable", file: cm, old: `SAFEPERM_NATS_REPLICAS: "3"`, new: `SAFEPERM_NATS_REPLICAS: "three"`, validator: validateKubernetes, want: "not a valid int"},
		{name: "planner-only variable reaches the worker", file: cm, old: `SAFEPERM_NATS_USER: "worker"`, new: `SAFEPERM_NATS_USER: "worker"` + "\n  SAFEPERM_MEMBER: PSMAppUsers", validator: validateKubernetes, want: "worker does not accept SAFEPERM_MEMBER"},
		{name: "secret as a plain env value", file: dep, old: "          env:\n", new: "          env:\n            - name: SAFEPERM_PASSWORD\n              value: hunter2\n", validator: validateKubernetes, want: "SAFEPERM_PASSWORD must come from a secretKeyRef"},
		{name: "secret in a ConfigMap", file: cm, old: `  SAFEPERM_LOG_LEVEL: "info"`, new: `  SAFEPERM_LOG_LEVEL: "info"` + "\n  SAFEPERM_NATS_PASSWORD: hunter2", validator: validateKubernetes, want: "secret SAFEPERM_NATS_PASSWORD in ConfigMap"},
		{name: "liveness probe path", file: dep, old: "path: /healthz", new: "path: /health", validator: validateKubernetes, want: "liveness probe must GET /healthz"},
		{name: "readiness probe path", file: dep, old: "path: /readyz", new: "path: /ready", validator: validateKubernetes, want: "readiness probe must GET /readyz"},
		{name: "probe on another port", file: dep, old: "- \":9090\"", new: "- \":9091\"", validator: validateKubernetes, want: "not the --metrics-addr port 9091"},
		{name: "grace period shorter than shutdown timeout", file: dep, old: "terminationGracePeriodSeconds: 120", new: "terminationGracePeriodSeconds: 60", validator: validateKubernetes, want: "must exceed the worker's --shutdown-timeout"},
		{name: "root allowed", file: dep, old: "runAsNonRoot: true", new: "runAsNonRoot: false", validator: validateKubernetes, want: "runAsNonRoot"},
		{name: "writable root filesystem", file: cron, old: "readOnlyRootFilesystem: true", new: "readOnlyRootFilesystem: false", validator: validateKubernetes, want: "readOnlyRootFilesystem"},
		{name: "overlapping drift runs", file: cron, old: "concurrencyPolicy: Forbid", new: "concurrencyPolicy: Allow", validator: validateKubernetes, want: "concurrencyPolicy must be Forbid"},
		{name: "drift run not followed", file: cron, old: `, "--watch"]`, new: `]`, validator: validateKubernetes, want: "--watch"},
		{name: "password file not mounted", file: dep, old: "mountPath: /etc/safeperm/pvwa\n", new: "mountPath: /etc/safeperm/pvwa-x\n", validator: validateKubernetes, want: "/etc/safeperm/pvwa/password is not on a volume mount"},
		{name: "kustomization lists a missing file", file: kust, old: "  - service.yaml\n", new: "  - service.yaml\n  - services.yaml\n", validator: validateKubernetes, want: "services.yaml"},
		{name: "kustomization unknown field", file: kust, old: "namespace: safeperm\n", new: "namespace: safeperm\nnamePrefx: x-\n", validator: validateKubernetes, want: "unknown field"},
		{name: "kustomization forgets a manifest", file: kust, old: "  - networkpolicy.yaml\n", new: "", validator: validateKubernetes, want: "networkpolicy.yaml is not listed"},
		{name: "image tag drifts from kustomization", file: dep, old: "ghcr.io/safeperm/safeperm:0.1.0", new: "ghcr.io/safeperm/safeperm:latest", validator: validateKubernetes, want: "image"},
		// systemd and the environment file
		{name: "misspelled flag in ExecStart", file: wunit, old: "--nats-user worker", new: "--nats-ulr nats://x --nats-user worker", validator: validateSystemd, want: "not defined: --nats-ulr"},
		{name: "worker flag in the planner unit", file: dunit, old: "--watch", new: "--watch --metrics-addr :9090", validator: validateSystemd, want: "not defined: --metrics-addr"},
		{name: "unknown variable in Environment=", file: wunit, old: "Type=exec\n", new: "Type=exec\nEnvironment=SAFEPERM_NATS_ULR=nats://x\n", validator: validateSystemd, want: "does not accept SAFEPERM_NATS_ULR"},
		{name: "unknown directive", file: wunit, old: "RestartSec=5s\n", new: "RestartSecs=5s\n", validator: validateSystemd, want: "Unknown key", needs: "systemd-analyze"},
		{name: "bad directive value", file: timer, old: "OnCalendar=*-*-* 02:00:00", new: "OnCalendar=every night", validator: validateSystemd, want: "calendar specification", needs: "systemd-analyze"},
		{name: "misspelled hardening value", file: wunit, old: "ProtectSystem=strict", new: "ProtectSystem=strickt", validator: validateSystemd, want: "ProtectSystem"},
		{name: "stop timeout below shutdown timeout", file: wunit, old: "TimeoutStopSec=120", new: "TimeoutStopSec=60", validator: validateSystemd, want: "must exceed --shutdown-timeout"},
		{name: "secret on the command line", file: wunit, old: "--password-file %d/pvwa-password", new: "--password-file /etc/safeperm/pvwa-password", validator: validateSystemd, want: "LoadCredential"},
		{name: "drift unit not oneshot", file: dunit, old: "Type=oneshot", new: "Type=simple", validator: validateSystemd, want: "Type=oneshot"},
		{name: "unknown variable in the env file", file: envfile, old: "SAFEPERM_NATS_URL=", new: "SAFEPERM_NATS_ULR=", validator: validateEnvFile, want: "SAFEPERM_NATS_ULR"},
		{name: "env file misses a variable", file: envfile, old: "#SAFEPERM_RATE=0\n", new: "", validator: validateEnvFile, want: "SAFEPERM_RATE is not documented"},
		{name: "secret set in the env file", file: envfile, old: "#SAFEPERM_NATS_PASSWORD=\n", new: "SAFEPERM_NATS_PASSWORD=hunter2\n", validator: validateEnvFile, want: "secret"},
		{name: "inline comment in the env file", file: envfile, old: "SAFEPERM_LOG_LEVEL=info\n", new: "SAFEPERM_LOG_LEVEL=info # or debug\n", validator: validateEnvFile, want: "not a valid"},
		// NATS
		{name: "nats config syntax error", file: n1, old: "jetstream {", new: "jetstream {{", validator: validateNATS, want: "n1.conf"},
		{name: "nats unknown field", file: single, old: "max_file_store:", new: "max_fle_store:", validator: validateNATS, want: "unknown field"},
		{name: "unquoted duration (2m = 2 million seconds)", file: n1, old: `sync_interval: "2m"`, new: "sync_interval: 2m", validator: validateNATS, want: "sync_interval"},
		{name: "worker may publish anything", file: acc, old: `"safeperm.results.>"`, new: `">"`, validator: validateNATS, want: "worker may publish \">\""},
		{name: "planner may publish jobs to all of JetStream", file: acc, old: `"$JS.API.INFO"` + "\n              \"$JS.API.STREAM.NAMES\"", new: `"$JS.API.>"`, validator: validateNATS, want: "planner may publish $JS.API.STREAM.CREATE.OTHER"},
		{name: "worker may publish jobs", file: acc, old: `"safeperm.dlq.>"`, new: `"safeperm.dlq.>", "safeperm.jobs.>"`, validator: validateNATS, want: "worker may publish safeperm.jobs"},
		{name: "missing route", file: n1, old: "    nats-route://nats-3.example.net:6222\n", new: "", validator: validateNATS, want: "routes"},
		{name: "route TLS dropped", file: n1, old: `  include "../tls-route.conf"`, new: "", validator: validateNATS, want: "route TLS"},
		// Dockerfile and docs
		{name: "unknown variable in the Dockerfile", file: "Dockerfile", old: "USER 65532:65532\n", new: "USER 65532:65532\nENV SAFEPERM_NATS_ULR=nats://x\n", validator: validateDockerfile, want: "SAFEPERM_NATS_ULR"},
		{name: "image runs as root", file: "Dockerfile", old: "USER 65532:65532\n", new: "", validator: validateDockerfile, want: "USER 65532:65532"},
		{name: "misspelled flag in the docs", file: "docs/deploy.md", old: "planner run --mode check --watch", new: "planner run --mode check --wacth", validator: validateDocs, want: "not defined: --wacth"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needs != "" {
				if _, err := exec.LookPath(tt.needs); err != nil {
					t.Skipf("%s not installed", tt.needs)
				}
			}
			tmp := copyTree(t, root)
			path := filepath.Join(tmp, tt.file)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), tt.old) {
				t.Fatalf("test bug: %s does not contain %q", tt.file, tt.old)
			}
			if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(b), tt.old, tt.new)), 0o644); err != nil {
				t.Fatal(err)
			}
			errs := tt.validator(t, tmp, c)
			if !containsErr(errs, tt.want) {
				t.Errorf("mutation not rejected with %q; the validator said:%s", tt.want, errList(errs))
			}
		})
	}
}

func errList(errs []error) string {
	if len(errs) == 0 {
		return " nothing"
	}
	var b strings.Builder
	for _, err := range errs {
		b.WriteString("\n\t" + err.Error())
	}
	return b.String()
}

// copyTree copies what the validators read (deploy/, Dockerfile, .dockerignore, docs/deploy.md)
// to a temporary root.
func copyTree(t *testing.T, root string) string {
	t.Helper()
	tmp := t.TempDir()
	copyFile := func(rel string) {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(tmp, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	err := filepath.WalkDir(filepath.Join(root, "deploy"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, ".go") {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err == nil {
			copyFile(rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"Dockerfile", ".dockerignore", "docs/deploy.md"} {
		copyFile(rel)
	}
	return tmp
}

// scanEnvNames reports SAFEPERM_* names in text that no command accepts.
func scanEnvNames(where, text string, c *cli) []error {
	var errs []error
	seen := map[string]bool{}
	for _, name := range envTokenRE.FindAllString(text, -1) {
		if seen[name] || natsObjectNames[name] {
			continue
		}
		seen[name] = true
		if !c.anyEnv(name) {
			errs = append(errs, fmt.Errorf("%s: %s is accepted by no command (%s)", where, name, c.source))
		}
	}
	return errs
}

// lookPathOr finds a command on PATH or at one of the fallbacks.
func lookPathOr(name string, fallbacks ...string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range fallbacks {
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}
