// Package testutil holds the helpers the service's tests share.
package testutil

import (
	"testing"
	"time"
)

// WaitTimeout is how long WaitFor waits: generous, so that a slow or
// loaded machine is not mistaken for a failure.
const WaitTimeout = 20 * time.Second

// WaitFor waits until cond holds, checking it every 10ms, and fails the
// test (naming what it waited for) after WaitTimeout.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
