package natsembed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/rs/zerolog"
)

// StartCluster starts n embedded servers that form one JetStream cluster on
// loopback: client and route ports are picked free, each node stores under
// dir/n<i>, and the servers are named n1..nN. It returns once every node
// accepts clients and the cluster has a JetStream meta leader, or ctx ends.
// Meant for failover tests and local experiments, not production.
//
// On error every server already started is shut down. The caller shuts the
// returned servers down (ShutdownAll).
func StartCluster(ctx context.Context, n int, dir string, log zerolog.Logger) ([]*Server, error) {
	if n < 1 {
		return nil, errors.New("natsembed: cluster needs at least one node")
	}
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	routes := make([]string, n)
	for i := range n {
		routes[i] = "nats-route://127.0.0.1:" + strconv.Itoa(ports[n+i])
	}
	servers := make([]*Server, 0, n)
	fail := func(err error) ([]*Server, error) {
		ShutdownAll(servers)
		return nil, err
	}
	for i := range n {
		name := "n" + strconv.Itoa(i+1)
		s, err := Start(ctx, Options{
			StoreDir:   filepath.Join(dir, name),
			Listen:     "127.0.0.1:" + strconv.Itoa(ports[i]),
			Logger:     log.With().Str("node", name).Logger(),
			ServerName: name,
			Cluster: &ClusterOptions{
				Name:   "safeperm-test",
				Listen: "127.0.0.1:" + strconv.Itoa(ports[n+i]),
				Routes: routes,
			},
		})
		if err != nil {
			return fail(fmt.Errorf("start %s: %w", name, err))
		}
		servers = append(servers, s)
	}
	// Wait for a meta leader: before it exists, every JetStream API call
	// hangs until its deadline.
	for {
		for _, s := range servers {
			if s.ns.JetStreamIsLeader() {
				return servers, nil
			}
		}
		select {
		case <-ctx.Done():
			return fail(fmt.Errorf("natsembed: no JetStream meta leader: %w", ctx.Err()))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ShutdownAll shuts every server down. Nil entries are skipped.
func ShutdownAll(servers []*Server) {
	for _, s := range servers {
		if s != nil {
			s.Shutdown()
		}
	}
}

// ClientURLs returns the client URLs of servers, for a nats.Connect that can
// fail over between them.
func ClientURLs(servers []*Server) []string {
	urls := make([]string, 0, len(servers))
	for _, s := range servers {
		urls = append(urls, s.ClientURL())
	}
	return urls
}

// freePorts reserves n distinct free loopback TCP ports by listening on
// port 0, then releases them. Another process could grab one in between;
// tests accept that small race.
func freePorts(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("natsembed: pick free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
