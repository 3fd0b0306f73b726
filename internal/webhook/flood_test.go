package webhook

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingBody records whether anything read it.
type countingBody struct {
	r     io.Reader
	reads atomic.Int32
}

func (c *countingBody) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.r.Read(p)
}

func (f *fixture) doBody(t *testing.T, hk hook, body io.Reader, length int64) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/hooks/"+hk.provider, body)
	req.ContentLength = length
	req.RemoteAddr = cmpOrString(hk.remote, "192.0.2.10:40000")
	for k, v := range hk.headers {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	f.mux.ServeHTTP(w, req)
	return w
}

// TestRefusedBodiesAreNotRead: what can be refused from the headers alone (no signature,
// a declared body over the limit, a client out of attempts) is refused without reading a
// byte of the body.
func TestRefusedBodiesAreNotRead(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxBody = 1 << 10; o.Failures = 2 })
	unsigned := hook{provider: "github", headers: map[string]string{"X-GitHub-Event": "push"}}
	oversize := githubHook(githubPush, appSecret)
	cases := []struct {
		name   string
		hk     hook
		length int64
		want   int
	}{
		{"unsigned", unsigned, 100, http.StatusUnauthorized},
		{"declared over the limit", oversize, 1<<10 + 1, http.StatusRequestEntityTooLarge},
		{"out of attempts", githubHook(githubPush, appSecret), int64(len(githubPush)), http.StatusTooManyRequests},
	}
	for _, c := range cases {
		body := &countingBody{r: strings.NewReader(strings.Repeat("x", int(c.length)))}
		if w := f.doBody(t, c.hk, body, c.length); w.Code != c.want {
			t.Errorf("%s: status %d, want %d", c.name, w.Code, c.want)
		}
		if n := body.reads.Load(); n != 0 {
			t.Errorf("%s: the body was read %d times before the request was refused", c.name, n)
		}
	}
}

// stalledBody signals its first read, then blocks until released.
type stalledBody struct {
	started chan<- struct{}
	release <-chan struct{}
	once    sync.Once
}

func (s *stalledBody) Read([]byte) (int, error) {
	s.once.Do(func() { s.started <- struct{}{} })
	<-s.release
	return 0, io.ErrUnexpectedEOF
}

// TestBodyBudgetRefusesBeforeReading: bodies being read reserve their declared length
// from one budget; a request that does not fit gets 503 without its body being read, and
// is not counted against its client.
func TestBodyBudgetRefusesBeforeReading(t *testing.T) {
	const size = 512
	f := newFixture(t, func(o *Options) { o.MaxBody = 2 * size; o.MaxPendingBytes = 2 * size })
	started, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	for i := range 2 {
		hk := githubHook(githubPush, appSecret)
		hk.remote = fmt.Sprintf("198.51.100.%d:1", i+1)
		wg.Go(func() { f.doBody(t, hk, &stalledBody{started: started, release: release}, size) })
	}
	<-started
	<-started
	third := githubHook(githubPush, appSecret)
	third.remote = "198.51.100.3:1"
	body := &countingBody{r: strings.NewReader(githubPush)}
	w := f.doBody(t, third, body, int64(len(githubPush)))
	result := f.rec.lastResult()
	close(release)
	wg.Wait()
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || body.reads.Load() != 0 {
		t.Fatalf("third body while the budget is full: status %d, Retry-After %q, %d reads; want 503 unread",
			w.Code, w.Header().Get("Retry-After"), body.reads.Load())
	}
	if got := result; got != "github/busy" {
		t.Errorf("metric %q", got)
	}
	if w := f.do(t, third); w.Code != http.StatusAccepted {
		t.Errorf("once the budget is free: status %d", w.Code)
	}
}

// TestAttemptsCountBeforeTheBodyIsRead is the flood of issue 8 in small: one address opens
// Failures requests that declare a body and stall in the middle of it. The next request
// from that address is refused at once, without the daemon waiting to read its body.
func TestAttemptsCountBeforeTheBodyIsRead(t *testing.T) {
	const failures = 3
	f := newFixture(t, func(o *Options) { o.Failures = failures })
	reading := make(chan struct{}, failures+1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = &signalBody{ReadCloser: r.Body, reading: reading}
		f.mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	for range failures {
		c := rawPost(t, addr, strings.Repeat("x", 512))
		t.Cleanup(func() { _ = c.Close() })
	}
	for range failures {
		<-reading
	}
	c := rawPost(t, addr, "")
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a request from an address with %d bodies pending: %v", failures, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429", resp.StatusCode)
	}
}

// rawPost sends a signed-looking push declaring a 64 KiB body and only the first part of
// it, and leaves the connection open.
func rawPost(t *testing.T, addr, part string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "POST /hooks/github HTTP/1.1\r\nHost: %s\r\nX-GitHub-Event: push\r\n"+
		"X-Hub-Signature-256: sha256=%s\r\nContent-Length: %d\r\n\r\n%s",
		addr, strings.Repeat("0", 64), 64<<10, part)
	return c
}

// signalBody signals each read of a request body.
type signalBody struct {
	io.ReadCloser
	reading chan<- struct{}
	once    sync.Once
}

func (s *signalBody) Read(p []byte) (int, error) {
	s.once.Do(func() { s.reading <- struct{}{} })
	return s.ReadCloser.Read(p)
}
