package reliability

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/safeperm/safeperm/internal/proctest"
)

// The recognisable secrets of TestSecretsNeverLeak.
const (
	secretPassword = "Sup3r-Secr3t-PW-xyz"
	secretClient   = "Cl13nt-S3cr3t-CS-abc"
	secretNATS     = "N4ts-S3cr3t-NP-qrs"
)

// TestSecretsNeverLeak runs every command at debug level with recognisable
// PVWA, Identity and NATS secrets, and looks for them in every output, every
// report, every message of every stream and KV bucket, the NATS store on
// disk, and the command line of every running process.
func TestSecretsNeverLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	t.Parallel()
	dir := t.TempDir()
	s := startSim(t, simOptions{Safes: 300, Seed: 69, Password: secretPassword, Latency: 2 * time.Millisecond})
	cloud := startSim(t, simOptions{Safes: 300, Seed: 70, Password: secretClient, Extra: []string{"--cloud"}})
	ns := startNATS(t, dir, fmt.Sprintf("authorization { user: safeperm, password: %q }", secretNATS))
	natsEnv := []string{"SAFEPERM_NATS_USER=safeperm", "SAFEPERM_NATS_PASSWORD=" + secretNATS, "SAFEPERM_LOG_LEVEL=debug"}
	env := append(s.env(), natsEnv...)
	var procs []*proc
	cmdlines := 0
	sampleCmdlines := func() {
		for _, p := range procs {
			if !p.Running() {
				continue
			}
			b, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID()) + "/cmdline")
			if err != nil {
				continue
			}
			cmdlines++
			checkNoSecret(t, p.Name+" command line", b)
		}
	}
	run := func(name string, env []string, path string, want []int, args ...string) *proc {
		p := start(t, name, env, path, args...)
		procs = append(procs, p)
		time.Sleep(50 * time.Millisecond)
		sampleCmdlines()
		code := p.Wait(t, 2*time.Minute)
		if !contains(want, code) {
			t.Errorf("%s exit %d, want %v\n%s", name, code, want, proctest.Tail(p.Stderr.String(), 2000))
		}
		return p
	}
	worker := start(t, "worker", env, bin(t, "worker"), append(s.pvwaArgs(), "--nats-url", ns.URL, "--log-format", "json", "--log-level", "debug", "--rate", "0")...)
	procs = append(procs, worker)

	report := filepath.Join(dir, "run.csv")
	run("planner run", env, bin(t, "planner"), []int{1}, plannerArgs(s, ns.URL, "--run-id", "sec-1", "--report", report, "--log-level", "debug")...)
	read := []string{"--nats-url", ns.URL, "--log-format", "json", "--log-level", "debug"}
	run("planner watch", env, bin(t, "planner"), []int{1}, append([]string{"watch", "sec-1"}, read...)...)
	run("planner status", env, bin(t, "planner"), []int{0}, append([]string{"status"}, read...)...)
	run("planner report", env, bin(t, "planner"), []int{0}, append([]string{"report", "sec-1", "--format", "json"}, read...)...)
	rb := filepath.Join(dir, "rollback.jsonl")
	rbArgs := append([]string{"rollback", "sec-1"}, s.pvwaArgs()...)
	rbArgs = append(rbArgs, "--run-id", "sec-rb", "--report", rb, "--watch")
	run("planner rollback", env, bin(t, "planner"), []int{0, 1}, append(rbArgs, read...)...)
	sampleCmdlines()
	worker.Stop(10 * time.Second)

	// Privilege Cloud: the client secret, on the embedded default.
	cloudReport := filepath.Join(dir, "cloud.jsonl")
	cloudArgs := []string{"run", "--auth", "identity", "--pvwa-url", cloud.URL, "--identity-url", cloud.Root, "--client-id", "Administrator",
		"--data-dir", filepath.Join(dir, "embedded"), "--report", cloudReport, "--run-id", "sec-cloud", "--log-format", "json", "--log-level", "debug"}
	run("planner run (identity)", []string{"SAFEPERM_CLIENT_SECRET=" + secretClient}, bin(t, "planner"), []int{0, 1}, cloudArgs...)

	// Every output and file.
	for _, p := range append(procs, s.proc, cloud.proc) {
		checkNoSecret(t, p.Name+" stdout", []byte(p.Stdout.String()))
		checkNoSecret(t, p.Name+" stderr", []byte(p.Stderr.String()))
	}
	files := 0
	for _, root := range []string{dir} {
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasSuffix(path, ".conf") {
				return nil
			}
			b, err := os.ReadFile(path)
			if err == nil {
				files++
				checkNoSecret(t, path, b)
			}
			return nil
		})
	}
	// Every message of every stream and bucket.
	js := connect(t, ns.URL, nats.UserInfo("safeperm", secretNATS))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	msgs, streams := 0, 0
	for name := range js.StreamNames(ctx).Name() {
		streams++
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info := st.CachedInfo()
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if err != nil {
				continue // deleted (acked work-queue messages)
			}
			msgs++
			checkNoSecret(t, name+" message "+m.Subject, m.Data)
			for k, vs := range m.Header {
				checkNoSecret(t, name+" header "+k, []byte(strings.Join(vs, "\n")))
			}
		}
	}
	logFigure(t, "secrets: 0 occurrences of the PVWA password, client secret or NATS password in %d processes' output, %d files (reports, NATS store), %d messages of %d streams and buckets, %d command lines",
		len(procs)+2, files, msgs, streams, cmdlines)
}

func checkNoSecret(t *testing.T, where string, b []byte) {
	t.Helper()
	for _, sec := range []string{secretPassword, secretClient, secretNATS} {
		if i := bytes.Index(b, []byte(sec)); i >= 0 {
			lo, hi := max(0, i-120), min(len(b), i+len(sec)+40)
			t.Errorf("secret %q found in %s: …%s…", sec[:6]+"…", where, b[lo:hi])
		}
	}
}

func contains(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
