package jobs_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/natsembed/natstest"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/policy"
)

// env is one embedded server with a client connection.
type env struct {
	*natstest.Env
	js jetstream.JetStream
}

// startEnv starts an in-process embedded server (file storage in a temp
// dir) and connects to it. Everything is torn down with the test.
func startEnv(t testing.TB) *env {
	t.Helper()
	e := natstest.Start(t, "")
	return &env{Env: e, js: e.JS}
}

// setup runs jobs.Setup with DefaultConfig adjusted by mutate.
func (e *env) setup(t testing.TB, mutate func(*jobs.Config)) *jobs.Streams {
	t.Helper()
	return e.Setup(t, mutate)
}

var testPerms = pam.Perms(pam.ListAccounts, pam.UnlockAccounts)

// testRule is the PSM unlock rule.
var testRule = policy.Directive{Rule: "psm-unlock", Member: jobs.MemberRef{Name: "PSMAppUsers", Type: "Group", SearchIn: "Vault"},
	Action: policy.ActionGrant, Permissions: testPerms}

// testJob returns a valid apply job for Safe safe in run.
func testJob(run, safe string) jobs.Job {
	return jobs.Job{
		V:       jobs.Version,
		Run:     run,
		Mode:    jobs.ModeApply,
		Safe:    jobs.SafeRef{URLID: safe, Name: safe},
		Rules:   []policy.Directive{testRule},
		Created: time.Date(2026, 11, 23, 9, 45, 12, 0, time.UTC),
	}
}

func safeName(i int) string { return fmt.Sprintf("Safe %05d", i) }

// streamMsgs returns the number of messages in stream.
func streamMsgs(ctx context.Context, t testing.TB, st jetstream.Stream) uint64 {
	t.Helper()
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// consume runs fn for every message of c until the test ends. Cleanup
// stops the consumer and waits for running callbacks, so none outlives the
// test (or the server, whose cleanup was registered earlier).
func consume(t testing.TB, c jetstream.Consumer, fn func(jetstream.Msg), opts ...jetstream.PullConsumeOpt) {
	t.Helper()
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		stopped bool
	)
	cc, err := c.Consume(func(m jetstream.Msg) {
		mu.Lock()
		if stopped {
			mu.Unlock()
			return
		}
		wg.Add(1)
		mu.Unlock()
		defer wg.Done()
		fn(m)
	}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Stop()
		mu.Lock()
		stopped = true
		mu.Unlock()
		wg.Wait()
	})
}

// testLogger returns a logger writing to the test log at warn level and up.
func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}
