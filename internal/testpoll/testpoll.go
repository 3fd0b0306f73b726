// Package testpoll waits in tests for a condition that becomes true on its own (a container
// started, a metric counted), by checking it again and again rather than sleeping a guess.
package testpoll

import (
	"testing"
	"time"
)

// Poll is how often and for how long Until checks a condition. Both must be set: the period
// bounds how late a change is seen (a latency measurement wants milliseconds), the timeout
// how long a broken test hangs.
type Poll struct {
	// Period is the pause between two checks.
	Period time.Duration
	// Timeout is how long after the first check Until gives up.
	Timeout time.Duration
}

// Until calls cond at once and then every p.Period until it returns true. It fails the test
// naming what it waited for when p.Timeout passes or the test's context ends first.
func (p Poll) Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if p.Period <= 0 || p.Timeout <= 0 {
		t.Fatalf("testpoll: Period and Timeout must be positive, got %s and %s", p.Period, p.Timeout)
	}
	ctx := t.Context()
	deadline := time.Now().Add(p.Timeout)
	for !cond() {
		if ctx.Err() != nil || time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", p.Timeout, what)
		}
		select {
		case <-ctx.Done():
		case <-time.After(p.Period):
		}
	}
}
