package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/cliconf"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
)

// TestWatchFromSecondProcess follows a run with `planner watch --json` in
// another process that shares only NATS with the planner, and checks the
// final counts against the simulator's state.
func TestWatchFromSecondProcess(t *testing.T) {
	bin := binary(t, "planner")
	srv := sim(t, pamtest.Options{Safes: 1500, Seed: 45, Faults: pamtest.Faults{Latency: 20 * time.Millisecond}})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	var wg sync.WaitGroup
	var code int
	var out string
	wg.Add(1)
	go func() {
		defer wg.Done()
		code, out, _ = plannerRun(t, srv, filepath.Join(t.TempDir(), "data"), "run", "--run-id", "watched", "--embedded-listen", addr,
			"--workers", "1", "--concurrency", "4")
	}()

	// The watcher joins while the run is under way.
	time.Sleep(700 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "watch", "watched", "--json", "--nats-url", "nats://"+addr)
	cmd.Env = append(os.Environ(), "SAFEPERM_LOG_LEVEL=error")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	wg.Wait()
	if code != cliconf.ExitFailed {
		t.Fatalf("planner exit %d\n%s", code, out)
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != cliconf.ExitFailed {
		t.Fatalf("watch: %v (want exit 1 like the planner)\n%s\n%s", err, stdout.String(), stderr.String())
	}

	var last map[string]any
	lines := 0
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		lines++
		last = nil
		if err := json.Unmarshal(sc.Bytes(), &last); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", lines, err, sc.Text())
		}
	}
	if last == nil || last["final"] != true || last["complete"] != true {
		t.Fatalf("last line %v", last)
	}
	counts := last["counts"].(map[string]any)

	// What the simulator says.
	v := srv.Vault()
	want := map[string]int{}
	for i := range v.Len() {
		in := v.Info(i)
		st := srv.SafeStateAt(i)
		m, isMember := st.Member(pamtest.PSMAppUsers)
		switch {
		case in.Access == pamtest.AccessHidden:
		case in.Internal:
			want["skipped"]++
		case st.Changed:
			if !isMember || m.Permissions.Missing(wantPerms) != 0 {
				t.Errorf("%s changed but not compliant", in.Name)
			}
			want["applied"]++
		case isMember && m.Permissions.Missing(wantPerms) == 0:
			want["unchanged"]++
		default:
			want["failed"]++
		}
	}
	for _, s := range []string{"applied", "unchanged", "skipped", "failed", "drift", "conflict"} {
		if int(counts[s].(float64)) != want[s] {
			t.Errorf("watch says %s=%v, the simulator %d", s, counts[s], want[s])
		}
	}
	t.Logf("watch --json: %d lines, final %v", lines, last)
}
