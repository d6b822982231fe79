package jobs_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/natsembed"
	"github.com/safeperm/safeperm/internal/secret"
	"github.com/safeperm/safeperm/internal/testutil"
)

// startAuthServer runs a TCP server that requires user/password.
func startAuthServer(t *testing.T, user, pw string) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		Username: user, Password: pw,
	})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("auth server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

func TestConnect(t *testing.T) {
	t.Parallel()
	const pw = "Sup3r-S3cret-pw!"
	ns := startAuthServer(t, "safeperm", pw)
	var logs testutil.Buffer
	log := zerolog.New(&logs)
	ctx := testutil.Context(t, 20*time.Second)

	nc, err := jobs.Connect(ctx, jobs.ConnectOptions{
		URLs: []string{ns.ClientURL()}, Name: "safeperm-test", User: "safeperm", Password: secret.New(pw), Logger: log,
	})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	if err := nc.Publish("x", nil); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	nc.Close()

	start := time.Now()
	_, err = jobs.Connect(ctx, jobs.ConnectOptions{
		URLs: []string{ns.ClientURL()}, User: "safeperm", Password: secret.New("wrong"), Logger: log,
	})
	if err == nil {
		t.Fatal("Connect with a wrong password succeeded")
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("auth failure took %s; it must not be retried", time.Since(start))
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("error reveals the password: %v", err)
	}
	if out := logs.String(); strings.Contains(out, pw) || strings.Contains(out, "wrong") {
		t.Errorf("logs reveal a password:\n%s", out)
	}
	if !strings.Contains(logs.String(), "connected to NATS") {
		t.Errorf("no connect log line:\n%s", logs.String())
	}
}

func TestConnectInProcess(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 20*time.Second)
	srv, err := natsembed.Start(ctx, natsembed.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := jobs.Connect(ctx, jobs.ConnectOptions{InProcess: srv, Name: "in-process"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if !nc.IsConnected() {
		t.Error("not connected")
	}
}

func TestConnectRetriesUntilCtxEnds(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
	defer cancel()
	_, err = jobs.Connect(ctx, jobs.ConnectOptions{URLs: []string{"nats://127.0.0.1:" + strconv.Itoa(port)}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Connect to a closed port = %v, want DeadlineExceeded after retries", err)
	}
	if _, err := jobs.Connect(context.Background(), jobs.ConnectOptions{}); err == nil {
		t.Error("Connect without URLs succeeded")
	}
}
