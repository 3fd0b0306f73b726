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
		if got := clientKey(in); got != want {
			t.Errorf("clientKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLimiterWindow(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiter(3, time.Minute, 100)
	for range 3 {
		if l.blocked("a", start) {
			t.Fatal("blocked too early")
		}
		l.fail("a", start)
	}
	if !l.blocked("a", start.Add(59*time.Second)) {
		t.Fatal("not blocked after 3 failures")
	}
	if l.blocked("b", start) {
		t.Fatal("another client is blocked")
	}
	if l.blocked("a", start.Add(time.Minute)) {
		t.Fatal("still blocked after the window")
	}
	// A new window starts at the first failure after the old one ended.
	l.fail("a", start.Add(2*time.Minute))
	if l.blocked("a", start.Add(2*time.Minute)) {
		t.Fatal("one failure in a new window blocks")
	}
}

func TestLimiterBound(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiter(2, time.Minute, 4)
	for i := range 4 {
		l.fail(fmt.Sprint("c", i), start.Add(time.Duration(i)*time.Second))
		l.fail(fmt.Sprint("c", i), start.Add(time.Duration(i)*time.Second))
	}
	l.fail("new", start.Add(10*time.Second))
	if n := l.tracked(); n != 4 {
		t.Fatalf("tracking %d clients, bound is 4", n)
	}
	// The oldest window made room; the newer ones are still blocked.
	if l.blocked("c0", start.Add(10*time.Second)) {
		t.Error("oldest client was not evicted")
	}
	for _, c := range []string{"c1", "c2", "c3"} {
		if !l.blocked(c, start.Add(10*time.Second)) {
			t.Errorf("%s lost its block", c)
		}
	}
	// Once windows expire they are dropped before anything live is evicted.
	later := start.Add(time.Minute + 5*time.Second)
	for i := range 3 {
		l.fail(fmt.Sprint("late", i), later)
	}
	if n := l.tracked(); n > 4 {
		t.Fatalf("tracking %d clients, bound is 4", n)
	}
	if l.blocked("new", later) {
		t.Error("new client blocked after one failure")
	}
}
