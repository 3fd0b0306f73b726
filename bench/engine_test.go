package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/moby/moby/client"
)

// apiCounter counts Engine API requests by method and path, so a benchmark can report how
// many calls (and how many writes) one operation costs.
type apiCounter struct {
	mu    sync.Mutex
	calls map[string]int // "GET /containers/json" -> n
}

func newAPICounter() *apiCounter { return &apiCounter{calls: map[string]int{}} }

func (c *apiCounter) record(r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[r.Method+" "+apiPath(r.URL.Path)]++
}

// reset forgets what was counted, so setup calls are not charged to the measured loop.
func (c *apiCounter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.calls)
}

// totals returns all calls and the writes among them (anything but GET and HEAD).
func (c *apiCounter) totals() (all, writes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, n := range c.calls {
		all += n
		if !strings.HasPrefix(k, "GET ") && !strings.HasPrefix(k, "HEAD ") {
			writes += n
		}
	}
	return all, writes
}

// breakdown renders the counts sorted by key, for the benchmark log.
func (c *apiCounter) breakdown(ops int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var lines []string
	for k, n := range c.calls {
		lines = append(lines, fmt.Sprintf("  %-45s %.2f/op", k, float64(n)/float64(ops)))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// report adds the per-op metrics to the benchmark result.
func (c *apiCounter) report(b *testing.B, ops int) {
	b.Helper()
	if ops == 0 {
		return
	}
	all, writes := c.totals()
	b.ReportMetric(float64(all)/float64(ops), "api-calls/op")
	b.ReportMetric(float64(writes)/float64(ops), "writes/op")
	b.Logf("Engine API calls per op (%d ops):\n%s", ops, c.breakdown(ops))
}

// apiPath drops the version prefix and IDs' variability enough to group calls by endpoint:
// "/v1.41/containers/abc/json" -> "/containers/{id}/json".
func apiPath(p string) string {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if len(parts) > 0 && strings.HasPrefix(parts[0], "v1.") {
		parts = parts[1:]
	}
	switch {
	case len(parts) >= 3 && parts[0] == "images":
		// Image references contain slashes: keep only the operation after them.
		parts = []string{"images", "{ref}", parts[len(parts)-1]}
	case len(parts) >= 3 && slices.Contains([]string{"containers", "networks", "volumes"}, parts[0]):
		parts[1] = "{id}"
	}
	return "/" + strings.Join(parts, "/")
}

// countingTransport counts every request before passing it on.
type countingTransport struct {
	counter *apiCounter
	base    http.RoundTripper
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.counter.record(r)
	return t.base.RoundTrip(r)
}

// engineSocket is the Engine's unix socket path from DOCKER_HOST, else the default. The
// benchmarks need a local unix socket: the counting proxy serves on one.
func engineSocket(b *testing.B) string {
	b.Helper()
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		return "/var/run/docker.sock"
	}
	u, err := url.Parse(host)
	if err != nil || u.Scheme != "unix" {
		b.Skipf("DOCKER_HOST %q: benchmarks need a unix socket", host)
	}
	return u.Path
}

// unixTransport dials the Engine socket for every connection, whatever the URL's host.
func unixTransport(socket string) *http.Transport {
	return &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
}

// countingClient is an Engine client whose every request goes through counter.
func countingClient(b *testing.B, socket string, counter *apiCounter) *client.Client {
	b.Helper()
	hc := &http.Client{Transport: &countingTransport{counter: counter, base: unixTransport(socket)}}
	// WithHost first: it configures the default transport, which WithHTTPClient replaces.
	c, err := client.New(client.WithHost("unix://"+socket), client.WithHTTPClient(hc))
	if err != nil {
		b.Fatalf("engine client: %v", err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// countingProxy serves the Engine API on a new unix socket in dir, counting requests, so
// an external program (docker-compose) can be measured: point DOCKER_HOST at the result.
func countingProxy(b *testing.B, engine, dir string, counter *apiCounter) string {
	b.Helper()
	sock := filepath.Join(dir, "engine.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatalf("listen on proxy socket: %v", err)
	}
	target := &url.URL{Scheme: "http", Host: "docker"}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			counter.record(r.In)
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		Transport:     unixTransport(engine),
		FlushInterval: -1, // stream logs and events as they come
	}
	srv := &http.Server{Handler: proxy}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.Errorf("proxy: %v", err)
		}
	}()
	b.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return "unix://" + sock
}
