package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/safeperm/safeperm/internal/pam/pamtest"
)

// natsServerVersion is the nats-server `make tools` installs; the bench
// uses ../bin/nats-server when present, else installs this version.
const natsServerVersion = "v2.15.2"

// binaries builds bin/planner, bin/worker and bin/pvwasim of this tree
// once, into a temporary directory (the repository's bin/ is left alone),
// and finds a nats-server.
var binaries = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "safeperm-bench-bin")
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-trimpath", "-o", dir+"/", "../cmd/planner", "../cmd/worker", "../cmd/pvwasim")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build: %w", err)
	}
	if abs, err := filepath.Abs("../bin/nats-server"); err == nil {
		if _, err := os.Stat(abs); err == nil {
			return dir, os.Symlink(abs, filepath.Join(dir, "nats-server"))
		}
	}
	cmd = exec.Command("go", "install", "github.com/nats-io/nats-server/v2@"+natsServerVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go install nats-server: %w", err)
	}
	return dir, nil
})

func bin(b testing.TB, name string) string {
	b.Helper()
	dir, err := binaries()
	if err != nil {
		b.Fatal("build:", err)
	}
	return filepath.Join(dir, name)
}

// proc is a process of the benchmark, its output in files of its own.
type proc struct {
	name    string
	cmd     *exec.Cmd
	outPath string
	errPath string
	done    chan struct{}
	err     error
}

// startProc starts bin with args in dir (a temporary directory when
// empty), with env added to the benchmark's environment.
func startProc(b testing.TB, name, dir string, env []string, bin string, args ...string) *proc {
	b.Helper()
	logs := b.TempDir()
	if dir == "" {
		dir = b.TempDir()
	}
	p := &proc{name: name, outPath: filepath.Join(logs, "stdout"), errPath: filepath.Join(logs, "stderr"), done: make(chan struct{})}
	out, err := os.Create(p.outPath)
	if err != nil {
		b.Fatal(err)
	}
	errf, err := os.Create(p.errPath)
	if err != nil {
		b.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = out, errf
	if err := p.cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		out.Close()
		errf.Close()
		close(p.done)
	}()
	b.Cleanup(func() { p.stop(5 * time.Second) })
	return p
}

// wait waits for the process to exit and returns its exit code (-1 when
// it did not exit in time or died of a signal).
func (p *proc) wait(timeout time.Duration) int {
	select {
	case <-p.done:
	case <-time.After(timeout):
		return -1
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode()
	}
	return -1
}

// stop sends SIGTERM, waits up to timeout, then kills.
func (p *proc) stop(timeout time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) stdout() string { b, _ := os.ReadFile(p.outPath); return string(b) }
func (p *proc) stderr() string { b, _ := os.ReadFile(p.errPath); return string(b) }

// tail is the last lines of the process's stderr, for failure messages.
func (p *proc) tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.stderr(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// sim is a running bin/pvwasim.
type sim struct {
	*proc
	url   string // API base, .../PasswordVault
	admin string // .../_admin
}

func startSim(b testing.TB, args ...string) *sim {
	b.Helper()
	p := startProc(b, "pvwasim", "", nil, bin(b, "pvwasim"), append([]string{"--log-level", "warn"}, args...)...)
	deadline := time.Now().Add(30 * time.Second)
	for {
		f, _ := os.Open(p.outPath)
		if f != nil {
			line, err := bufio.NewReader(f).ReadString('\n')
			f.Close()
			if err == nil {
				u := strings.TrimSpace(line)
				return &sim{proc: p, url: u, admin: strings.TrimSuffix(u, "/PasswordVault") + "/_admin"}
			}
		}
		select {
		case <-p.done:
			b.Fatalf("pvwasim exited: %s", p.tail(5))
		default:
		}
		if time.Now().After(deadline) {
			b.Fatal("pvwasim printed no URL")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var adminClient = &http.Client{Timeout: 10 * time.Second}

func (s *sim) stats(b testing.TB) pamtest.Stats {
	b.Helper()
	resp, err := adminClient.Get(s.admin + "/stats")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var st pamtest.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		b.Fatal(err)
	}
	return st
}

func (s *sim) resetStats(b testing.TB) {
	b.Helper()
	resp, err := adminClient.Post(s.admin+"/reset-stats", "", nil)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b.Fatalf("reset-stats: %s", resp.Status)
	}
}

// natsServer is a running bin/nats-server with JetStream.
type natsServer struct {
	*proc
	url string
}

func startNATSServer(b testing.TB) *natsServer {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	p := startProc(b, "nats-server", "", nil, bin(b, "nats-server"), "-js", "-sd", b.TempDir(), "-a", "127.0.0.1", "-p", fmt.Sprint(port))
	s := &natsServer{proc: p, url: fmt.Sprintf("nats://127.0.0.1:%d", port)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		nc, err := nats.Connect(s.url)
		if err == nil {
			nc.Close()
			return s
		}
		select {
		case <-ctx.Done():
			b.Fatalf("nats-server not reachable: %v\n%s", err, p.tail(5))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }
