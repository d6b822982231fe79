package deploy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"
)

// Plain passwords the tests log in with. The server configs read hashes (or plain values) from
// these variables, as a real deployment does from /etc/nats/nats.env.
var natsPasswords = map[string]struct{ env, plain string }{
	"planner": {"NATS_PLANNER_PASSWORD", "plannerPass1"},
	"worker":  {"NATS_WORKER_PASSWORD", "workerPass1"},
	"monitor": {"NATS_MONITOR_PASSWORD", "monitorPass1"},
	"admin":   {"NATS_ADMIN_PASSWORD", "adminPass1"},
	"sys":     {"NATS_SYS_PASSWORD", "sysPass1"},
}

// setNATSEnv sets every variable the NATS configs reference: bcrypt hashes for planner and
// worker (the documented way), plain passwords for the others (also supported).
func setNATSEnv(t *testing.T) {
	t.Helper()
	for user, p := range natsPasswords {
		val := p.plain
		if user == "planner" || user == "worker" {
			h, err := bcrypt.GenerateFromPassword([]byte(p.plain), bcrypt.MinCost)
			if err != nil {
				t.Fatal(err)
			}
			val = string(h)
		}
		t.Setenv(p.env, val)
	}
}

// natsCertDir is where the configs expect certificates; the test swaps in generated ones.
const natsCertDir = "/etc/nats/tls/"

// writeTestCerts writes a CA and the server and route certificates the TLS includes name.
func writeTestCerts(t *testing.T, dir string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "safeperm test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "ca.crt"), "CERTIFICATE", caDER)
	for i, name := range []string{"server", "route"} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 2)),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			DNSNames:     []string{"nats-1.example.net", "nats-2.example.net", "nats-3.example.net", "localhost"},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, filepath.Join(dir, name+".crt"), "CERTIFICATE", der)
		writePEM(t, filepath.Join(dir, name+".key"), "EC PRIVATE KEY", keyDER)
	}
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// natsServerBinary finds a nats-server binary: $NATS_SERVER_BIN, PATH, bin/ or ../bin/.
func natsServerBinary(root string) string {
	if p := os.Getenv("NATS_SERVER_BIN"); p != "" {
		return p
	}
	return lookPathOr("nats-server", filepath.Join(root, "bin", "nats-server"), filepath.Join(root, "..", "bin", "nats-server"))
}

// natsConfig is one server config to validate.
type natsConfig struct {
	rel  string // as reported
	path string // in the scratch copy
}

// validateNATS checks every server config in deploy/nats (single/*.conf, cluster/*.conf, and
// single/nats.conf with its TLS include enabled): nats-server's own parser accepts it with no
// warning (what `nats-server -t` requires), server.NewServer accepts the options, the real
// nats-server -t accepts it when installed, and the shape and permissions hold.
func validateNATS(t *testing.T, root string, _ *cli) []error {
	src := filepath.Join(root, "deploy", "nats")
	scratch := t.TempDir()
	certs := t.TempDir()
	writeTestCerts(t, certs)

	// Copy the tree, pointing the TLS includes at the generated certificates.
	var errs []error
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.HasSuffix(path, ".conf") {
			b = []byte(strings.ReplaceAll(string(b), natsCertDir, certs+"/"))
		}
		dst := filepath.Join(scratch, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		return []error{err}
	}

	var configs []natsConfig
	for _, dir := range []string{"single", "cluster"} {
		matches, _ := filepath.Glob(filepath.Join(scratch, dir, "*.conf"))
		for _, m := range matches {
			configs = append(configs, natsConfig{rel: "deploy/nats/" + dir + "/" + filepath.Base(m), path: m})
		}
	}
	if len(configs) == 0 {
		return []error{errors.New("deploy/nats: no single/*.conf or cluster/*.conf")}
	}
	// The single-node config ships with TLS commented out; check it with TLS on as well.
	single := filepath.Join(scratch, "single", "nats.conf")
	if b, err := os.ReadFile(single); err == nil {
		const line = `# include "../tls-client.conf"`
		if !strings.Contains(string(b), line) {
			errs = append(errs, fmt.Errorf("deploy/nats/single/nats.conf: the line %q (TLS, off by default) is missing", line))
		} else {
			tlsOn := filepath.Join(scratch, "single", "nats-tls.conf.check")
			if err := os.WriteFile(tlsOn, []byte(strings.Replace(string(b), line, line[2:], 1)), 0o644); err != nil {
				return []error{err}
			}
			configs = append(configs, natsConfig{rel: "deploy/nats/single/nats.conf (TLS enabled)", path: tlsOn})
		}
	}

	bin := natsServerBinary(root)
	if bin == "" {
		t.Log("nats-server not found (PATH, bin/, ../bin/, $NATS_SERVER_BIN): checked in-process only")
	}
	clusters := map[string][]*server.Options{}
	for _, cfg := range configs {
		opts, err := server.ProcessConfigFile(cfg.path)
		if err != nil {
			// Warnings come back as errors too; nats-server -t rejects them as well.
			errs = append(errs, fmt.Errorf("%s: %s", cfg.rel, strings.ReplaceAll(err.Error(), scratch+"/", "")))
			continue
		}
		if _, err := server.NewServer(opts); err != nil {
			errs = append(errs, fmt.Errorf("%s: server.NewServer: %w", cfg.rel, err))
		}
		if bin != "" {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			out, err := exec.CommandContext(ctx, bin, "-t", "-c", cfg.path).CombinedOutput()
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %s -t: %v: %s", cfg.rel, bin, err, strings.TrimSpace(string(out))))
			}
		}
		errs = append(errs, wrap(cfg.rel, checkNATSOptions(cfg.rel, opts)...)...)
		if strings.Contains(cfg.rel, "/cluster/") {
			clusters[opts.Cluster.Name] = append(clusters[opts.Cluster.Name], opts)
		}
	}
	errs = append(errs, checkNATSCluster(clusters)...)
	return errs
}

// checkNATSOptions checks the invariants of one server config.
func checkNATSOptions(rel string, o *server.Options) []error {
	var errs []error
	if o.ServerName == "" {
		errs = append(errs, errors.New("server_name is not set (JetStream clustering requires it)"))
	}
	if !o.JetStream || o.StoreDir == "" || o.JetStreamMaxMemory <= 0 || o.JetStreamMaxStore <= 0 {
		errs = append(errs, fmt.Errorf("jetstream needs store_dir, max_memory_store and max_file_store (got enabled=%v store_dir=%q mem=%d file=%d)", o.JetStream, o.StoreDir, o.JetStreamMaxMemory, o.JetStreamMaxStore))
	}
	if strings.Contains(rel, "/single/") && !o.SyncAlways {
		errs = append(errs, errors.New("a single node has no replica to fall back on: jetstream { sync_interval: always }"))
	}
	if o.SyncInterval > 10*time.Minute {
		errs = append(errs, fmt.Errorf("sync_interval is %v: an unquoted 2m is 2 million seconds; quote durations", o.SyncInterval))
	}
	if strings.Contains(rel, "/cluster/") {
		if o.Cluster.Name != "safeperm" || o.Cluster.Port == 0 {
			errs = append(errs, fmt.Errorf("cluster { name: safeperm, listen: ... } expected, got name %q port %d", o.Cluster.Name, o.Cluster.Port))
		}
		if len(o.Routes) != 3 {
			errs = append(errs, fmt.Errorf("cluster routes: want all 3 nodes, got %d", len(o.Routes)))
		}
		if o.Cluster.TLSConfig == nil || o.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
			errs = append(errs, errors.New("cluster: route TLS with verify: true is required (include ../tls-route.conf)"))
		}
	}
	if strings.Contains(rel, "/cluster/") || strings.Contains(rel, "TLS enabled") {
		if o.TLSConfig == nil || o.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
			errs = append(errs, errors.New("client TLS with verify: true is required (include ../tls-client.conf)"))
		}
	}
	if o.SystemAccount != "SYS" {
		errs = append(errs, fmt.Errorf("system_account is %q, want SYS", o.SystemAccount))
	}
	return append(errs, checkNATSPermissions(o.Users)...)
}

// natsProbe is a subject a user must (allow) or must not (!allow) be able to use.
type natsProbe struct {
	user    string
	pub     bool // publish; else subscribe
	subject string
	allow   bool
}

// natsProbes pin the permission design (deploy/nats/README.md): what each role needs, and
// what it must never reach.
var natsProbes = func() []natsProbe {
	var ps []natsProbe
	add := func(user string, pub, allow bool, subjects ...string) {
		for _, s := range subjects {
			ps = append(ps, natsProbe{user, pub, s, allow})
		}
	}
	add("planner", true, true,
		"safeperm.jobs.r1.c2FmZUE", "safeperm.events.r1", "$KV.safeperm_runs.run.r1", "$KV.safeperm_workers.budget",
		"$JS.API.INFO", "$JS.API.STREAM.NAMES",
		"$JS.API.STREAM.CREATE.SAFEPERM_JOBS", "$JS.API.STREAM.UPDATE.SAFEPERM_RESULTS", "$JS.API.STREAM.CREATE.SAFEPERM_DLQ",
		"$JS.API.STREAM.CREATE.SAFEPERM_ADVISORIES", "$JS.API.STREAM.CREATE.KV_safeperm_runs", "$JS.API.STREAM.CREATE.KV_safeperm_workers",
		"$JS.API.STREAM.INFO.SAFEPERM_JOBS", "$JS.API.STREAM.MSG.GET.SAFEPERM_DLQ",
		"$JS.API.CONSUMER.CREATE.SAFEPERM_JOBS.workers", "$JS.API.CONSUMER.DURABLE.CREATE.SAFEPERM_JOBS.workers",
		"$JS.API.CONSUMER.CREATE.SAFEPERM_ADVISORIES.dlq-mover.$JS.EVENT.ADVISORY.>", "$JS.API.CONSUMER.INFO.SAFEPERM_JOBS.workers",
		"$JS.API.CONSUMER.CREATE.SAFEPERM_RESULTS", "$JS.API.CONSUMER.MSG.NEXT.SAFEPERM_RESULTS.watch1",
		"$JS.API.DIRECT.GET.KV_safeperm_runs.$KV.safeperm_runs.run.r1", "$JS.FC.KV_safeperm_runs.c1.1")
	add("planner", false, true, "_INBOX.abc.1", "safeperm.events.r1", "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.SAFEPERM_JOBS.workers")
	add("planner", true, false,
		"$JS.API.STREAM.DELETE.SAFEPERM_JOBS", "$JS.API.STREAM.DELETE.SAFEPERM_RESULTS", "$JS.API.STREAM.CREATE.OTHER",
		"$JS.API.ACCOUNT.PURGE.SAFEPERM", "$JS.API.SERVER.REMOVE", "$JS.API.META.LEADER.STEPDOWN",
		"safeperm.results.r1.applied", "other.subject", "$KV.other.k")
	add("planner", false, false, "other.subject", "$SYS.REQ.SERVER.PING")

	add("worker", true, true,
		"safeperm.results.r1.applied", "safeperm.dlq.r1.c2FmZUE", "safeperm.events.r1", "$KV.safeperm_workers.w1",
		"$JS.API.INFO", "$JS.API.STREAM.INFO.SAFEPERM_JOBS", "$JS.API.STREAM.INFO.KV_safeperm_runs",
		"$JS.API.CONSUMER.INFO.SAFEPERM_JOBS.workers", "$JS.API.CONSUMER.MSG.NEXT.SAFEPERM_JOBS.workers",
		"$JS.API.CONSUMER.CREATE.SAFEPERM_JOBS.workers", "$JS.API.CONSUMER.CREATE.SAFEPERM_JOBS.workers.safeperm.jobs.>",
		"$JS.ACK.SAFEPERM_JOBS.workers.1.2.3.4.5", "$JS.ACK.SAFEPERM_ADVISORIES.dlq-mover.1.2.3.4.5",
		"$JS.API.CONSUMER.MSG.NEXT.SAFEPERM_ADVISORIES.dlq-mover",
		"$JS.API.STREAM.MSG.GET.SAFEPERM_JOBS", "$JS.API.STREAM.MSG.DELETE.SAFEPERM_JOBS",
		"$JS.API.DIRECT.GET.KV_safeperm_runs.$KV.safeperm_runs.run.r1", "$JS.API.STREAM.MSG.GET.KV_safeperm_runs")
	add("worker", false, true, "_INBOX.abc.1", "safeperm.events.r1")
	add("worker", true, false,
		"safeperm.jobs.r1.c2FmZUE", "$KV.safeperm_runs.run.r1",
		"$JS.API.STREAM.CREATE.SAFEPERM_JOBS", "$JS.API.STREAM.UPDATE.SAFEPERM_JOBS", "$JS.API.STREAM.DELETE.SAFEPERM_JOBS",
		"$JS.API.STREAM.PURGE.SAFEPERM_JOBS", "$JS.API.STREAM.MSG.DELETE.SAFEPERM_RESULTS",
		"$JS.API.CONSUMER.DELETE.SAFEPERM_JOBS.workers", "$JS.API.CONSUMER.CREATE.SAFEPERM_JOBS.other",
		"$JS.API.ACCOUNT.PURGE.SAFEPERM", "other.subject")
	add("worker", false, false, "other.subject", "safeperm.results.r1.applied")

	add("monitor", true, true, "$JS.API.STREAM.INFO.SAFEPERM_JOBS", "$JS.API.CONSUMER.INFO.SAFEPERM_JOBS.workers")
	add("monitor", true, false, "safeperm.jobs.r1.x", "$JS.API.STREAM.DELETE.SAFEPERM_JOBS", "$JS.API.CONSUMER.MSG.NEXT.SAFEPERM_JOBS.workers")
	return ps
}()

// allowed evaluates NATS permissions: nil permissions allow everything; deny wins over allow.
func allowed(p *server.SubjectPermission, subject string) bool {
	if p == nil {
		return true
	}
	ok := p.Allow == nil
	for _, f := range p.Allow {
		if server.SubjectMatchesFilter(subject, f) {
			ok = true
		}
	}
	for _, f := range p.Deny {
		if server.SubjectMatchesFilter(subject, f) {
			ok = false
		}
	}
	return ok
}

// checkNATSPermissions checks the users against natsProbes and rejects blanket grants.
func checkNATSPermissions(users []*server.User) []error {
	var errs []error
	byName := map[string]*server.User{}
	for _, u := range users {
		byName[u.Username] = u
	}
	for _, name := range []string{"planner", "worker", "monitor"} {
		u := byName[name]
		if u == nil {
			errs = append(errs, fmt.Errorf("user %s is missing", name))
			continue
		}
		if u.Account == nil || u.Account.Name != "SAFEPERM" {
			errs = append(errs, fmt.Errorf("user %s must be in account SAFEPERM", name))
		}
		if u.Password == "" {
			errs = append(errs, fmt.Errorf("user %s has no password", name))
		}
		if u.Permissions == nil || u.Permissions.Publish == nil || u.Permissions.Subscribe == nil {
			errs = append(errs, fmt.Errorf("user %s has no publish/subscribe permissions: it may use every subject", name))
			continue
		}
		for _, f := range u.Permissions.Publish.Allow {
			if f == ">" || f == "$JS.>" || f == "$JS.API.>" || strings.HasPrefix(f, "*") {
				errs = append(errs, fmt.Errorf("%s may publish %q", name, f))
			}
		}
		for _, f := range u.Permissions.Subscribe.Allow {
			if f == ">" || strings.HasPrefix(f, "*") {
				errs = append(errs, fmt.Errorf("%s may subscribe %q", name, f))
			}
		}
	}
	for _, p := range natsProbes {
		u := byName[p.user]
		if u == nil || u.Permissions == nil {
			continue
		}
		perm, verb := u.Permissions.Subscribe, "subscribe"
		if p.pub {
			perm, verb = u.Permissions.Publish, "publish"
		}
		switch got := allowed(perm, p.subject); {
		case p.allow && !got:
			errs = append(errs, fmt.Errorf("%s may not %s %s, which it needs", p.user, verb, p.subject))
		case !p.allow && got:
			errs = append(errs, fmt.Errorf("%s may %s %s", p.user, verb, p.subject))
		}
	}
	return errs
}

// checkNATSCluster checks that the cluster nodes agree.
func checkNATSCluster(clusters map[string][]*server.Options) []error {
	var errs []error
	for name, nodes := range clusters {
		if len(nodes) != 3 {
			errs = append(errs, fmt.Errorf("deploy/nats/cluster: cluster %q has %d node configs, want 3", name, len(nodes)))
		}
		names := map[string]bool{}
		var routes0 []string
		for i, o := range nodes {
			if names[o.ServerName] {
				errs = append(errs, fmt.Errorf("deploy/nats/cluster: server_name %q used twice", o.ServerName))
			}
			names[o.ServerName] = true
			var routes []string
			for _, r := range o.Routes {
				routes = append(routes, r.String())
			}
			slices.Sort(routes)
			if i == 0 {
				routes0 = routes
			} else if !slices.Equal(routes, routes0) {
				errs = append(errs, fmt.Errorf("deploy/nats/cluster: %s routes %q differ from %s's %q", o.ServerName, routes, nodes[0].ServerName, routes0))
			}
		}
	}
	return errs
}

// TestNATSPermissionsLive starts a server from the shipped single-node config and exercises
// the contract as each user: the planner creates every stream, consumer and bucket and
// publishes a job; the worker consumes, acks, publishes results and DLQ records, reads and
// watches the run bucket and moves a job; and what each must not do is refused.
func TestNATSPermissionsLive(t *testing.T) {
	setNATSEnv(t)
	opts, err := server.ProcessConfigFile(filepath.Join(repoRoot(t), "deploy", "nats", "single", "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.HTTPHost, opts.HTTPPort = "", 0
	opts.StoreDir = t.TempDir()
	opts.NoSigs, opts.NoLog = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}

	type conn struct {
		nc    *nats.Conn
		js    jetstream.JetStream
		async chan error
	}
	connect := func(user string) *conn {
		t.Helper()
		c := &conn{async: make(chan error, 64)}
		nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo(user, natsPasswords[user].plain), nats.Name("deploy-test-"+user),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				select {
				case c.async <- err:
				default:
				}
			}))
		if err != nil {
			t.Fatalf("connect as %s: %v", user, err)
		}
		t.Cleanup(nc.Close)
		c.nc = nc
		if c.js, err = jetstream.New(nc); err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx := func(d time.Duration) context.Context {
		c, cancel := context.WithTimeout(context.Background(), d)
		t.Cleanup(cancel)
		return c
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	refused := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: succeeded, want it refused", what)
		}
	}

	t.Run("bad logins", func(t *testing.T) {
		if nc, err := nats.Connect(ns.ClientURL()); err == nil {
			nc.Close()
			t.Error("anonymous connection accepted")
		}
		if nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo("worker", "wrong")); err == nil {
			nc.Close()
			t.Error("wrong password accepted")
		}
	})

	planner := connect("planner")
	pjs := planner.js
	for _, cfg := range []jetstream.StreamConfig{
		{Name: "SAFEPERM_JOBS", Subjects: []string{"safeperm.jobs.>"}, Retention: jetstream.WorkQueuePolicy, Discard: jetstream.DiscardNew, Duplicates: time.Hour},
		{Name: "SAFEPERM_RESULTS", Subjects: []string{"safeperm.results.>"}},
		{Name: "SAFEPERM_DLQ", Subjects: []string{"safeperm.dlq.>"}},
		{Name: "SAFEPERM_ADVISORIES", Subjects: []string{"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.SAFEPERM_JOBS.>"}},
	} {
		_, err := pjs.CreateOrUpdateStream(ctx(10*time.Second), cfg)
		must("planner creates stream "+cfg.Name, err)
	}
	runs, err := pjs.CreateOrUpdateKeyValue(ctx(10*time.Second), jetstream.KeyValueConfig{Bucket: "safeperm_runs"})
	must("planner creates KV safeperm_runs", err)
	_, err = pjs.CreateOrUpdateKeyValue(ctx(10*time.Second), jetstream.KeyValueConfig{Bucket: "safeperm_workers"})
	must("planner creates KV safeperm_workers", err)
	workersCfg := jetstream.ConsumerConfig{Durable: "workers", AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: 8, AckWait: time.Minute}
	_, err = pjs.CreateOrUpdateConsumer(ctx(10*time.Second), "SAFEPERM_JOBS", workersCfg)
	must("planner creates consumer workers", err)
	_, err = pjs.CreateOrUpdateConsumer(ctx(10*time.Second), "SAFEPERM_ADVISORIES", jetstream.ConsumerConfig{Durable: "dlq-mover", AckPolicy: jetstream.AckExplicitPolicy})
	must("planner creates consumer dlq-mover", err)
	_, err = runs.Put(ctx(5*time.Second), "run.r1", []byte(`{"planned":2}`))
	must("planner writes the run record", err)
	for _, safe := range []string{"c2FmZUE", "c2FmZUI"} {
		_, err = pjs.Publish(ctx(5*time.Second), "safeperm.jobs.r1."+safe, []byte(safe), jetstream.WithMsgID("r1/"+safe))
		must("planner publishes a job", err)
	}
	must("planner publishes an event", planner.nc.Publish("safeperm.events.r1", []byte("started")))
	names := pjs.StreamNames(ctx(5 * time.Second))
	var got []string
	for n := range names.Name() {
		got = append(got, n)
	}
	must("planner lists streams", names.Err())
	if len(got) != 6 {
		t.Errorf("planner sees streams %q, want the 6 safeperm ones", got)
	}

	worker := connect("worker")
	wjs := worker.js
	events, err := worker.nc.SubscribeSync("safeperm.events.>")
	must("worker subscribes to events", err)
	must("flush", worker.nc.Flush())
	must("planner publishes an event", planner.nc.Publish("safeperm.events.r1", []byte("hello")))
	_, err = events.NextMsg(5 * time.Second)
	must("worker receives the event", err)

	_, err = wjs.CreateOrUpdateConsumer(ctx(10*time.Second), "SAFEPERM_JOBS", workersCfg)
	must("worker ensures its durable", err)
	cons, err := wjs.Consumer(ctx(5*time.Second), "SAFEPERM_JOBS", "workers")
	must("worker binds to workers", err)
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	must("worker fetches", err)
	var n int
	for msg := range batch.Messages() {
		n++
		must("worker acks", msg.DoubleAck(ctx(5*time.Second)))
	}
	must("fetch", batch.Error())
	if n != 1 {
		t.Fatalf("worker fetched %d jobs, want 1", n)
	}
	_, err = wjs.Publish(ctx(5*time.Second), "safeperm.results.r1.applied", []byte("ok"), jetstream.WithMsgID("r1/c2FmZUE"))
	must("worker publishes a result", err)
	wruns, err := wjs.KeyValue(ctx(5*time.Second), "safeperm_runs")
	must("worker binds the run bucket", err)
	_, err = wruns.Get(ctx(5*time.Second), "run.r1")
	must("worker reads the run record", err)
	watch, err := wruns.Watch(ctx(10*time.Second), "run.>")
	must("worker watches the run bucket", err)
	select {
	case e := <-watch.Updates():
		if e == nil || e.Key() != "run.r1" {
			t.Errorf("watch gave %v, want run.r1", e)
		}
	case <-time.After(5 * time.Second):
		t.Error("worker's watch delivered nothing")
	}
	must("stop watch", watch.Stop())
	budget, err := wjs.KeyValue(ctx(5*time.Second), "safeperm_workers")
	must("worker binds the budget bucket", err)
	_, err = budget.Put(ctx(5*time.Second), "w1", []byte("5"))
	must("worker writes the budget bucket", err)

	// The DLQ mover: read the remaining job by sequence, record it, delete it from the jobs stream.
	jobs, err := wjs.Stream(ctx(5*time.Second), "SAFEPERM_JOBS")
	must("worker binds SAFEPERM_JOBS", err)
	raw, err := jobs.GetMsg(ctx(5*time.Second), 2)
	must("worker gets a job by sequence", err)
	_, err = wjs.Publish(ctx(5*time.Second), "safeperm.dlq.r1.c2FmZUI", raw.Data, jetstream.WithMsgID("dlq/2"))
	must("worker publishes to the DLQ", err)
	must("worker deletes the moved job", jobs.DeleteMsg(ctx(5*time.Second), 2))
	mover, err := wjs.Consumer(ctx(5*time.Second), "SAFEPERM_ADVISORIES", "dlq-mover")
	must("worker binds dlq-mover", err)
	_, err = mover.FetchNoWait(1)
	must("worker pulls advisories", err)

	// Refused.
	_, err = wjs.Publish(ctx(2*time.Second), "safeperm.jobs.r1.evil", []byte("x"))
	refused("worker publishes a job", err)
	_, err = wjs.CreateStream(ctx(2*time.Second), jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"evil.>"}})
	refused("worker creates a stream", err)
	refused("worker deletes SAFEPERM_RESULTS", wjs.DeleteStream(ctx(2*time.Second), "SAFEPERM_RESULTS"))
	_, err = wruns.Put(ctx(2*time.Second), "run.r1", []byte("{}"))
	refused("worker overwrites the run record", err)
	refused("planner deletes SAFEPERM_RESULTS", pjs.DeleteStream(ctx(2*time.Second), "SAFEPERM_RESULTS"))
	monitor := connect("monitor")
	_, err = monitor.js.Stream(ctx(5*time.Second), "SAFEPERM_JOBS")
	must("monitor reads stream info", err)
	_, err = monitor.js.Publish(ctx(2*time.Second), "safeperm.jobs.r1.evil", []byte("x"))
	refused("monitor publishes a job", err)

	// The server said why: permission violations, not timeouts of something else.
	select {
	case err := <-worker.async:
		if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Errorf("worker's async error = %v, want a permissions violation", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("no permissions violation reported to the worker")
	}
	si, err := pjs.Stream(ctx(5*time.Second), "SAFEPERM_RESULTS")
	must("SAFEPERM_RESULTS still exists", err)
	if msgs := si.CachedInfo().State.Msgs; msgs != 1 {
		t.Errorf("SAFEPERM_RESULTS holds %d messages, want the worker's 1", msgs)
	}
}
