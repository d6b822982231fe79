package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/testutil"
)

// The tests that run the real binaries build planner, worker and pvwasim
// once per test binary, without -race: the processes run at full speed,
// the test process keeps the race detector.
var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binary returns the path of a freshly built command: planner, worker or
// pvwasim.
func binary(t testing.TB, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "safeperm-planner-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+string(filepath.Separator), "./cmd/planner", "./cmd/worker", "./cmd/pvwasim")
		cmd.Dir = filepath.Join("..", "..") // the module root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

// lockedBuffer is an io.Writer safe for concurrent writes and reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *lockedBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *lockedBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is one process under test.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdout lockedBuffer
	stderr lockedBuffer
	done   chan struct{}
	err    error
}

// startProc starts a binary with the test's environment minus every
// SAFEPERM_* variable, plus env. It is killed at the end of the test if it
// still runs; its stderr is shown when the test failed.
func startProc(t testing.TB, name string, env []string, path string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SAFEPERM_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s stdout:\n%s\n%s stderr (tail):\n%s", name, tail(p.stdout.String(), 3000), name, tail(p.stderr.String(), 3000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) kill() {
	if p.running() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// stop sends SIGTERM and waits for the exit code, killing after grace.
func (p *proc) stop(t testing.TB, grace time.Duration) int {
	t.Helper()
	if p.running() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	return p.wait(t, grace)
}

// wait returns the exit code, failing the test after timeout.
func (p *proc) wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.kill()
		t.Fatalf("%s did not exit within %s", p.name, timeout)
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatalf("%s: %v", p.name, p.err)
	return -1
}

// startSim starts bin/pvwasim with args and returns its API base URL (its
// first line of output).
func startSim(t testing.TB, args ...string) (string, *proc) {
	t.Helper()
	p := startProc(t, "pvwasim", nil, binary(t, "pvwasim"), append([]string{"--addr", "127.0.0.1:0"}, args...)...)
	var url string
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if !p.running() {
			t.Fatalf("pvwasim exited: %v\n%s", p.err, p.stderr.String())
		}
		line, _, ok := strings.Cut(p.stdout.String(), "\n")
		if !ok {
			return fmt.Errorf("no URL printed yet")
		}
		url = line
		return nil
	})
	return url, p
}

// lines returns the non-empty lines of s.
func lines(s string) [][]byte {
	var out [][]byte
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			out = append(out, bytes.Clone(sc.Bytes()))
		}
	}
	return out
}

// jsonLines decodes every line of out as one JSON object without a
// repeated key; any other line fails the test.
func jsonLines(t testing.TB, what, out string) []map[string]any {
	t.Helper()
	var objs []map[string]any
	for i, l := range lines(out) {
		m, err := testutil.DecodeObject(l)
		if err != nil {
			t.Errorf("%s line %d is not one JSON object: %v\n%s", what, i+1, err, l)
			continue
		}
		objs = append(objs, m)
	}
	return objs
}

// logRecords checks that every line of stderr is a zerolog JSON record
// (level and time present, no key twice) and that durations are Go
// duration strings, and returns the records.
func logRecords(t testing.TB, what, stderr string) []map[string]any {
	t.Helper()
	recs := jsonLines(t, what+" stderr", stderr)
	for i, r := range recs {
		if _, ok := r["level"].(string); !ok {
			t.Errorf("%s log record %d has no level: %v", what, i+1, r)
		}
		ts, _ := r["time"].(string)
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || !strings.Contains(ts, ".") {
			t.Errorf("%s log record %d: time %q is not RFC 3339 with milliseconds", what, i+1, r["time"])
		}
		for _, k := range []string{"took", "retry_in", "duration", "grace", "pause", "startup"} {
			if v, ok := r[k]; ok {
				if s, isString := v.(string); !isString {
					t.Errorf("%s log record %d: %s = %v, want a Go duration string", what, i+1, k, v)
				} else if _, err := time.ParseDuration(s); err != nil {
					t.Errorf("%s log record %d: %s = %q: %v", what, i+1, k, s, err)
				}
			}
		}
	}
	return recs
}
