package throttle

import (
	"context"
	"errors"
	"net/http"
	"testing"
)

type countLimiter struct {
	n   int
	err error
}

func (c *countLimiter) Wait(context.Context) error { c.n++; return c.err }

func TestChain(t *testing.T) {
	var c Chain
	if err := c.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, b := &countLimiter{}, &countLimiter{}
	c.Add(a)
	c.Add(nil)
	c.Add(b)
	if err := c.Wait(context.Background()); err != nil || a.n != 1 || b.n != 1 {
		t.Fatalf("err %v a %d b %d", err, a.n, b.n)
	}
	boom := errors.New("boom")
	a.err = boom
	if err := c.Wait(context.Background()); !errors.Is(err, boom) || b.n != 1 {
		t.Fatalf("err %v b %d: the chain must stop at the first error", err, b.n)
	}
	a.err = ErrClosed
	if err := c.Wait(context.Background()); err != nil || b.n != 2 {
		t.Fatalf("err %v b %d: a closed budget no longer limits", err, b.n)
	}
}

func TestLatencySample(t *testing.T) {
	tests := []struct {
		method, url string
		want        bool
	}{
		{"GET", "https://pvwa/PasswordVault/API/Safes/X/Members/PSMAppUsers/", true},
		{"GET", "https://pvwa/PasswordVault/API/Safes?limit=1000", false},
		{"GET", "https://pvwa/PasswordVault/API/Safes/X/Members?limit=100", false},
		{"GET", "https://pvwa/PasswordVault/API/Safes/X/", true},
		{"PUT", "https://pvwa/PasswordVault/API/Safes/X/Members/PSMAppUsers/", false},
		{"POST", "https://pvwa/PasswordVault/API/Safes/X/Members/", false},
		{"POST", "https://pvwa/PasswordVault/API/auth/Cyberark/Logon", false},
		{"GET", "https://pvwa/PasswordVault/API/Auth/Whatever", false},
		{"POST", "https://tenant.id.cyberark.cloud/oauth2/platformtoken", false},
	}
	for _, tc := range tests {
		req, err := http.NewRequest(tc.method, tc.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := latencySample(req); got != tc.want {
			t.Errorf("%s %s: %v, want %v", tc.method, tc.url, got, tc.want)
		}
	}
}
