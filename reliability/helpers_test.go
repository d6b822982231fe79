package reliability

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/pam/pamtest"
	"github.com/safeperm/safeperm/internal/proctest"
	"github.com/safeperm/safeperm/internal/testutil"
)

// prefix starts every figure line, so the figures can be grepped and quoted.
const prefix = "RELIABILITY:"

// soak reports whether the long variants run (SAFEPERM_SOAK=1, make
// reliability).
func soak() bool { return os.Getenv("SAFEPERM_SOAK") == "1" }

// wantPerms is what every run of these tests ensures.
var wantPerms = pam.Perms(pam.ListAccounts, pam.UnlockAccounts)

// builds are the binaries under test (planner, worker, pvwasim,
// nats-server), built once per test binary without -race: the processes
// under test run at full speed, the test process keeps the race detector.
var builds = proctest.NewBuilds("./cmd/...", "github.com/nats-io/nats-server/v2")

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	builds.Remove()
	os.Exit(code)
}

// bin returns the path of a binary (planner, worker, pvwasim, nats-server).
func bin(t testing.TB, name string) string { return builds.Path(t, name) }

// proc is one process under test.
type proc = proctest.Proc

// start starts a process; see proctest.Start.
func start(t testing.TB, name string, env []string, path string, args ...string) *proc {
	t.Helper()
	return proctest.Start(t, name, env, path, args...)
}

// freePorts reserves n distinct free loopback ports and releases them.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// ---- the PVWA simulator ----

// simOptions says how to start pvwasim.
type simOptions struct {
	Safes   int
	Seed    uint64
	Latency time.Duration
	Jitter  time.Duration
	// Password of the API user (default pamtest.DefaultAdminPassword).
	Password string
	// Extra flags, e.g. --p500 0.05.
	Extra []string
}

// sim is a running pvwasim process.
type sim struct {
	*proc
	URL   string // .../PasswordVault
	Root  string // http://127.0.0.1:PORT
	Admin string // .../_admin
	vault *pamtest.Vault
	pass  string
}

// startSim starts pvwasim and waits for its first stdout line, the base URL.
func startSim(t testing.TB, o simOptions) *sim {
	t.Helper()
	if o.Password == "" {
		o.Password = pamtest.DefaultAdminPassword
	}
	args := []string{"--addr", "127.0.0.1:0", "--safes", strconv.Itoa(o.Safes), "--seed", strconv.FormatUint(o.Seed, 10),
		"--log-format", "json", "--shutdown-timeout", "1s"}
	if o.Latency > 0 {
		args = append(args, "--latency", o.Latency.String())
	}
	if o.Jitter > 0 {
		args = append(args, "--jitter", o.Jitter.String())
	}
	args = append(args, o.Extra...)
	p := start(t, "pvwasim", []string{"SAFEPERM_SIM_ADMIN_PASSWORD=" + o.Password}, bin(t, "pvwasim"), args...)
	s := &sim{proc: p, pass: o.Password}
	testutil.Eventually(t, 15*time.Second, 20*time.Millisecond, func() error {
		if !p.Running() {
			t.Fatalf("pvwasim exited: %v\n%s", p.Err(), p.Stderr.String())
		}
		out := p.Stdout.String()
		i := strings.IndexByte(out, '\n')
		if i < 0 {
			return errors.New("pvwasim printed no URL yet")
		}
		s.URL = strings.TrimSpace(out[:i])
		return nil
	})
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	s.Root = u.Scheme + "://" + u.Host
	s.Admin = s.Root + "/_admin"
	s.vault, err = pamtest.NewVault(pamtest.Options{Safes: o.Safes, Seed: o.Seed})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *sim) get(t testing.TB, path string) []byte {
	t.Helper()
	resp, err := http.Get(s.Admin + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v %s", path, resp.StatusCode, err, b)
	}
	return b
}

func (s *sim) do(t testing.TB, method, path, body string) {
	t.Helper()
	req, err := http.NewRequest(method, s.Admin+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
}

// stats returns /_admin/stats with writes per Safe.
func (s *sim) stats(t testing.TB) pamtest.Stats {
	t.Helper()
	var st pamtest.Stats
	if err := json.Unmarshal(s.get(t, "/stats?perSafe=1"), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// state returns every Safe's current members, in index order.
func (s *sim) state(t testing.TB) []pamtest.SafeState {
	t.Helper()
	var out []pamtest.SafeState
	sc := bufio.NewScanner(bytes.NewReader(s.get(t, "/state")))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var st pamtest.SafeState
		if err := json.Unmarshal(sc.Bytes(), &st); err != nil {
			t.Fatalf("state line %q: %v", sc.Text(), err)
		}
		out = append(out, st)
	}
	if len(out) != s.vault.Len() {
		t.Fatalf("state has %d Safes, want %d", len(out), s.vault.Len())
	}
	return out
}

// deleteSafe deletes a Safe through the admin API.
func (s *sim) deleteSafe(t testing.TB, name string) {
	t.Helper()
	s.do(t, http.MethodDelete, "/safes/"+url.PathEscape(name), "")
}

// env returns the variables a planner or worker needs to log on.
func (s *sim) env() []string { return []string{"SAFEPERM_PASSWORD=" + s.pass} }

// pvwaArgs are the PVWA flags of a planner or worker.
func (s *sim) pvwaArgs() []string {
	return []string{"--pvwa-url", s.URL, "--user", pamtest.DefaultAdminUser}
}

// find returns the first n account Safes for which keep is true.
func (s *sim) find(n int, keep func(pamtest.SafeInfo) bool) []pamtest.SafeInfo {
	var out []pamtest.SafeInfo
	for i := s.vault.Internal(); i < s.vault.Len() && len(out) < n; i++ {
		if in := s.vault.Info(i); keep(in) {
			out = append(out, in)
		}
	}
	return out
}

// ---- the vault check ----

// verdict is what verify found, Safe by Safe.
type verdict struct {
	// Converged: in-scope Safes whose member now holds exactly its seeded
	// flags plus the wanted ones. NotConverged: in-scope Safes that do not.
	Converged, NotConverged int
	// Changed: Safes whose member differs from the seed (what a run
	// wrote); ChangedNames names them.
	Changed      int
	ChangedNames map[string]bool
	// ForeignChanged: members other than the managed one, or Safes out of
	// scope, that differ from the seed.
	ForeignChanged int
	Problems       []string
}

func (v *verdict) problem(format string, args ...any) {
	if len(v.Problems) < 20 {
		v.Problems = append(v.Problems, fmt.Sprintf(format, args...))
	}
}

// inScopeDefault is a whole-vault run: every account Safe the API user can
// manage.
func inScopeDefault(in pamtest.SafeInfo) bool { return !in.Internal && in.Access == pamtest.AccessFull }

// verify compares the simulator's state with the seeded vault: every
// in-scope Safe must hold member with its seeded flags plus want (expiry
// kept), and nothing else may differ anywhere.
func verify(t testing.TB, s *sim, member string, want pam.PermSet, inScope func(pamtest.SafeInfo) bool) verdict {
	t.Helper()
	v := verdict{ChangedNames: map[string]bool{}}
	for i, st := range s.state(t) {
		info := s.vault.Info(i)
		seeded := byName(s.vault.Members(i))
		cur := byName(st.Members)
		if st.Deleted {
			continue
		}
		for name, m := range seeded {
			if strings.EqualFold(name, member) {
				continue
			}
			c, ok := cur[name]
			if !ok || !sameMember(m, c) {
				v.ForeignChanged++
				v.problem("Safe %q: member %q changed: %+v -> %+v (present %v)", st.Name, m.Name, m, c, ok)
			}
		}
		for name, c := range cur {
			if _, ok := seeded[name]; !ok && !strings.EqualFold(name, member) {
				v.ForeignChanged++
				v.problem("Safe %q: unexpected member %q", st.Name, c.Name)
			}
		}
		key := strings.ToLower(member)
		before, had := seeded[key]
		after, has := cur[key]
		if had != has || (had && !sameMember(before, after)) {
			v.Changed++
			v.ChangedNames[st.Name] = true
		}
		if !inScope(info) {
			if had != has || (had && !sameMember(before, after)) {
				v.ForeignChanged++
				v.problem("Safe %q out of scope (%s, %s) changed: %+v -> %+v", st.Name, info.Class, info.Access, before, after)
			}
			continue
		}
		wantAfter := pamtest.MemberState{Name: member, Permissions: before.Permissions | want, Expiration: before.Expiration}
		if !has || !sameMember(wantAfter, after) {
			v.NotConverged++
			v.problem("Safe %q (%s) not converged: %s before, %s now (member %v)", st.Name, info.Class, before.Permissions, after.Permissions, has)
			continue
		}
		v.Converged++
	}
	return v
}

func byName(ms []pamtest.MemberState) map[string]pamtest.MemberState {
	out := make(map[string]pamtest.MemberState, len(ms))
	for _, m := range ms {
		out[strings.ToLower(m.Name)] = m
	}
	return out
}

func sameMember(a, b pamtest.MemberState) bool {
	if a.Permissions != b.Permissions || (a.Expiration == nil) != (b.Expiration == nil) {
		return false
	}
	return a.Expiration == nil || *a.Expiration == *b.Expiration
}

// ---- NATS ----

// natsNode is one nats-server process.
type natsNode struct {
	*proc
	name string
	URL  string
	conf string
	t    testing.TB
}

// startNATS starts a single JetStream server storing under dir. conf adds
// lines to its configuration (e.g. an authorization block).
func startNATS(t testing.TB, dir string, extraConf string) *natsNode {
	t.Helper()
	port := freePorts(t, 1)[0]
	conf := fmt.Sprintf("server_name: single\nlisten: 127.0.0.1:%d\njetstream { store_dir: %q }\n%s\n", port, filepath.Join(dir, "single"), extraConf)
	n := &natsNode{name: "single", URL: fmt.Sprintf("nats://127.0.0.1:%d", port), conf: filepath.Join(dir, "single.conf"), t: t}
	if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	n.launch()
	return n
}

// startCluster starts a 3-node JetStream cluster under dir.
func startCluster(t testing.TB, dir string) []*natsNode {
	t.Helper()
	ports := freePorts(t, 6)
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3+i]))
	}
	var nodes []*natsNode
	for i := range 3 {
		name := fmt.Sprintf("n%d", i+1)
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
jetstream { store_dir: %q }
cluster {
  name: reliability
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, name, ports[i], filepath.Join(dir, name), ports[3+i], strings.Join(routes, ", "))
		n := &natsNode{name: name, URL: fmt.Sprintf("nats://127.0.0.1:%d", ports[i]), conf: filepath.Join(dir, name+".conf"), t: t}
		if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		n.launch()
		nodes = append(nodes, n)
	}
	return nodes
}

// launch starts (or restarts) the node from its config and waits until it
// accepts clients.
func (n *natsNode) launch() {
	n.t.Helper()
	n.proc = start(n.t, "nats-server "+n.name, nil, bin(n.t, "nats-server"), "-c", n.conf)
	testutil.Eventually(n.t, 15*time.Second, 20*time.Millisecond, func() error {
		if !n.Running() {
			n.t.Fatalf("nats-server %s exited: %v\n%s", n.name, n.Err(), n.Stderr.String())
		}
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(n.URL, "nats://"), time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

func urls(nodes []*natsNode) string {
	var u []string
	for _, n := range nodes {
		u = append(u, n.URL)
	}
	return strings.Join(u, ",")
}

// connect opens a test client on the servers.
func connect(t testing.TB, urls string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond), nats.Name("reliability-test")}, opts...)
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// setAckWait re-applies the default configuration with a short AckWait, so
// the jobs a killed worker held come back in seconds instead of a minute.
// Workers read AckWait from the consumer when they start.
func setAckWait(t testing.TB, js jetstream.JetStream, replicas int, d time.Duration) {
	t.Helper()
	cfg := jobs.DefaultConfig()
	cfg.Replicas = replicas
	cfg.AckWait = d
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := jobs.Setup(ctx, js, cfg); err != nil {
		t.Fatalf("setup with AckWait %s: %v", d, err)
	}
}

// runOutcome is what waitRun saw.
type runOutcome struct {
	Run    jobs.Run
	Tally  *jobs.Tally
	Took   time.Duration
	Byname map[string]jobs.Result
}

// waitRun follows run's results until one has arrived for every job
// (Tally.Done == Expected once PlanningDone), or fails after timeout.
func waitRun(t testing.TB, js jetstream.JetStream, run string, timeout time.Duration) runOutcome {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	runs, err := jobs.OpenRuns(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	out := runOutcome{Tally: jobs.NewTally(), Byname: map[string]jobs.Result{}}
	var mu sync.Mutex
	fctx, stopFollow := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		_ = jobs.Follow(fctx, js, run, func(r jobs.Result) error {
			if out.Tally.Add(r) {
				mu.Lock()
				out.Byname[r.Safe.Name] = r
				mu.Unlock()
			}
			return nil
		})
	}()
	defer func() {
		stopFollow()
		<-followed
	}()
	for {
		rec, _, err := runs.Get(ctx, run)
		if err == nil && rec.PlanningDone && out.Tally.Done() >= rec.Expected() {
			stopFollow()
			<-followed
			out.Run, out.Took = rec, time.Since(start)
			return out
		}
		select {
		case <-ctx.Done():
			t.Fatalf("run %s not complete after %s: %d results, record %+v (err %v)", run, timeout, out.Tally.Done(), rec, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// rawResults reads every message on the results stream for run (not
// deduplicated, unlike Follow) and returns how many there are per Safe key.
func rawResults(t testing.TB, js jetstream.JetStream, run string) (perSafe map[string]int, total int) {
	t.Helper()
	// Retried from scratch on any error: a cluster may still be electing.
	testutil.Eventually(t, 2*time.Minute, time.Second, func() error {
		var err error
		perSafe, total, err = readResults(js, run)
		return err
	})
	return perSafe, total
}

func readResults(js jetstream.JetStream, run string) (map[string]int, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := js.Stream(ctx, jobs.ResultsStream)
	if err != nil {
		return nil, 0, err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(jobs.ResultsFilter(run)))
	if err != nil {
		return nil, 0, err
	}
	want := 0
	for _, n := range info.State.Subjects {
		want += int(n)
	}
	perSafe, total := map[string]int{}, 0
	if want == 0 {
		return perSafe, 0, nil
	}
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{jobs.ResultsFilter(run)}})
	if err != nil {
		return nil, 0, err
	}
	for total < want {
		batch, err := c.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, 0, err
		}
		for m := range batch.Messages() {
			total++
			r, err := jobs.DecodeResult(m.Data())
			if err != nil {
				return nil, 0, fmt.Errorf("result %s does not decode: %w", m.Subject(), err)
			}
			perSafe[r.Key()]++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, 0, err
		}
		if ctx.Err() != nil {
			return nil, 0, fmt.Errorf("read %d of %d results", total, want)
		}
	}
	return perSafe, total, nil
}

// misattributed counts Safes the run changed whose result does not say
// applied: a worker killed between its write and its result leaves the
// redelivered job to find the Safe compliant and report it unchanged.
func misattributed(v verdict, byName map[string]jobs.Result) (n int, names []string) {
	for name := range v.ChangedNames {
		if r, ok := byName[name]; ok && r.Status != jobs.StatusApplied {
			n++
			if len(names) < 5 {
				names = append(names, fmt.Sprintf("%s (%s)", name, r.Status))
			}
		}
	}
	return n, names
}

// duplicates counts Safes with more than one result message.
func duplicates(perSafe map[string]int) int {
	n := 0
	for _, c := range perSafe {
		if c > 1 {
			n++
		}
	}
	return n
}

// plannerArgs are the flags every planner run of these tests shares.
func plannerArgs(s *sim, natsURL string, more ...string) []string {
	args := append([]string{"run"}, s.pvwaArgs()...)
	args = append(args, "--nats-url", natsURL, "--log-format", "json")
	return append(args, more...)
}

// startWorker starts one worker process.
func startWorker(t testing.TB, s *sim, natsURL string, name string, more ...string) *proc {
	t.Helper()
	args := append(s.pvwaArgs(), "--nats-url", natsURL, "--log-format", "json", "--shutdown-timeout", "5s")
	return start(t, name, s.env(), bin(t, "worker"), append(args, more...)...)
}

// logFigure logs one quotable figure.
func logFigure(t testing.TB, format string, args ...any) {
	t.Helper()
	t.Logf(prefix+" "+format, args...)
}
