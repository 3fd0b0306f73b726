package notify_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/shipwatch/shipwatch/internal/notify"
)

func status(code int) func(int, http.ResponseWriter) {
	return func(_ int, w http.ResponseWriter) { w.WriteHeader(code) }
}

func TestRetryOn500ThenSuccess(t *testing.T) {
	rcv := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n < 2 {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	m := &fakeMetrics{}
	n := newNotifier(t, fastRetries(notify.Options{Metrics: m, Targets: []notify.Target{{
		Name: "hook", Kind: notify.KindWebhook, URL: urlOf(rcv.URL)}}}))
	run(t, n)
	n.Notify(sampleEvent())
	rcv.wait(t, 3)
	waitFor(t, func() bool { return m.get("hook", notify.ResultSent) == 1 })
	reqs := rcv.requests()
	if len(reqs) != 3 {
		t.Fatalf("attempts = %d, want 3", len(reqs))
	}
	id := reqs[0].header.Get("X-Shipwatch-Delivery")
	for i, r := range reqs {
		if r.header.Get("X-Shipwatch-Delivery") != id {
			t.Errorf("attempt %d has a new delivery id; retries must keep it", i)
		}
	}
	if f := m.get("hook", notify.ResultFailed); f != 0 {
		t.Errorf("failed = %d, want 0", f)
	}
}

func TestGiveUpAfterRetries(t *testing.T) {
	rcv := newReceiver(t, status(http.StatusBadGateway))
	n := newNotifier(t, fastRetries(notify.Options{Retries: 3, Targets: []notify.Target{{
		Name: "hook", Kind: notify.KindWebhook, URL: urlOf(rcv.URL)}}}))
	err := n.Send(t.Context(), sampleEvent())
	if !errors.Is(err, notify.ErrGaveUp) {
		t.Fatalf("err = %v, want ErrGaveUp", err)
	}
	var se *notify.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusBadGateway {
		t.Errorf("err = %v, want a StatusError 502", err)
	}
	if got := len(rcv.requests()); got != 4 {
		t.Errorf("attempts = %d, want 1 + 3 retries", got)
	}
}

func TestGiveUpCountsFailed(t *testing.T) {
	rcv := newReceiver(t, status(http.StatusServiceUnavailable))
	m := &fakeMetrics{}
	n := newNotifier(t, fastRetries(notify.Options{Retries: 2, Metrics: m, Targets: []notify.Target{{
		Name: "hook", Kind: notify.KindWebhook, URL: urlOf(rcv.URL)}}}))
	run(t, n)
	n.Notify(sampleEvent())
	rcv.wait(t, 3)
	waitFor(t, func() bool { return m.get("hook", notify.ResultFailed) == 1 })
	if s := m.get("hook", notify.ResultSent); s != 0 {
		t.Errorf("sent = %d, want 0", s)
	}
}

func TestClientErrorNotRetried(t *testing.T) {
	for _, code := range []int{http.StatusNotFound, http.StatusBadRequest, http.StatusFound} {
		rcv := newReceiver(t, func(_ int, w http.ResponseWriter) {
			if code == http.StatusFound {
				w.Header().Set("Location", "http://127.0.0.1:1/elsewhere")
			}
			w.WriteHeader(code)
		})
		n := newNotifier(t, fastRetries(notify.Options{Targets: []notify.Target{{
			Name: "hook", Kind: notify.KindWebhook, URL: urlOf(rcv.URL)}}}))
		err := n.Send(t.Context(), sampleEvent())
		var se *notify.StatusError
		if !errors.As(err, &se) || se.Code != code {
			t.Errorf("%d: err = %v, want StatusError", code, err)
		}
		if errors.Is(err, notify.ErrGaveUp) {
			t.Errorf("%d: err = %v: a permanent failure is not a spent retry budget", code, err)
		}
		if got := len(rcv.requests()); got != 1 {
			t.Errorf("%d: attempts = %d, want 1", code, got)
		}
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	rcv := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n == 0 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	})
	// Backoff alone would retry after about a millisecond.
	n := newNotifier(t, notify.Options{RetryBase: time.Millisecond, RetryMax: 5 * time.Second, Targets: []notify.Target{{
		Name: "hook", Kind: notify.KindWebhook, URL: urlOf(rcv.URL)}}})
	if err := n.Send(t.Context(), sampleEvent()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	reqs := rcv.requests()
	if len(reqs) != 2 {
		t.Fatalf("attempts = %d, want 2", len(reqs))
	}
	if gap := reqs[1].at.Sub(reqs[0].at); gap < 900*time.Millisecond {
		t.Errorf("retried after %s, want about the 1s Retry-After", gap)
	}
}

func TestRetryAfterCapped(t *testing.T) {
	rcv := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n == 0 {
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	})
	n := newNotifier(t, notify.Options{RetryBase: time.Millisecond, RetryMax: 20 * time.Millisecond, Targets: []notify.Target{{
		Name: "hook", Kind: notify.KindWebhook, URL: urlOf(rcv.URL)}}})
	done := make(chan error, 1)
	go func() { done <- n.Send(t.Context(), sampleEvent()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Retry-After 3600 was not capped by RetryMax")
	}
	if got := len(rcv.requests()); got != 2 {
		t.Errorf("attempts = %d, want 2", got)
	}
}

func TestNetworkErrorRetried(t *testing.T) {
	var attempts int
	rcv := newReceiver(t, nil)
	addr := rcv.URL
	rcv.Close() // nothing listens there any more: every attempt is refused
	n := newNotifier(t, fastRetries(notify.Options{Retries: 2, Targets: []notify.Target{{
		Name: "hook", Kind: notify.KindWebhook, URL: func() (string, error) { attempts++; return addr, nil }}}}))
	err := n.Send(t.Context(), sampleEvent())
	if !errors.Is(err, notify.ErrGaveUp) {
		t.Fatalf("err = %v, want ErrGaveUp", err)
	}
	if attempts != 3 {
		t.Errorf("attempts = %d, want 3", attempts)
	}
}
