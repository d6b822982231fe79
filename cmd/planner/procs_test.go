package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/proctest"
	"github.com/safeperm/safeperm/internal/testutil"
)

// The tests that run the real binaries build planner, worker and pvwasim
// once per test binary (proctest.Builds).
var builds = proctest.NewBuilds("./cmd/planner", "./cmd/worker", "./cmd/pvwasim")

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	builds.Remove()
	os.Exit(code)
}

// binary returns the path of a freshly built command: planner, worker or
// pvwasim.
func binary(t testing.TB, name string) string { return builds.Path(t, name) }

// startProc starts a binary; see proctest.Start.
func startProc(t testing.TB, name string, env []string, path string, args ...string) *proctest.Proc {
	t.Helper()
	return proctest.Start(t, name, env, path, args...)
}

// startSim starts bin/pvwasim with args and returns its API base URL (its
// first line of output).
func startSim(t testing.TB, args ...string) (string, *proctest.Proc) {
	t.Helper()
	p := startProc(t, "pvwasim", nil, binary(t, "pvwasim"), append([]string{"--addr", "127.0.0.1:0"}, args...)...)
	var url string
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if !p.Running() {
			t.Fatalf("pvwasim exited: %v\n%s", p.Err(), p.Stderr.String())
		}
		line, _, ok := strings.Cut(p.Stdout.String(), "\n")
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
