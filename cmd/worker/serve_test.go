package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/cliconf"
	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/natsembed/natstest"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
	"github.com/safeperm/safeperm/internal/policy"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metricValue returns the sum of the samples of name whose labels contain
// every label given, or -1 when there is none.
func metricValue(body, name string, labels ...string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{.*\})? (\S+)$`)
	sum, found := 0.0, false
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(m[1], l)
		}
		if ok {
			v, _ := strconv.ParseFloat(m[2], 64)
			sum, found = sum+v, true
		}
	}
	if !found {
		return -1
	}
	return sum
}

// TestWorkerCommand runs the worker command against a TCP NATS server and
// the simulator: it applies the jobs, serves /metrics, /healthz and
// /readyz, and exits 0 when its context ends.
func TestWorkerCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ne := natstest.Start(t, "127.0.0.1:0")
	ns, js := ne.Server, ne.JS
	ne.Setup(t, nil)
	srv, err := pamtest.NewServer(pamtest.Options{Safes: 150, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	// Jobs for every visible account Safe.
	p := jobs.NewPublisher(js, zerolog.Nop(), jobs.PublisherOptions{})
	want := map[jobs.Status]int{}
	v := srv.Vault()
	perms := pam.Perms(pam.ListAccounts, pam.UnlockAccounts)
	for i := range v.Len() {
		in := v.Info(i)
		if in.Internal || in.Access == pamtest.AccessHidden {
			continue
		}
		switch {
		case in.PSMMember && in.PSMPermissions.Missing(perms) == 0:
			want[jobs.StatusUnchanged]++
		case in.Access == pamtest.AccessReadOnly:
			want[jobs.StatusFailed]++
		default:
			want[jobs.StatusApplied]++
		}
		if err := p.PublishJob(ctx, jobs.Job{V: jobs.Version, Run: "cmd-run", Mode: jobs.ModeApply,
			Safe: jobs.SafeRef{URLID: in.URLID, Name: in.Name}, Rules: []policy.Directive{{Rule: "psm-unlock",
				Member: jobs.MemberRef{Name: pamtest.PSMAppUsers, Type: "Group"}, Action: policy.ActionGrant, Permissions: perms}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	maddr := freeAddr(t)
	env := map[string]string{"SAFEPERM_PASSWORD": pamtest.DefaultAdminPassword, "SAFEPERM_NATS_URL": ns.ClientURL()}
	wctx, stop := context.WithCancel(ctx)
	var stderr bytes.Buffer
	var wg sync.WaitGroup
	var runErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		runErr = run(wctx, []string{"--pvwa-url", srv.URL, "--user", pamtest.DefaultAdminUser, "--concurrency", "6",
			"--rate", "0", "--metrics-addr", maddr, "--log-level", "warn"}, func(k string) string { return env[k] }, io.Discard, &stderr)
	}()

	got := jobs.NewTally()
	fctx, fcancel := context.WithTimeout(ctx, 30*time.Second)
	defer fcancel()
	total := want[jobs.StatusApplied] + want[jobs.StatusUnchanged] + want[jobs.StatusFailed]
	if err := jobs.Follow(fctx, js, "cmd-run", func(r jobs.Result) error {
		got.Add(r)
		if got.Done() == total {
			return jobs.ErrStop
		}
		return nil
	}); err != nil {
		t.Fatalf("%d/%d results: %v\n%s", got.Done(), total, err, stderr.String())
	}
	for s, n := range want {
		if got.Count(s) != n {
			t.Errorf("%s: %d, want %d", s, got.Count(s), n)
		}
	}

	if code, body := get(t, "http://"+maddr+"/healthz"); code != 200 {
		t.Errorf("/healthz %d %s", code, body)
	}
	if code, body := get(t, "http://"+maddr+"/readyz"); code != 200 {
		t.Errorf("/readyz %d %s", code, body)
	}
	_, body := get(t, "http://"+maddr+"/metrics")
	for s, n := range want {
		if got := metricValue(body, "safeperm_jobs_total", `status="`+string(s)+`"`); got != float64(n) {
			t.Errorf("safeperm_jobs_total{status=%q} = %v, want %d", s, got, n)
		}
	}
	gets := srv.Stats().Count(pamtest.RouteMember, 200) + srv.Stats().Count(pamtest.RouteMember, 404)
	if got := metricValue(body, "safeperm_pvwa_requests_total", `route="GET /API/Safes/{id}/Members/{name}"`); got != float64(gets) {
		t.Errorf("pvwa GET member requests metric %v, simulator saw %d", got, gets)
	}
	if metricValue(body, "safeperm_pvwa_request_duration_seconds_count") <= 0 {
		t.Error("no PVWA latency histogram samples")
	}
	t.Logf("/metrics of the finished run:\n%s", grepLines(body, "safeperm_jobs_total", "safeperm_pvwa_requests_total", "safeperm_jobs_in_flight"))

	stop()
	wg.Wait()
	if code := cliconf.ExitCode(runErr); code != 0 {
		t.Fatalf("exit %d: %v\n%s", code, runErr, stderr.String())
	}
	if srv.Stats().SessionsActive != 0 {
		t.Errorf("worker did not log off: %d sessions active", srv.Stats().SessionsActive)
	}
}

func grepLines(body string, prefixes ...string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}

// TestWorkerBadConfig: configuration problems are reported together, exit
// 2, before anything connects.
func TestWorkerBadConfig(t *testing.T) {
	env := map[string]string{}
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"--pvwa-url", "ftp://x", "--concurrency", "0", "--nats-url", "http://n:1"},
		func(k string) string { return env[k] }, io.Discard, &stderr)
	if cliconf.ExitCode(err) != cliconf.ExitUsage {
		t.Fatalf("exit %d: %v", cliconf.ExitCode(err), err)
	}
	for _, want := range []string{"pvwa-url", "concurrency", "nats-url"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name --%s: %v", want, err)
		}
	}
	err = run(context.Background(), []string{"--password", "x"}, func(string) string { return "" }, io.Discard, &stderr)
	if cliconf.ExitCode(err) != cliconf.ExitUsage || !strings.Contains(err.Error(), "process list") {
		t.Fatalf("--password: %v", err)
	}
}
