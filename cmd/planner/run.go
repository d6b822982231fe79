package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/safeperm/safeperm/internal/cliconf"
	"github.com/safeperm/safeperm/internal/worker"
)

// runConfig is everything `planner run` is told.
type runConfig struct {
	PVWA   cliconf.PVWA
	NATS   cliconf.NATS
	Log    cliconf.Log
	Mode   string
	Policy string
	// AllowRemovals lets a policy remove members (absent, removeSource).
	AllowRemovals bool
	Member        string
	MemberType    string
	SearchIn      string
	Permissions   string
	Include       string
	Exclude       string
	CPM           cliconf.StringList
	Report        string
	Watch         triBool
	RunID         string
	DataDir       string
	Workers       int
	Concurrency   int
	Rate          float64
	// EmbeddedListen makes the embedded server accept TCP clients too.
	EmbeddedListen string
	JSON           bool
	// rollbackOf is, for planner rollback, the run to undo.
	rollbackOf string
}

// defaultExcludeFile is read when present and --exclude is not given, as
// CyberArk's SetSafesForPSMUnlockTool does.
const defaultExcludeFile = "excludedSafes.txt"

func newRunFlags(cfg *runConfig, out io.Writer) *cliconf.FlagSet {
	fs := cliconf.NewFlagSet("planner run", "planner run --pvwa-url URL --user NAME [--nats-url URL] [flags]", out)
	registerExec(fs, cfg)
	fs.StringVar(&cfg.Mode, "mode", "apply", "apply: grant what is missing; check: report drift, write nothing (exit 3 on drift)")
	fs.StringVar(&cfg.Policy, "policy", "", "policy file (YAML) of the rules to apply; instead of --member and --permissions (see docs/policy.md)")
	fs.BoolVar(&cfg.AllowRemovals, "allow-removals", false, "let the policy remove members (rules with absent or removeSource); refused without it")
	fs.StringVar(&cfg.Member, "member", "PSMAppUsers", "the Safe member to ensure")
	fs.StringVar(&cfg.MemberType, "member-type", "Group", "its type: User|Group|Role")
	fs.StringVar(&cfg.SearchIn, "search-in", "Vault", "where the PVWA finds the member when it is added: Vault or a directory name")
	fs.StringVar(&cfg.Permissions, "permissions", "listAccounts,unlockAccounts", "comma-separated permissions to ensure (other permissions are kept)")
	fs.StringVar(&cfg.Include, "include", "", "file of Safe names or patterns (* and ?) to change, one per line (default: every Safe)")
	fs.StringVar(&cfg.Exclude, "exclude", "", "file of Safe names or patterns (* and ?) never to change (default: "+defaultExcludeFile+" when present)")
	fs.Var(&cfg.CPM, "cpm", "CPM user names whose Safes are internal, besides those found in managingCPM (repeatable, comma-separated)")
	return fs
}

// registerExec defines the flags of every command that runs jobs (run and
// rollback): PVWA, NATS, logging, workers, report and watch.
func registerExec(fs *cliconf.FlagSet, cfg *runConfig) {
	cfg.PVWA.Register(fs)
	cfg.NATS.Register(fs, "empty = run an embedded server (storing under --data-dir) with --workers in-process workers")
	cfg.Log.Register(fs)
	fs.StringVar(&cfg.Report, "report", "", "write a per-Safe report to this file: .csv or .jsonl")
	fs.Var(&cfg.Watch, "watch", "follow the run to its end and print a summary (default: on with the embedded server, off otherwise)")
	fs.StringVar(&cfg.RunID, "run-id", "", "run id (default: generated); re-running with the same id re-publishes nothing twice")
	fs.StringVar(&cfg.DataDir, "data-dir", "safeperm-data", "embedded server's storage directory")
	fs.IntVar(&cfg.Workers, "workers", 1, "in-process workers with the embedded server (they share one PVWA client and its adaptive limit)")
	fs.IntVar(&cfg.Concurrency, "concurrency", worker.DefaultConcurrency, "most jobs at once per in-process worker; the adaptive limit of PVWA requests decides how many it holds")
	fs.Float64Var(&cfg.Rate, "rate", 0, "cap on PVWA requests per second for the whole run, shared by all its workers (0 = none: the adaptive limit finds the PVWA's capacity)")
	fs.StringVar(&cfg.EmbeddedListen, "embedded-listen", "", "also serve the embedded NATS server on this TCP address (e.g. 127.0.0.1:4222) so planner watch can follow from another terminal")
	fs.BoolVar(&cfg.JSON, "json", false, "progress as JSON lines (for machines) instead of a progress bar or plain lines")
}

func runCmd(ctx context.Context, args []string, getenv cliconf.Getenv, stdout, stderr io.Writer) error {
	var cfg runConfig
	fs := newRunFlags(&cfg, stderr)
	if err := fs.Parse(args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return cliconf.Usagef("unexpected arguments: %v", fs.Args())
	}
	return planRun(ctx, &cfg, setFlags(fs), getenv, stdout, stderr)
}

// setFlags returns the names of the flags set on the command line or by
// their variables.
func setFlags(fs *cliconf.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// triBool is a boolean flag that also knows whether it was set.
type triBool struct {
	set, val bool
}

func (b *triBool) String() string {
	if b == nil || !b.set {
		return "auto"
	}
	return strconv.FormatBool(b.val)
}

func (b *triBool) Set(s string) error {
	if strings.EqualFold(s, "auto") {
		*b = triBool{}
		return nil
	}
	v, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("want true, false or auto")
	}
	*b = triBool{set: true, val: v}
	return nil
}

// IsBoolFlag lets "--watch" stand alone.
func (b *triBool) IsBoolFlag() bool { return true }

// or returns the value when set, else def.
func (b triBool) or(def bool) bool {
	if b.set {
		return b.val
	}
	return def
}
