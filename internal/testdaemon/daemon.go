// Package testdaemon runs the shipwatch binary as a user does, `shipwatch serve` with a
// config file, and talks to it over its HTTP server: the API, /metrics and webhooks. The
// end-to-end tests and the latency benchmarks use it; the caller builds the binary.
package testdaemon

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/shipwatch/shipwatch/internal/testmetrics"
	"github.com/shipwatch/shipwatch/reconciler"
)

// stopGrace is how long the daemon may take to stop after SIGINT at the end of a test
// before it is killed: long enough to finish an apply in flight.
const stopGrace = 30 * time.Second

// Options say which binary runs with which config.
type Options struct {
	// Binary is the shipwatch binary: built with -race for tests, without for benchmarks
	// (the race detector would dominate their latencies).
	Binary string
	// Config is the config file's path, e.g. from Config.Write.
	Config string
	// Addr is the config's listen address, where the daemon is reached.
	Addr string
	// LogLevel is passed as --log-level; empty keeps the daemon's default.
	LogLevel string
}

// Daemon is a running `shipwatch serve`. It runs until the test ends, then gets SIGINT, as
// from an operator, and is killed if it has not stopped within 30s; its output is logged
// when the test failed.
type Daemon struct {
	// Addr is where the daemon's HTTP server listens (host:port).
	Addr    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	waitErr error // set before exited is closed
}

// Start starts the daemon and returns at once; poll Status or Metric for it to be ready.
func Start(t testing.TB, opts Options) *Daemon {
	t.Helper()
	d := &Daemon{Addr: opts.Addr, logPath: filepath.Join(t.TempDir(), "shipwatch.log"), exited: make(chan struct{})}
	// A file, not a pipe: the daemon writes it directly, so the output is complete and
	// readable at any moment, with no copying goroutine to race with.
	logs, err := os.Create(d.logPath)
	if err != nil {
		t.Fatalf("create the daemon's log: %v", err)
	}
	args := []string{"serve", "--config", opts.Config}
	if opts.LogLevel != "" {
		args = append(args, "--log-level", opts.LogLevel)
	}
	d.cmd = exec.CommandContext(t.Context(), opts.Binary, args...)
	d.cmd.Cancel = func() error { return d.cmd.Process.Signal(os.Interrupt) }
	d.cmd.WaitDelay = stopGrace
	d.cmd.Stdout, d.cmd.Stderr = logs, logs
	err = d.cmd.Start()
	_ = logs.Close() // the daemon holds its own descriptor
	if err != nil {
		t.Fatalf("start shipwatch: %v", err)
	}
	go func() {
		d.waitErr = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		<-d.exited // the test's context is done before cleanups run: Cancel sent SIGINT
		if t.Failed() {
			t.Logf("shipwatch logs:\n%s", d.readLogs())
		}
	})
	return d
}

// PID is the daemon's process ID.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// Logs returns everything the daemon has written to stdout and stderr so far.
func (d *Daemon) Logs(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(d.logPath)
	if err != nil {
		t.Fatalf("read the daemon's log: %v", err)
	}
	return string(b)
}

func (d *Daemon) readLogs() string {
	b, err := os.ReadFile(d.logPath)
	if err != nil {
		return fmt.Sprintf("(read %s: %v)", d.logPath, err)
	}
	return string(b)
}

// Stop sends sig and waits up to timeout for the daemon to exit. It returns the exit error
// (nil for a clean exit), or an error saying the daemon outlived timeout; the end of the
// test stops such a daemon as usual.
func (d *Daemon) Stop(sig os.Signal, timeout time.Duration) error {
	select {
	case <-d.exited:
		return fmt.Errorf("shipwatch exited before %v was sent (%v)", sig, d.waitErr)
	default:
	}
	if err := d.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("send %v to shipwatch: %w", sig, err)
	}
	select {
	case <-d.exited:
		return d.waitErr
	case <-time.After(timeout):
		return fmt.Errorf("shipwatch still running %s after %v", timeout, sig)
	}
}

// Get returns the body of GET path (/metrics, /api/v1/apps); an error or a status other than
// 200 fails the test.
func (d *Daemon) Get(t testing.TB, path string) []byte {
	t.Helper()
	body, err := d.get(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func (d *Daemon) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.Addr+path, nil)
	if err != nil {
		return nil, fmt.Errorf("request GET %s: %w", path, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
	}
	return body, nil
}

// Metric sums the samples of the metric name on /metrics whose labels include labels (see
// testmetrics.Sum). It is 0 when there are none or /metrics cannot be read (the daemon is
// still starting), so callers poll it.
func (d *Daemon) Metric(t testing.TB, name string, labels map[string]string) float64 {
	page, err := d.get(t.Context(), "/metrics")
	if err != nil {
		return 0
	}
	return testmetrics.Sum(page, name, labels)
}

// Status reads GET /api/v1/apps/{app}. A failed read is the zero Status, which is never in
// sync or healthy, so callers poll it.
func (d *Daemon) Status(t testing.TB, app string) reconciler.Status {
	var st reconciler.Status
	body, err := d.get(t.Context(), "/api/v1/apps/"+app)
	if err != nil {
		return st
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return reconciler.Status{}
	}
	return st
}

// Post calls a mutating API endpoint (/api/v1/apps/app/sync) with token as the bearer token
// and returns the status code; a failed request fails the test.
func (d *Daemon) Post(t testing.TB, path, token string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+d.Addr+path, nil)
	if err != nil {
		t.Fatalf("request POST %s: %v", path, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return do(t, req)
}

// GitHubPush posts body to /hooks/github as a GitHub push event signed with secret, as
// GitHub signs it (X-Hub-Signature-256), and returns the status code; a failed request
// fails the test.
func (d *Daemon) GitHubPush(t testing.TB, secret, body []byte) int {
	t.Helper()
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+d.Addr+"/hooks/github", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("request POST /hooks/github: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	return do(t, req)
}

func do(t testing.TB, req *http.Request) int {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}
