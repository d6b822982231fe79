package pamtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server is a simulated PVWA listening on a system-chosen port of
// 127.0.0.1, in the manner of httptest.Server. The embedded Handler gives
// the in-process test API (Stats, SafeState, SetMember, SetFaults...).
type Server struct {
	*Handler
	// URL is the API base, e.g. "http://127.0.0.1:41234/PasswordVault",
	// without a trailing slash.
	URL string
	// AdminURL is the admin API base, e.g. "http://127.0.0.1:41234/_admin".
	AdminURL string
	// IdentityURL is the Identity tenant base (the server root); the token
	// endpoint is IdentityURL + "/oauth2/platformtoken" (Cloud mode).
	IdentityURL string
	// Listener is the server's listener.
	Listener net.Listener

	srv       *http.Server
	cert      *x509.Certificate
	caPEM     []byte
	client    *http.Client
	serveDone chan struct{}
	closeOnce sync.Once

	connMu sync.Mutex
	conns  map[net.Conn]http.ConnState // open connections and their state
}

// NewServer starts a simulated PVWA configured by opts. The caller must
// Close it.
func NewServer(opts Options) (*Server, error) {
	h, err := NewHandler(opts)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("pamtest: listen: %w", err)
	}
	s := &Server{
		Handler:   h,
		Listener:  l,
		serveDone: make(chan struct{}),
		conns:     make(map[net.Conn]http.ConnState),
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          log.New(io.Discard, "", 0),
		},
	}
	s.srv.ConnState = s.trackConn
	scheme := "http"
	tr := &http.Transport{MaxIdleConnsPerHost: 256, ForceAttemptHTTP2: false}
	if opts.TLS {
		cert, pemBytes, err := SelfSignedCertificate()
		if err != nil {
			_ = l.Close()
			return nil, err
		}
		s.cert, s.caPEM = cert.Leaf, pemBytes
		s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		s.Listener = tls.NewListener(l, s.srv.TLSConfig)
		pool := x509.NewCertPool()
		pool.AddCert(cert.Leaf)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		scheme = "https"
	}
	s.client = &http.Client{Transport: tr, Timeout: 60 * time.Second}
	root := scheme + "://" + l.Addr().String()
	s.URL, s.AdminURL, s.IdentityURL = root+"/PasswordVault", root+"/_admin", root
	go func() {
		defer close(s.serveDone)
		_ = s.srv.Serve(s.Listener) // returns http.ErrServerClosed on Close
	}()
	return s, nil
}

// Client returns an HTTP client for the server that trusts its certificate.
func (s *Server) Client() *http.Client { return s.client }

// Certificate returns the server's certificate (nil without TLS). It is
// self-signed and is its own CA.
func (s *Server) Certificate() *x509.Certificate { return s.cert }

// CACertPEM returns the PEM of the certificate to trust (nil without TLS),
// for a client's --ca-file.
func (s *Server) CACertPEM() []byte { return s.caPEM }

// Close stops the server: it cuts injected latencies short, stops
// accepting, closes at once the connections that carry no request (idle
// keep-alive ones and ones a client opened but never used), waits up to
// five seconds for requests being served, then closes every connection.
// It is safe to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.Handler.Close()
		// http.Server.Shutdown alone would wait five seconds for a
		// connection that never sent a request (StateNew), which an
		// http.Transport leaves behind when a dial loses the race to an
		// idle connection. Stop Serve first so that every accepted
		// connection has been tracked, then close the unused ones.
		_ = s.Listener.Close()
		<-s.serveDone
		s.closeConns(http.StateNew, http.StateIdle)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			_ = s.srv.Close()
		}
		s.client.CloseIdleConnections()
	})
}

// trackConn is the http.Server's ConnState hook.
func (s *Server) trackConn(c net.Conn, st http.ConnState) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	switch st {
	case http.StateClosed, http.StateHijacked:
		delete(s.conns, c)
	default:
		s.conns[c] = st
	}
}

// closeConns closes the connections in one of the given states.
func (s *Server) closeConns(states ...http.ConnState) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	for c, st := range s.conns {
		for _, want := range states {
			if st == want {
				_ = c.Close()
				delete(s.conns, c)
				break
			}
		}
	}
}

// SelfSignedCertificate returns a new ECDSA certificate for 127.0.0.1, ::1,
// localhost and hosts (names or IP addresses), valid for a year, that is its
// own CA, and the PEM of that certificate for clients to trust.
func SelfSignedCertificate(hosts ...string) (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("pamtest: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("pamtest: serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "pvwasim", Organization: []string{"safeperm PVWA simulator"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("pamtest: create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("pamtest: parse certificate: %w", err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pemBytes, nil
}
