// Package testutil holds the few helpers every test package of safeperm
// needs: waiting for a condition, a context bounded by the test, a buffer
// safe for concurrent use, and a JSON decoder that rejects repeated keys.
package testutil

import (
	"context"
	"testing"
	"time"
)

// Eventually calls fn every poll until it returns nil or wait has passed,
// then fails the test with fn's last error.
func Eventually(t testing.TB, wait, poll time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s: %v", wait, err)
		}
		time.Sleep(poll)
	}
}

// Context returns a context that ends with the test or after d.
func Context(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
