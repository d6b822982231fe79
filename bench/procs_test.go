package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/safeperm/safeperm/internal/pam/pamtest"
	"github.com/safeperm/safeperm/internal/proctest"
)

// builds are the shipped binaries of this tree and the nats-server the
// module requires (the version `make tools` installs), built once into a
// temporary directory (the repository's bin/ is left alone).
var builds = proctest.NewBuilds("./cmd/planner", "./cmd/worker", "./cmd/pvwasim", "github.com/nats-io/nats-server/v2")

func bin(b testing.TB, name string) string { return builds.Path(b, name) }

// proc is a process of the benchmark.
type proc = proctest.Proc

// startProc starts bin with args in dir (a temporary directory when
// empty), with env added to the benchmark's environment.
func startProc(b testing.TB, name, dir string, env []string, bin string, args ...string) *proc {
	b.Helper()
	if dir == "" {
		dir = b.TempDir()
	}
	return proctest.StartIn(b, dir, name, env, bin, args...)
}

// lastLines is the last n lines of a process's stderr, for failure
// messages.
func lastLines(p *proc, n int) string {
	lines := strings.Split(strings.TrimRight(p.Stderr.String(), "\n"), "\n")
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
		if line, _, ok := strings.Cut(p.Stdout.String(), "\n"); ok {
			u := strings.TrimSpace(line)
			return &sim{proc: p, url: u, admin: strings.TrimSuffix(u, "/PasswordVault") + "/_admin"}
		}
		select {
		case <-p.Done():
			b.Fatalf("pvwasim exited: %s", lastLines(p, 5))
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

// natsServer is a running nats-server (built from the module, see builds) with JetStream.
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
			b.Fatalf("nats-server not reachable: %v\n%s", err, lastLines(p, 5))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }
