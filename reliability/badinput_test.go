package reliability

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/proctest"
	"github.com/safeperm/safeperm/internal/testutil"
)

// TestBadInput feeds the planner and the worker malformed scope files and
// bad flags. Each must exit 2 with an error naming the problem (and the
// file line), before anything is written to the PVWA or published to NATS.
func TestBadInput(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	t.Parallel()
	dir := t.TempDir()
	s := startSim(t, simOptions{Safes: 200, Seed: 65})
	ns := startNATS(t, dir, "")
	files := map[string][]byte{
		"utf16.txt":   append([]byte{0xFF, 0xFE}, []byte("S\x00a\x00f\x00e\x00\n\x00")...),
		"nul.txt":     []byte("Finance Team 001\nbad\x00name\n"),
		"latin1.txt":  []byte("ok\nZ\xfcrich Ops 3\n"),
		"pipe.txt":    []byte("# comment\nSafe A\nFinance|Ops\n"),
		"toolong.txt": []byte("a\nb\n" + strings.Repeat("x", 300) + "\n"),
	}
	for name, b := range files {
		writeFile(t, dir, name, string(b))
	}
	f := func(name string) string { return filepath.Join(dir, name) }
	good := s.env()
	tests := []struct {
		name string
		bin  string
		args []string
		env  []string
		want []string // substrings of stderr
	}{
		{"include UTF-16", "planner", []string{"--include", f("utf16.txt")}, good, []string{"utf16.txt", "UTF-16"}},
		{"include NUL", "planner", []string{"--include", f("nul.txt")}, good, []string{"nul.txt line 2", "binary"}},
		{"include invalid UTF-8", "planner", []string{"--include", f("latin1.txt")}, good, []string{"latin1.txt line 2", "UTF-8"}},
		{"include name with |", "planner", []string{"--include", f("pipe.txt")}, good, []string{"pipe.txt line 3", "not allowed"}},
		{"include name too long", "planner", []string{"--include", f("toolong.txt")}, good, []string{"toolong.txt line 3", "too long"}},
		{"exclude invalid UTF-8", "planner", []string{"--exclude", f("latin1.txt")}, good, []string{"--exclude", "latin1.txt line 2"}},
		{"unknown permission", "planner", []string{"--permissions", "listAccounts,unlockEverything"}, good, []string{"--permissions", "unlockEverything"}},
		{"bad mode", "planner", []string{"--mode", "yolo"}, good, []string{"--mode", "yolo"}},
		{"bad pvwa url", "planner", []string{"--pvwa-url", "ftp://pvwa.example.com"}, good, []string{"--pvwa-url", "ftp"}},
		{"plain http off loopback", "planner", []string{"--pvwa-url", "http://pvwa.example.com"}, good, []string{"--pvwa-url", "https"}},
		{"password flag", "planner", []string{"--password", "hunter2"}, good, []string{"--password", "process list"}},
		{"no password", "planner", nil, nil, []string{"SAFEPERM_PASSWORD"}},
		{"wrong password", "planner", nil, []string{"SAFEPERM_PASSWORD=wrong-password"}, []string{"ITATS004E"}},
		{"bad nats url", "planner", []string{"--nats-url", "http://127.0.0.1:4222"}, good, []string{"--nats-url", "nats://"}},
		{"credentials in nats url", "planner", []string{"--nats-url", "nats://u:p@127.0.0.1:4222"}, good, []string{"--nats-url", "credentials"}},
		{"worker unknown flag value", "worker", []string{"--concurrency", "0"}, good, []string{"--concurrency"}},
		{"worker password flag", "worker", []string{"--password", "hunter2"}, good, []string{"--password"}},
		{"worker wrong password", "worker", nil, []string{"SAFEPERM_PASSWORD=wrong-password"}, []string{"ITATS004E"}},
		{"worker bad nats url", "worker", []string{"--nats-url", "nats://u:p@127.0.0.1:4222"}, good, []string{"credentials"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			if tc.bin == "planner" {
				args = plannerArgs(s, ns.URL, "--watch=false", "--run-id", "bad-input")
			} else {
				args = append(s.pvwaArgs(), "--nats-url", ns.URL, "--log-format", "json")
			}
			args = append(args, tc.args...)
			p := start(t, tc.bin, tc.env, bin(t, tc.bin), args...)
			code := p.Wait(t, 30*time.Second)
			stderr := p.Stderr.String()
			if code != 2 {
				t.Errorf("exit %d, want 2\nstderr:\n%s", code, proctest.Tail(stderr, 2000))
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, proctest.Tail(stderr, 2000))
				}
			}
		})
	}
	st := s.stats(t)
	if st.MemberWrites.Total != 0 {
		t.Errorf("memberWrites.total = %d, want 0", st.MemberWrites.Total)
	}
	js := connect(t, ns.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	published := 0
	if str, err := js.Stream(ctx, jobs.JobsStream); err == nil {
		info, err := str.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		published = int(info.State.LastSeq)
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatal(err)
	}
	if published != 0 {
		t.Errorf("%d jobs were published", published)
	}
	logFigure(t, "bad input: %d cases exited 2 with the problem named; member writes %d, jobs published %d", len(tests), st.MemberWrites.Total, published)
}

// TestPoisonJobs publishes garbage on the jobs subjects while a worker
// runs: every message must be dead-lettered to SAFEPERM_DLQ with a reason,
// none retried, nothing written.
func TestPoisonJobs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	t.Parallel()
	dir := t.TempDir()
	s := startSim(t, simOptions{Safes: 100, Seed: 66})
	ns := startNATS(t, dir, "")
	js := connect(t, ns.URL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := jobs.Setup(ctx, js, jobs.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	w := startWorker(t, s, ns.URL, "worker")
	poison := map[string][]byte{
		"garbage":   []byte("garbage"),
		"empty":     {},
		"v2":        []byte(`{"v":2,"run":"poison","mode":"apply","safe":{"urlId":"A","name":"A"},"member":{"name":"PSMAppUsers","type":"Group"},"permissions":["listAccounts"]}`),
		"nosafe":    []byte(`{"v":1,"run":"poison","mode":"apply","member":{"name":"PSMAppUsers","type":"Group"},"permissions":["listAccounts"]}`),
		"badperm":   []byte(`{"v":1,"run":"poison","mode":"apply","safe":{"urlId":"A","name":"A"},"member":{"name":"PSMAppUsers","type":"Group"},"permissions":["rootEverything"]}`),
		"badutf8":   []byte("{\"v\":1,\"run\":\"\xff\xfe\"}"),
		"nullbytes": []byte("\x00\x00\x00"),
		"array":     []byte(`[1,2,3]`),
	}
	for key, body := range poison {
		msg := &nats.Msg{Subject: jobs.JobSubject("poison", key), Data: body}
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatalf("publish %s: %v", key, err)
		}
	}
	dlq, err := js.Stream(ctx, jobs.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		info, err := dlq.Info(ctx)
		if err != nil {
			return err
		}
		if int(info.State.Msgs) < len(poison) {
			return errors.New("dead letters: " + itoa(int(info.State.Msgs)))
		}
		// A poison job is dead-lettered, then terminated: the
		// termination is an ack the server applies a moment later.
		st, err := js.Stream(ctx, jobs.JobsStream)
		if err != nil {
			return err
		}
		ji, err := st.Info(ctx)
		if err != nil {
			return err
		}
		if ji.State.Msgs != 0 {
			return errors.New("poison jobs left in the jobs stream: " + itoa(int(ji.State.Msgs)))
		}
		return nil
	})
	reasons := 0
	for seq := uint64(1); seq <= uint64(len(poison)); seq++ {
		m, err := dlq.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		info := jobs.ParseDeadLetterHeader(m.Header)
		if !strings.Contains(info.Reason, "malformed") || info.Deliveries != 1 {
			t.Errorf("dead letter %s: reason %q after %d deliveries, want malformed after 1", m.Subject, info.Reason, info.Deliveries)
			continue
		}
		reasons++
	}
	jinfo := streamInfo(t, js, jobs.JobsStream)
	if jinfo.State.Msgs != 0 {
		t.Errorf("%d poison jobs left in %s", jinfo.State.Msgs, jobs.JobsStream)
	}
	w.Stop(10 * time.Second)
	if st := s.stats(t); st.MemberWrites.Total != 0 {
		t.Errorf("memberWrites.total = %d", st.MemberWrites.Total)
	}
	logFigure(t, "poison jobs: %d published, %d dead-lettered with a reason after 1 delivery, %d left in the jobs stream", len(poison), reasons, jinfo.State.Msgs)
}

func itoa(n int) string { return strconv.Itoa(n) }
