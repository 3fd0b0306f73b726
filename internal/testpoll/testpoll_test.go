package testpoll

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

func TestUntilReturnsOnceTheConditionHolds(t *testing.T) {
	calls := 0
	Poll{Period: time.Millisecond, Timeout: 10 * time.Second}.Until(t, "third call", func() bool {
		calls++
		return calls == 3
	})
	if calls != 3 {
		t.Errorf("cond called %d times, want 3", calls)
	}
}

// fatalRecorder keeps the message of a Fatalf instead of failing the real test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestUntilFailsAfterTheTimeout(t *testing.T) {
	r := &fatalRecorder{TB: t}
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		Poll{Period: time.Millisecond, Timeout: 50 * time.Millisecond}.Until(r, "the impossible", func() bool { return false })
	}()
	<-done
	if want := "timed out after 50ms waiting for: the impossible"; r.msg != want {
		t.Errorf("failure = %q, want %q", r.msg, want)
	}
	if elapsed := time.Since(start); elapsed < 50*time.Millisecond {
		t.Errorf("Until gave up after %s, before its 50ms timeout", elapsed)
	}
}
