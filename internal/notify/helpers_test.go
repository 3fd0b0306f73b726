package notify_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/shipwatch/shipwatch/internal/notify"
)

// request is what a test receiver got.
type request struct {
	header http.Header
	body   []byte
	at     time.Time
}

// receiver is a real HTTP server on 127.0.0.1 that records requests and answers with
// respond(n), n counting from 0.
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []request
	arrived chan struct{}
}

func newReceiver(t *testing.T, respond func(n int, w http.ResponseWriter)) *receiver {
	t.Helper()
	r := &receiver{arrived: make(chan struct{}, 100000)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			t.Errorf("read body: %v", err)
		}
		r.mu.Lock()
		n := len(r.reqs)
		r.reqs = append(r.reqs, request{header: req.Header.Clone(), body: body, at: time.Now()})
		r.mu.Unlock()
		r.arrived <- struct{}{}
		if respond != nil {
			respond(n, w)
		}
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.reqs...)
}

// wait blocks until n more requests arrived.
func (r *receiver) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-r.arrived:
		case <-time.After(10 * time.Second):
			t.Fatalf("receiver: timed out waiting for a request (have %d)", len(r.requests()))
		}
	}
}

// urlOf is a Target.URL returning a fixed URL.
func urlOf(u string) func() (string, error) {
	return func() (string, error) { return u, nil }
}

// fakeMetrics counts observations; fakes are fine here: it is pure bookkeeping.
type fakeMetrics struct {
	mu sync.Mutex
	m  map[string]int
}

func (f *fakeMetrics) ObserveNotification(target, result string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]int{}
	}
	f.m[target+"/"+result]++
}

func (f *fakeMetrics) get(target, result string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[target+"/"+result]
}

// lockedBuffer is a log sink safe to read while goroutines log.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func debugLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// fastRetries makes retry tests take milliseconds.
func fastRetries(o notify.Options) notify.Options {
	o.RetryBase, o.RetryMax = time.Millisecond, 5*time.Millisecond
	return o
}

func newNotifier(t *testing.T, opts notify.Options) *notify.Notifier {
	t.Helper()
	n, err := notify.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return n
}

// run starts n.Run and stops it at cleanup; the returned func stops it early and waits.
func run(t *testing.T, n *notify.Notifier) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Errorf("Run did not stop within 10s of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}
