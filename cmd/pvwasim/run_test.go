package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/testutil"
)

// start runs pvwasim in-process and returns its base URL, a function that
// stops it and returns run's error, and its stderr.
func start(t *testing.T, args []string, env map[string]string) (string, func() error, *testutil.Buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	stderr := &testutil.Buffer{}
	done := make(chan error, 1)
	go func() {
		err := run(ctx, args, func(k string) string { return env[k] }, pw, stderr, nil)
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, pr)
	}()
	var url string
	select {
	case l, ok := <-lines:
		if !ok {
			cancel()
			t.Fatalf("no URL on stdout; run: %v; stderr:\n%s", <-done, stderr)
		}
		url = l
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatalf("no URL within 20s; stderr:\n%s", stderr)
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second):
			return errors.New("run did not return")
		}
	}
	t.Cleanup(func() { _ = stop() })
	return url, stop, stderr
}

func logonStatus(t *testing.T, c *http.Client, base, pass string) (int, string) {
	t.Helper()
	res, err := c.Post(base+"/API/Auth/CyberArk/Logon", "application/json",
		strings.NewReader(`{"username":"Administrator","password":"`+pass+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestRunPrintsURLFirstAndServes(t *testing.T) {
	t.Parallel()
	url, stop, stderr := start(t, []string{"--safes", "500", "--seed", "3", "--addr", "127.0.0.1:0", "--slots", "3"}, nil)
	if !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.HasSuffix(url, "/PasswordVault") {
		t.Fatalf("first line = %q", url)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	if status, body := logonStatus(t, c, url, "Cyberark1"); status != 200 || !strings.HasPrefix(body, `"`) {
		t.Fatalf("logon = %d %s", status, body)
	}
	res, err := c.Get(strings.TrimSuffix(url, "/PasswordVault") + "/_admin/vault")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(b), `"safes":500`) || !strings.Contains(string(b), `"seed":3`) {
		t.Errorf("vault info = %s", b)
	}
	res, err = c.Get(strings.TrimSuffix(url, "/PasswordVault") + "/_admin/stats")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(b), `"queue":{"slots":3,`) || !strings.Contains(string(b), `"count":1,`) {
		t.Errorf("stats = %s, want a queue of 3 slots that served the logon", b)
	}
	if err := stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}
	log := stderr.String()
	for _, want := range []string{"PVWA simulator serving", "/_admin", "user=Administrator", "Cyberark1 (default)", "stopped"} {
		if !strings.Contains(log, want) {
			t.Errorf("stderr lacks %q:\n%s", want, log)
		}
	}
}

func TestRunStopsPromptlyWithUnusedConnections(t *testing.T) {
	t.Parallel()
	url, stop, _ := start(t, []string{"--safes", "10", "--shutdown-timeout", "30s"}, nil)
	host := strings.TrimPrefix(strings.TrimSuffix(url, "/PasswordVault"), "http://")
	conn, err := net.Dial("tcp", host) // opened, never used
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := &http.Client{Transport: &http.Transport{}} // keeps an idle connection
	if status, _ := logonStatus(t, c, url, "Cyberark1"); status != 200 {
		t.Fatalf("logon = %d", status)
	}
	begin := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("shutdown took %s with unused connections open, want well under 5s", took)
	}
}

func TestRunEnvironmentAndTLS(t *testing.T) {
	t.Parallel()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	env := map[string]string{
		"SAFEPERM_SIM_SAFES":          "50",
		"SAFEPERM_SIM_TLS":            "true",
		"SAFEPERM_SIM_P500":           "1",
		"SAFEPERM_SIM_ADMIN_PASSWORD": "s3cret",
		"SAFEPERM_SIM_LOG_FORMAT":     "json",
	}
	url, stop, stderr := start(t, []string{"--ca-out", ca, "--p500", "0"}, env) // the flag wins over the environment
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("URL = %q", url)
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("--ca-out is not a PEM certificate")
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer c.CloseIdleConnections()
	if status, _ := logonStatus(t, c, url, "Cyberark1"); status != 403 {
		t.Errorf("default password with SAFEPERM_SIM_ADMIN_PASSWORD set: %d", status)
	}
	status, body := logonStatus(t, c, url, "s3cret")
	if status != 200 {
		t.Fatalf("logon = %d %s", status, body)
	}
	req, _ := http.NewRequest("GET", url+"/API/Safes", nil)
	req.Header.Set("Authorization", strings.Trim(body, `"`))
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("GET Safes with --p500 0 over SAFEPERM_SIM_P500=1: %d", res.StatusCode)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if log := stderr.String(); strings.Contains(log, "s3cret") || !strings.Contains(log, `"password":"from $SAFEPERM_SIM_ADMIN_PASSWORD"`) {
		t.Errorf("stderr leaks or lacks the password source:\n%s", log)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"unknown flag", []string{"--nope"}, nil, []string{"nope"}},
		{"bad values", []string{"--safes", "0", "--p429", "1.5", "--internal", "maybe", "--log-level", "loud", "--slots", "-1"},
			nil, []string{"--safes=0", "Faults.P429", "--internal", "--log-level", "Faults.Slots"}},
		{"bad env", nil, map[string]string{"SAFEPERM_SIM_LATENCY": "soon"}, []string{"SAFEPERM_SIM_LATENCY"}},
		{"ca-out without tls", []string{"--ca-out", "x.pem"}, nil, []string{"--ca-out needs --tls"}},
		{"extra argument", []string{"serve"}, nil, []string{"unexpected arguments"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tt.args, func(k string) string { return tt.env[k] }, &stdout, &stderr, nil)
			if !errors.Is(err, errUsage) {
				t.Fatalf("run = %v, want a usage error", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error()+stderr.String(), w) {
					t.Errorf("error does not mention %q: %v\n%s", w, err, stderr.String())
				}
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
		})
	}
}

// TestBinary builds pvwasim and checks the real process: URL on the first
// line, flushed at once, and a clean exit on SIGINT.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "pvwasim")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--safes", "1000000")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr testutil.Buffer
	cmd.Stderr = &stderr
	began := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("read first line: %v; stderr:\n%s", err, stderr.String())
	}
	if d := time.Since(began); d > 3*time.Second {
		t.Errorf("1M Safes: URL after %s", d)
	}
	url := strings.TrimSpace(line)
	if !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.HasSuffix(url, "/PasswordVault") {
		t.Fatalf("first line = %q", line)
	}
	if status, _ := logonStatus(t, &http.Client{Timeout: 10 * time.Second}, url, "Cyberark1"); status != 200 {
		t.Errorf("logon = %d", status)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Errorf("exit after SIGINT: %v; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("pvwasim did not exit after SIGINT")
	}
	if !strings.Contains(stderr.String(), "stopped") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
}
