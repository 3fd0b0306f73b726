package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shipwatch/shipwatch/internal/metrics"
	"github.com/shipwatch/shipwatch/reconciler"
)

// answerWithin bounds every wait for the server in these tests.
const answerWithin = 5 * time.Second

func startServer(t *testing.T, opts Options) *Server {
	t.Helper()
	opts.Addr = "127.0.0.1:0"
	if opts.Metrics == nil {
		opts.Metrics = metrics.New("t").Handler()
	}
	s, err := New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(t.Context()) }()
	return s
}

// dialFrom opens a connection to addr from the loopback address from (127.0.0.2 and so
// on: Linux routes all of 127/8 to lo), so tests can be several clients.
func dialFrom(t *testing.T, addr, from string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: answerWithin}
	c, err := d.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip writes raw on c and reads one response; code is 0 when the server closed the
// connection without answering.
func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader, raw string) int {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		return 0
	}
	return readCode(t, c, br)
}

func readCode(t *testing.T, c net.Conn, br *bufio.Reader) int {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(answerWithin))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("no answer within %v", answerWithin)
		}
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

func get(path, host string) string {
	return fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host)
}

// closedWithin reports whether the server closes c within d, reading whatever it sends.
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

func TestServerTimeoutsAreSet(t *testing.T) {
	s := startServer(t, Options{})
	if s.srv.ReadHeaderTimeout <= 0 || s.srv.ReadTimeout <= 0 || s.srv.WriteTimeout <= 0 || s.srv.IdleTimeout <= 0 {
		t.Errorf("timeouts: header %v, read %v, write %v, idle %v; want all set",
			s.srv.ReadHeaderTimeout, s.srv.ReadTimeout, s.srv.WriteTimeout, s.srv.IdleTimeout)
	}
	if s.srv.MaxHeaderBytes <= 0 || s.srv.MaxHeaderBytes > 64<<10 {
		t.Errorf("MaxHeaderBytes = %d, want a bound below net/http's 1 MiB default", s.srv.MaxHeaderBytes)
	}
}

// TestSlowAndIdleConnectionsAreClosed: a body that stalls, headers sent a line at a time
// and an idle keep-alive connection are each closed by a timeout.
func TestSlowAndIdleConnectionsAreClosed(t *testing.T) {
	const timeout = 300 * time.Millisecond
	reader := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) })
	s := startServer(t, Options{Webhooks: reader,
		ReadHeaderTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, IdleTimeout: timeout})

	body := dialFrom(t, s.Addr(), "127.0.0.1")
	fmt.Fprintf(body, "POST /hooks/github HTTP/1.1\r\nHost: %s\r\nContent-Length: 1048575\r\n\r\n%s", s.Addr(), strings.Repeat("x", 4096))
	headers := dialFrom(t, s.Addr(), "127.0.0.1")
	fmt.Fprintf(headers, "GET /healthz HTTP/1.1\r\nHost: %s\r\nX-Slow: 1\r\n", s.Addr())
	idle := dialFrom(t, s.Addr(), "127.0.0.1")
	if code := roundTrip(t, idle, bufio.NewReader(idle), get("/healthz", s.Addr())); code != http.StatusOK {
		t.Fatalf("healthz = %d", code)
	}
	for name, c := range map[string]net.Conn{"stalled body": body, "slow headers": headers, "idle keep-alive": idle} {
		if !closedWithin(c, answerWithin) {
			t.Errorf("%s: connection still open after %v (timeouts %v)", name, answerWithin, timeout)
		}
	}
}

// slowApps answers Sync after hold, reporting whether the request's context ended first.
type slowApps struct {
	fakeApps
	hold time.Duration
}

func (a *slowApps) Sync(ctx context.Context, name string, opts reconciler.SyncOptions) (reconciler.Status, error) {
	select {
	case <-time.After(a.hold): // the apply and health wait being simulated
		return a.fakeApps.Sync(ctx, name, opts)
	case <-ctx.Done():
		return reconciler.Status{}, fmt.Errorf("sync cut short: %w", ctx.Err())
	}
}

// TestSyncOutlastsTheServerTimeouts: sync waits for health, far longer than the read and
// write timeouts; it is neither cancelled nor cut off.
func TestSyncOutlastsTheServerTimeouts(t *testing.T) {
	const timeout = 200 * time.Millisecond
	apps := &slowApps{hold: 5 * timeout}
	s := startServer(t, Options{Apps: apps, Token: func() (string, error) { return "t", nil },
		ReadTimeout: timeout, WriteTimeout: timeout, IdleTimeout: timeout})
	code, body := call(t, "POST", "http://"+s.Addr()+"/api/v1/apps/web/sync", "t")
	if code != http.StatusOK || len(apps.synced) != 1 {
		t.Fatalf("sync held %v behind timeouts of %v: %d %s", apps.hold, timeout, code, body)
	}
}

// TestPerAddressConnectionCap: one address gets MaxConnsPerAddr connections, the next is
// refused at once, another address is still served, and a closed connection frees its slot.
func TestPerAddressConnectionCap(t *testing.T) {
	const perAddr = 3
	s := startServer(t, Options{MaxConns: 10, MaxConnsPerAddr: perAddr})
	var held []net.Conn
	for range perAddr {
		c := dialFrom(t, s.Addr(), "127.0.0.2")
		if code := roundTrip(t, c, bufio.NewReader(c), get("/healthz", s.Addr())); code != http.StatusOK {
			t.Fatalf("connection within the cap: %d", code)
		}
		held = append(held, c)
	}
	extra := dialFrom(t, s.Addr(), "127.0.0.2")
	if code := roundTrip(t, extra, bufio.NewReader(extra), get("/healthz", s.Addr())); code == http.StatusOK {
		t.Fatalf("connection %d from one address was served; cap is %d", perAddr+1, perAddr)
	}
	other := dialFrom(t, s.Addr(), "127.0.0.3")
	if code := roundTrip(t, other, bufio.NewReader(other), get("/healthz", s.Addr())); code != http.StatusOK {
		t.Fatalf("another address refused: %d", code)
	}
	_ = held[0].Close()
	ok := false
	for range 50 { // the server sees the close asynchronously
		c := dialFrom(t, s.Addr(), "127.0.0.2")
		if roundTrip(t, c, bufio.NewReader(c), get("/healthz", s.Addr())) == http.StatusOK {
			ok = true
			break
		}
		_ = c.Close()
	}
	if !ok {
		t.Error("a closed connection did not free its slot")
	}
}

// TestTotalConnectionCap: beyond MaxConns connections in all, a new one is refused
// whatever its address.
func TestTotalConnectionCap(t *testing.T) {
	s := startServer(t, Options{MaxConns: 4, MaxConnsPerAddr: 2})
	for _, from := range []string{"127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"} {
		c := dialFrom(t, s.Addr(), from)
		if code := roundTrip(t, c, bufio.NewReader(c), get("/healthz", s.Addr())); code != http.StatusOK {
			t.Fatalf("connection within the caps: %d", code)
		}
	}
	c := dialFrom(t, s.Addr(), "127.0.0.4")
	if code := roundTrip(t, c, bufio.NewReader(c), get("/healthz", s.Addr())); code == http.StatusOK {
		t.Fatal("a 5th connection was served; the cap is 4")
	}
}

// TestBodyOverTheCapIsRefusedUnread: a declared body over the API's cap gets 413 at once,
// without the server waiting for (or reading) it.
func TestBodyOverTheCapIsRefusedUnread(t *testing.T) {
	s := startServer(t, Options{Apps: &fakeApps{}})
	c := dialFrom(t, s.Addr(), "127.0.0.1")
	raw := fmt.Sprintf("POST /api/v1/apps/web/sync HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", s.Addr(), 100<<10)
	if code := roundTrip(t, c, bufio.NewReader(c), raw); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", code)
	}
}

func TestHostAllowList(t *testing.T) {
	listed := startServer(t, Options{AllowedHosts: []string{"shipwatch.example.com"}})
	_, port, _ := net.SplitHostPort(listed.Addr())
	cases := map[string]int{
		"127.0.0.1:" + port:               http.StatusOK,
		"localhost:" + port:               http.StatusOK,
		"[::1]:" + port:                   http.StatusOK,
		"10.1.2.3":                        http.StatusOK,
		"shipwatch.example.com":           http.StatusOK,
		"SHIPWATCH.example.com.:" + port:  http.StatusOK,
		"rebind.attacker.example:" + port: http.StatusMisdirectedRequest,
		"example.com":                     http.StatusMisdirectedRequest,
	}
	for host, want := range cases {
		c := dialFrom(t, listed.Addr(), "127.0.0.1")
		if code := roundTrip(t, c, bufio.NewReader(c), get("/healthz", host)); code != want {
			t.Errorf("Host %s: %d, want %d", host, code, want)
		}
	}
	for allowed, want := range map[string]int{"": http.StatusMisdirectedRequest, "*": http.StatusOK} {
		s := startServer(t, Options{AllowedHosts: strings.Fields(allowed)})
		c := dialFrom(t, s.Addr(), "127.0.0.1")
		if code := roundTrip(t, c, bufio.NewReader(c), get("/healthz", "rebind.attacker.example")); code != want {
			t.Errorf("allowedHosts %q: a named Host got %d, want %d", allowed, code, want)
		}
	}
}
