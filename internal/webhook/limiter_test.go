package webhook

import (
	"fmt"
	"testing"
	"time"
)

func TestClientKey(t *testing.T) {
	cases := map[string]string{
		"192.0.2.1:1234":             "192.0.2.1",
		"[::ffff:192.0.2.1]:1234":    "192.0.2.1",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:3::1]:443":      "2001:db8:1:3::/64",
		"[fe80::1%eth0]:80":          "fe80::/64",
		"not-an-address":             "not-an-address",
		"@":                          "@",
	}
	for in, want := range cases {
		if got := ClientKey(in); got != want {
			t.Errorf("ClientKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// fail counts one attempt of client that never proves itself: a failure.
func fail(l *limiter, client string, now time.Time) { l.begin(client, now) }

// blocked reports whether client's next attempt would be refused, without counting one
// when it would not.
func blocked(l *limiter, client string, now time.Time) bool {
	a, ok := l.begin(client, now)
	if ok {
		l.succeed(a)
	}
	return !ok
}

func TestLimiterWindow(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiter(3, time.Minute, 100)
	for range 3 {
		if blocked(l, "a", start) {
			t.Fatal("blocked too early")
		}
		fail(l, "a", start)
	}
	if !blocked(l, "a", start.Add(59*time.Second)) {
		t.Fatal("not blocked after 3 failures")
	}
	if blocked(l, "b", start) {
		t.Fatal("another client is blocked")
	}
	if blocked(l, "a", start.Add(time.Minute)) {
		t.Fatal("still blocked after the window")
	}
	// A new window starts at the first failure after the old one ended.
	fail(l, "a", start.Add(2*time.Minute))
	if blocked(l, "a", start.Add(2*time.Minute)) {
		t.Fatal("one failure in a new window blocks")
	}
}

// TestLimiterCountsAttemptsInFlight: an attempt counts from the moment it begins, before
// anything is read, so a client with max requests still being read is refused another;
// an attempt that proves itself is taken back, one that does not stays a failure.
func TestLimiterCountsAttemptsInFlight(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiter(3, time.Minute, 100)
	var inFlight []attempt
	for range 3 {
		a, ok := l.begin("a", now)
		if !ok {
			t.Fatal("refused before max attempts")
		}
		inFlight = append(inFlight, a)
	}
	if _, ok := l.begin("a", now); ok {
		t.Fatal("a 4th attempt was admitted while 3 are in flight")
	}
	l.succeed(inFlight[0])
	if _, ok := l.begin("a", now); !ok {
		t.Fatal("an attempt taken back still counts")
	}
	// An attempt of an ended window is not taken from the next one.
	later := now.Add(time.Minute)
	fail(l, "a", later)
	l.succeed(inFlight[1])
	l.succeed(inFlight[2])
	fail(l, "a", later)
	fail(l, "a", later)
	if !blocked(l, "a", later) {
		t.Fatal("attempts of an old window were taken from the new one")
	}
	// Successes leave nothing behind.
	for range 10 {
		a, _ := l.begin("ok", now)
		l.succeed(a)
	}
	if blocked(l, "ok", now) || l.tracked() != 1 {
		t.Errorf("successful attempts are held: %d clients tracked", l.tracked())
	}
}

func TestLimiterBound(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiter(2, time.Minute, 4)
	for i := range 4 {
		fail(l, fmt.Sprint("c", i), start.Add(time.Duration(i)*time.Second))
		fail(l, fmt.Sprint("c", i), start.Add(time.Duration(i)*time.Second))
	}
	fail(l, "new", start.Add(10*time.Second))
	if n := l.tracked(); n != 4 {
		t.Fatalf("tracking %d clients, bound is 4", n)
	}
	// The oldest window made room; the newer ones are still blocked.
	for _, c := range []string{"c1", "c2", "c3"} {
		if !blocked(l, c, start.Add(10*time.Second)) {
			t.Errorf("%s lost its block", c)
		}
	}
	if blocked(l, "c0", start.Add(10*time.Second)) {
		t.Error("oldest client was not evicted")
	}
	// Once windows expire they are dropped before anything live is evicted.
	later := start.Add(time.Minute + 5*time.Second)
	for i := range 3 {
		fail(l, fmt.Sprint("late", i), later)
	}
	if n := l.tracked(); n > 4 {
		t.Fatalf("tracking %d clients, bound is 4", n)
	}
	if blocked(l, "new", later) {
		t.Error("new client blocked after one failure")
	}
}
