package notify_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/shipwatch/shipwatch/internal/notify"
)

func TestFullQueueDropsOldestAndNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	rcv := newReceiver(t, func(n int, _ http.ResponseWriter) {
		if n == 0 {
			<-release
		}
	})
	t.Cleanup(func() { closeOnce(release) })
	logs := &lockedBuffer{}
	m := &fakeMetrics{}
	const size, total = 4, 10000
	n := newNotifier(t, notify.Options{QueueSize: size, Metrics: m, Logger: debugLogger(logs), Targets: []notify.Target{{
		Name: "slow", Kind: notify.KindWebhook, URL: urlOf(rcv.URL)}}})
	run(t, n)

	n.Notify(notify.Event{Type: notify.SyncSucceeded, App: "web", Message: "0"})
	rcv.wait(t, 1) // the receiver now holds event 0 and answers nothing

	start := time.Now()
	for i := 1; i <= total; i++ {
		n.Notify(notify.Event{Type: notify.SyncSucceeded, App: "web", Message: strconv.Itoa(i)})
	}
	// Generous: the point is that Notify never waits on the receiver, which would take
	// forever here.
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("%d Notify calls took %s with a blocked receiver", total, d)
	}
	if got := m.get("slow", notify.ResultDropped); got != total-size {
		t.Errorf("dropped = %d, want %d", got, total-size)
	}

	closeOnce(release)
	rcv.wait(t, size)
	want := []string{"0"}
	for i := total - size + 1; i <= total; i++ {
		want = append(want, strconv.Itoa(i))
	}
	if got := messages(t, rcv); !slices.Equal(got, want) {
		t.Errorf("received %v, want the first and the newest %d: %v", got, size, want)
	}
	waitFor(t, func() bool { return m.get("slow", notify.ResultSent) == size+1 })
	if !containsAll(logs.String(), "notifications dropped", fmt.Sprintf("count=%d", total-size)) {
		t.Errorf("drops not logged once with their count:\n%s", logs)
	}
}

func closeOnce(c chan struct{}) {
	select {
	case <-c:
	default:
		close(c)
	}
}

func TestSlowTargetDoesNotDelayAnother(t *testing.T) {
	release := make(chan struct{})
	slow := newReceiver(t, func(int, http.ResponseWriter) { <-release })
	t.Cleanup(func() { closeOnce(release) })
	fast := newReceiver(t, nil)
	n := newNotifier(t, notify.Options{Targets: []notify.Target{
		{Name: "slow", Kind: notify.KindWebhook, URL: urlOf(slow.URL)},
		{Name: "fast", Kind: notify.KindWebhook, URL: urlOf(fast.URL)},
	}})
	run(t, n)
	for i := range 3 {
		n.Notify(notify.Event{Type: notify.SyncSucceeded, App: "web", Message: strconv.Itoa(i)})
	}
	fast.wait(t, 3)
	slow.wait(t, 1)
	if got := len(slow.requests()); got != 1 {
		t.Errorf("slow receiver got %d requests while blocked", got)
	}
}

func TestRunStopsPromptlyAndCountsUndelivered(t *testing.T) {
	release := make(chan struct{})
	rcv := newReceiver(t, func(int, http.ResponseWriter) { <-release })
	t.Cleanup(func() { closeOnce(release) })
	m := &fakeMetrics{}
	n := newNotifier(t, notify.Options{Metrics: m, Targets: []notify.Target{{
		Name: "hook", Kind: notify.KindWebhook, URL: urlOf(rcv.URL)}}})
	stop := run(t, n)
	for range 3 {
		n.Notify(sampleEvent())
	}
	rcv.wait(t, 1)
	start := time.Now()
	if err := stop(); err != nil {
		t.Errorf("Run = %v, want nil after cancel", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Run took %s to stop with a request in flight", d)
	}
	// The in-flight one and the two queued ones.
	if got := m.get("hook", notify.ResultDropped); got != 3 {
		t.Errorf("dropped = %d, want 3", got)
	}
	if got := m.get("hook", notify.ResultFailed); got != 0 {
		t.Errorf("failed = %d, want 0: shutting down is not a receiver failure", got)
	}
}

func TestRunTwice(t *testing.T) {
	rcv := newReceiver(t, nil)
	n := newNotifier(t, notify.Options{Targets: []notify.Target{{Name: "hook", Kind: notify.KindWebhook, URL: urlOf(rcv.URL)}}})
	run(t, n)
	n.Notify(sampleEvent())
	rcv.wait(t, 1) // the first Run is delivering
	if err := n.Run(t.Context()); !errors.Is(err, notify.ErrAlreadyRunning) {
		t.Errorf("second Run = %v, want ErrAlreadyRunning", err)
	}
}

func TestNilNotifierAndNoTargets(t *testing.T) {
	var nilN *notify.Notifier
	nilN.Notify(sampleEvent()) // must not panic

	n := newNotifier(t, notify.Options{})
	n.Notify(sampleEvent())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("Run without targets returned %v before ctx ended", err)
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}
