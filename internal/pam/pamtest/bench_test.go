package pamtest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/safeperm/safeperm/internal/pam/pamtest"
)

// BenchmarkListSafes1M pages through a million-Safe vault with limit=1000,
// as the planner does; one op is one page.
func BenchmarkListSafes1M(b *testing.B) {
	srv := newSim(b, pamtest.Options{Safes: 1_000_000, Seed: 1})
	tok := admin(b, srv)
	c := srv.Client()
	offset := 0
	var bytes int64
	for b.Loop() {
		req, _ := http.NewRequest("GET", fmt.Sprintf("%s/API/Safes?offset=%d&limit=1000", srv.URL, offset), nil)
		req.Header.Set("Authorization", tok)
		res, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			b.Fatalf("status %d", res.StatusCode)
		}
		bytes += n
		offset = (offset + 1000) % 980_000
	}
	b.ReportMetric(float64(bytes)/float64(b.N), "B/page")
}

// BenchmarkMemberGetPut runs GET then PUT of PSMAppUsers on many Safes from
// parallel clients; one op is one GET+PUT pair.
func BenchmarkMemberGetPut(b *testing.B) {
	srv := newSim(b, pamtest.Options{Safes: 100_000, Seed: 1})
	tok := admin(b, srv)
	v := srv.Vault()
	var targets []string
	for i := v.Internal(); i < v.Len() && len(targets) < 20_000; i++ {
		if info := v.Info(i); info.Access == pamtest.AccessFull && info.PSMMember {
			targets = append(targets, info.URLID)
		}
	}
	var next atomic.Int64
	c := srv.Client()
	do := func(method, url, body string) int {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, url, rd)
		req.Header.Set("Authorization", tok)
		res, err := c.Do(req)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := targets[int(next.Add(1))%len(targets)]
			u := srv.URL + "/API/Safes/" + id + "/Members/PSMAppUsers/"
			if s := do("GET", u, ""); s != 200 {
				b.Errorf("GET %d", s)
				return
			}
			if s := do("PUT", u, `{"permissions":{"listAccounts":true,"unlockAccounts":true}}`); s != 200 {
				b.Errorf("PUT %d", s)
				return
			}
		}
	})
}

// BenchmarkState1M streams the PSMAppUsers state of a million Safes.
func BenchmarkState1M(b *testing.B) {
	srv := newSim(b, pamtest.Options{Safes: 1_000_000, Seed: 1})
	for b.Loop() {
		if err := srv.WriteState(context.Background(), io.Discard, pamtest.StateQuery{Member: pamtest.PSMAppUsers}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNewServer1M measures the start of a million-Safe vault.
func BenchmarkNewServer1M(b *testing.B) {
	for b.Loop() {
		srv, err := pamtest.NewServer(pamtest.Options{Safes: 1_000_000})
		if err != nil {
			b.Fatal(err)
		}
		srv.Close()
	}
}
