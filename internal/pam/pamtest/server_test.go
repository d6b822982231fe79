package pamtest_test

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/pam/pamtest"
)

// TestCloseDoesNotWaitForUnusedConnections checks that Close returns at
// once when clients still hold connections without a request on them:
// http.Server.Shutdown alone waits five seconds for a connection that was
// opened and never used.
func TestCloseDoesNotWaitForUnusedConnections(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		tls  bool
		hold func(t *testing.T, srv *pamtest.Server) // leaves a connection open
	}{
		{"idle keep-alive connection", false, func(t *testing.T, srv *pamtest.Server) {
			c := &http.Client{Transport: &http.Transport{}}
			res, err := c.Get(srv.URL + "/API/Safes")
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
		}},
		{"connection never used", false, func(t *testing.T, srv *pamtest.Server) {
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })
		}},
		{"TLS connection never used", true, func(t *testing.T, srv *pamtest.Server) {
			conn, err := tls.Dial("tcp", srv.Listener.Addr().String(), srv.Client().Transport.(*http.Transport).TLSClientConfig)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, err := pamtest.NewServer(pamtest.Options{Safes: 10, TLS: tt.tls})
			if err != nil {
				t.Fatal(err)
			}
			tt.hold(t, srv)
			start := time.Now()
			srv.Close()
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("Close took %s with a connection held open, want well under the 5s grace", took)
			}
			srv.Close() // a second Close is a no-op
		})
	}
}
