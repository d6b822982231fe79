package natsembed

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/testutil"
)

func startT(t *testing.T, o Options) *Server {
	t.Helper()
	if o.StoreDir == "" {
		o.StoreDir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := Start(ctx, o)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// roundTrip creates a stream, publishes one message and reads it back.
func roundTrip(t *testing.T, nc *nats.Conn, replicas int) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var st jetstream.Stream
	// A fresh cluster may still be electing; retry with short attempts.
	for {
		actx, acancel := context.WithTimeout(ctx, 3*time.Second)
		st, err = js.CreateOrUpdateStream(actx, jetstream.StreamConfig{
			Name: "T", Subjects: []string{"t.>"}, Replicas: replicas, Storage: jetstream.FileStorage,
		})
		acancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("CreateOrUpdateStream: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ack, err := js.Publish(ctx, "t.one", []byte("hello"))
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	m, err := st.GetMsg(ctx, ack.Sequence)
	if err != nil {
		t.Fatalf("GetMsg: %v", err)
	}
	if string(m.Data) != "hello" {
		t.Errorf("GetMsg data = %q, want %q", m.Data, "hello")
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != replicas {
		t.Errorf("replicas = %d, want %d", info.Config.Replicas, replicas)
	}
}

func TestStartModes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		listen    string
		listening bool
	}{
		{"in-process", "", false},
		{"tcp", "127.0.0.1:0", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs testutil.Buffer
			s := startT(t, Options{Listen: tt.listen, Logger: zerolog.New(&logs)})
			if s.Listening() != tt.listening {
				t.Errorf("Listening() = %v, want %v", s.Listening(), tt.listening)
			}
			nc, err := s.Connect()
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			roundTrip(t, nc, 1)

			if tt.listening {
				// A plain TCP client with nothing but the URL.
				url := s.ClientURL()
				if strings.HasSuffix(url, ":0") {
					t.Fatalf("ClientURL() = %q, want a real port", url)
				}
				nc2, err := nats.Connect(url)
				if err != nil {
					t.Fatalf("nats.Connect(%q): %v", url, err)
				}
				defer nc2.Close()
				if !nc2.IsConnected() {
					t.Error("TCP client not connected")
				}
			} else if _, err := nats.Connect(s.ClientURL(), nats.Timeout(500*time.Millisecond)); err == nil {
				t.Errorf("TCP connect to an in-process only server succeeded")
			}
			if !strings.Contains(logs.String(), `"component":"nats-server"`) {
				t.Errorf("server logs not routed through zerolog; got %q", logs.String())
			}
		})
	}
}

func TestShutdownClean(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startT(t, Options{StoreDir: dir})
	nc, err := s.Connect()
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, nc, 1)
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("connection did not close after Drain")
	}
	s.Shutdown()
	s.Shutdown() // idempotent
	if s.NATS().Running() {
		t.Fatal("server still running after Shutdown")
	}

	// The data survives a restart on the same StoreDir.
	s2 := startT(t, Options{StoreDir: dir})
	nc2, err := s2.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	js, _ := jetstream.New(nc2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "T")
	if err != nil {
		t.Fatalf("stream after restart: %v", err)
	}
	if n := st.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("msgs after restart = %d, want 1", n)
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		o    Options
	}{
		{"no store dir", Options{}},
		{"bad listen", Options{StoreDir: t.TempDir(), Listen: "nonsense"}},
		{"bad port", Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:99999"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := Start(context.Background(), tt.o); err == nil {
				s.Shutdown()
				t.Fatal("Start succeeded, want error")
			}
		})
	}
}

// TestNoSigs proves the embedded server ignores SIGTERM: without NoSigs it
// would call os.Exit, which the test framework reports as a failure.
func TestNoSigs(t *testing.T) {
	// Not parallel: it signals the whole test process.
	s := startT(t, Options{})
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	defer signal.Stop(ch)
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("SIGTERM not delivered")
	}
	// Give a (wrongly) installed server handler the same chance to run.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if !s.NATS().Running() {
			t.Fatal("server stopped on SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("cluster formation takes seconds")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	servers, err := StartCluster(ctx, 3, t.TempDir(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ShutdownAll(servers) })
	nc, err := nats.Connect(strings.Join(ClientURLs(servers), ","), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	roundTrip(t, nc, 3)

	// The stream survives losing one node.
	js, _ := jetstream.New(nc)
	st, err := js.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	leader := st.CachedInfo().Cluster.Leader
	for _, s := range servers {
		if s.Name() == leader {
			s.Shutdown()
		}
	}
	for {
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.Publish(actx, "t.two", []byte("after failover"))
		acancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil || errors.Is(err, nats.ErrConnectionClosed) {
			t.Fatalf("publish after leader loss: %v", err)
		}
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Errorf("msgs after failover = %d, want 2", info.State.Msgs)
	}
}
