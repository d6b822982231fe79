// Package proctest runs the project's commands as real processes in tests,
// as a user starts them: Builds compiles them once per test binary (without
// -race, so the processes under test run at full speed while the test
// process keeps the race detector), Start starts one with its output
// captured and kills it at the end of the test.
package proctest

import (
	"errors"
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

// Builds compiles a set of packages once, into a temporary directory.
// Create it in a package variable and call Remove from TestMain.
type Builds struct {
	pkgs []string

	once sync.Once
	dir  string
	err  error
	took time.Duration
}

// NewBuilds returns the builds of pkgs, module-relative ("./cmd/...") or
// full import paths (a tool the module requires, e.g.
// "github.com/nats-io/nats-server/v2").
func NewBuilds(pkgs ...string) *Builds { return &Builds{pkgs: pkgs} }

// Path returns the path of the command name, building every package on the
// first call. It skips the test in -short mode.
func (b *Builds) Path(t testing.TB, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	b.once.Do(b.build)
	if b.err != nil {
		t.Fatal(b.err)
	}
	return filepath.Join(b.dir, name)
}

// Took is how long the build took (zero before it ran).
func (b *Builds) Took() time.Duration { return b.took }

func (b *Builds) build() {
	root, err := moduleRoot()
	if err != nil {
		b.err = err
		return
	}
	if b.dir, b.err = os.MkdirTemp("", "safeperm-bin-"); b.err != nil {
		return
	}
	start := time.Now()
	cmd := exec.Command("go", append([]string{"build", "-o", b.dir + string(filepath.Separator)}, b.pkgs...)...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		b.err = fmt.Errorf("go build %s: %v\n%s", strings.Join(b.pkgs, " "), err, out)
	}
	b.took = time.Since(start)
}

// Remove deletes the built binaries.
func (b *Builds) Remove() {
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}

// moduleRoot is the directory of the go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Proc is one process under test.
type Proc struct {
	Name           string
	Cmd            *exec.Cmd
	Stdout, Stderr testutil.Buffer

	done chan struct{}
	err  error
}

// BaseEnv is the test process's environment without any SAFEPERM_*
// variable, so a developer's settings cannot leak into a case.
func BaseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SAFEPERM_") {
			env = append(env, kv)
		}
	}
	return env
}

// Start starts path with args, with BaseEnv plus env ("K=V" entries). The
// process is SIGKILLed at the end of the test if it still runs; its output
// is logged when the test failed.
func Start(t testing.TB, name string, env []string, path string, args ...string) *Proc {
	t.Helper()
	return StartIn(t, "", name, env, path, args...)
}

// StartIn is Start with the working directory dir ("" for the test's).
func StartIn(t testing.TB, dir, name string, env []string, path string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Name: name, done: make(chan struct{})}
	p.Cmd = exec.Command(path, args...)
	p.Cmd.Dir = dir
	p.Cmd.Env = append(BaseEnv(), env...)
	p.Cmd.Stdout, p.Cmd.Stderr = &p.Stdout, &p.Stderr
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("%s stdout (tail):\n%s\n%s stderr (tail):\n%s", name, Tail(p.Stdout.String(), 3000), name, Tail(p.Stderr.String(), 3000))
		}
	})
	return p
}

// Tail returns the last n bytes of s, marked as cut.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// Running reports whether the process has not exited yet.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit error once Done (nil: exit status 0).
func (p *Proc) Err() error { return p.err }

// PID is the process id.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Kill SIGKILLs the process and waits for it.
func (p *Proc) Kill() {
	if p.Running() {
		_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// Signal sends sig to the process if it runs.
func (p *Proc) Signal(sig os.Signal) {
	if p.Running() {
		_ = p.Cmd.Process.Signal(sig)
	}
}

// Stop asks the process to stop (SIGTERM), waits up to grace, kills it
// after that, and returns its exit code.
func (p *Proc) Stop(grace time.Duration) int {
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
	return ExitCode(p.err)
}

// Wait waits for the process to exit and returns its exit code; it fails
// the test after timeout.
func (p *Proc) Wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.Kill()
		t.Fatalf("%s did not exit within %s\nstdout:\n%s\nstderr:\n%s", p.Name, timeout, Tail(p.Stdout.String(), 2000), Tail(p.Stderr.String(), 4000))
	}
	return ExitCode(p.err)
}

// ExitCode is the exit status of a process's Wait error: 0 for nil, -1 when
// it did not exit normally.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}
