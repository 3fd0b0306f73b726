package faults

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shipwatch/shipwatch/internal/testdaemon"
	"github.com/shipwatch/shipwatch/internal/testgit"
	"github.com/shipwatch/shipwatch/internal/testproject"
	"github.com/shipwatch/shipwatch/reconciler"
)

// The flood: floodConns connections from floodSources (loopback addresses other than
// 127.0.0.1, so the test's own client is another address), in three kinds, each
// reconnecting when the daemon closes it, for at most floodFor.
const (
	floodConns     = 1000
	floodFor       = 3 * time.Minute
	floodReconnect = 500 * time.Millisecond // pause before a flood connection is opened again
	floodMaxRounds = 200                    // bound on each flood connection's reconnects
	// floodFiles is the daemon's file descriptor limit during the flood, as a systemd unit
	// or a container runtime may set it: the flood broke Git polling under it.
	floodFiles = 1024
	// rssCeilingMiB is the daemon's peak resident memory allowed while it deploys under the
	// flood, the race detector's shadow memory included: measured 198-228 MiB with the fix
	// (140 MiB before the flood starts), 2663 MiB without it.
	rssCeilingMiB = 320
	// syncBound bounds a sync through the API during the flood, healthzBound a /healthz.
	syncBound    = 30 * time.Second
	healthzBound = 5 * time.Second
	floodToken   = "tok-faults-flood"
)

var floodSources = []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}

func floodService(message string) map[string]string {
	return map[string]string{"compose.yaml": fmt.Sprintf(
		"services:\n  web:\n    image: %s\n    environment: {MESSAGE: %q}\n    restart: unless-stopped\n", image, message)}
}

// TestFloodOfSlowAndIdleConnections is issue 8's connection flood against a daemon that
// deploys a compose app: slow 1 MiB webhook bodies that stall one byte short, idle
// keep-alive connections and slowloris headers, from four addresses. While it lasts a sync
// through the API and /healthz must answer within bounds, a new commit must be polled and
// deployed, and the daemon's memory must stay under a ceiling.
func TestFloodOfSlowAndIdleConnections(t *testing.T) {
	repo := testgit.New(t)
	repo.Commit("first", floodService("one"))
	project := uniqueProject(t)
	addr := testdaemon.FreeAddr(t)
	d := startDaemon(t, writeFloodConfig(t, repo.Dir, addr, project), addr)
	api := &http.Client{Timeout: syncBound, Transport: &http.Transport{}}
	deployed := func(rev string) func() bool {
		return func() bool {
			st := d.Status(t, "app")
			return st.AppliedRevision == rev && st.Sync == reconciler.SyncSynced &&
				len(testproject.Containers(t, engine, project, false)["web"]) == 1
		}
	}
	eventually(t, 90*time.Second, "first revision deployed", deployed(repo.Git("rev-parse", "HEAD")))
	limitFiles(t, d.PID(), floodFiles)
	syncBefore, err := timedSync(t, api, addr)
	if err != nil {
		t.Fatalf("sync before the flood: %v", err)
	}
	rev := repo.Commit("second", floodService("two"))
	polled := time.Now()
	eventually(t, 90*time.Second, "a new commit polled and deployed", deployed(rev))
	deployBefore := time.Since(polled)
	rssBefore, hwmBefore := memoryKiB(t, d.PID())

	ctx, stop := context.WithTimeout(t.Context(), floodFor)
	defer stop()
	f := &flooder{addr: addr}
	f.start(ctx)
	eventually(t, 60*time.Second, "every flood connection opened once", func() bool { return f.opened.Load() >= floodConns })
	maxRSS := watchMemory(ctx, d.PID())

	healthz := healthzLatency(t, addr)
	syncDuring, err := timedSync(t, api, addr)
	if err != nil {
		t.Errorf("sync through the API during the flood: %v", err)
	}
	rev = repo.Commit("third", floodService("three"))
	polled = time.Now()
	eventually(t, 90*time.Second, "a new commit polled and deployed during the flood", deployed(rev))
	deployDuring := time.Since(polled)
	healthzAfter := healthzLatency(t, addr)
	opened, rounds := f.opened.Load(), f.rounds.Load()
	stop()
	f.wg.Wait()
	sampled := maxRSS()
	_, hwm := memoryKiB(t, d.PID())
	peak := max(sampled, hwm)

	converged := 1
	if t.Failed() { // a sync, a /healthz or the deploy during the flood failed
		converged = 0
	}
	if peak/1024 > rssCeilingMiB {
		t.Errorf("the daemon's resident memory peaked at %d MiB under the flood; ceiling %d MiB", peak/1024, rssCeilingMiB)
		converged = 0
	}
	lost := 0
	if n := len(testproject.Containers(t, engine, project, true)["web"]); n != 1 {
		t.Errorf("%d web containers after the flood, want 1", n)
		lost = 1
	}
	record(t, Outcome{Fault: "connection flood", Injected: int(opened), Runs: 1, Converged: converged, Lost: lost,
		Notes: []string{
			fmt.Sprintf("connections=%d", opened), fmt.Sprintf("reconnects=%d", rounds),
			fmt.Sprintf("rss-before-mib=%d", rssBefore/1024), fmt.Sprintf("hwm-before-mib=%d", hwmBefore/1024),
			fmt.Sprintf("max-rss-sampled-mib=%d", sampled/1024), fmt.Sprintf("max-rss-mib=%d", peak/1024),
			fmt.Sprintf("rss-ceiling-mib=%d", rssCeilingMiB),
			fmt.Sprintf("sync-before=%s", syncBefore.Round(time.Millisecond)),
			fmt.Sprintf("sync-under-flood=%s", syncDuring.Round(time.Millisecond)),
			fmt.Sprintf("healthz-under-flood=%s", max(healthz, healthzAfter).Round(time.Millisecond)),
			fmt.Sprintf("commit-to-deployed-before=%s", deployBefore.Round(time.Millisecond)),
			fmt.Sprintf("commit-to-deployed-under-flood=%s", deployDuring.Round(time.Millisecond)),
		}})
}

// writeFloodConfig writes a config whose repo is polled every second and accepts signed
// webhooks, so the flood's bodies go to a handler that reads them.
func writeFloodConfig(t *testing.T, repoDir, addr, project string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{"api-token": floodToken, "hook-secret": "flood-hook-secret"}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	doc := fmt.Sprintf(`stateDir: %s
listen: %q
api: {tokenFile: %s}
repos:
  - name: deploy
    url: %s
    interval: 1s
    webhook: {secretFile: %s}
apps:
  - {name: app, repo: deploy, compose: {project: %s}, healthTimeout: 60s}
`, filepath.Join(dir, "state"), addr, filepath.Join(dir, "api-token"), repoDir, filepath.Join(dir, "hook-secret"), project)
	p := filepath.Join(dir, "shipwatch.yaml")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// limitFiles sets the daemon's file descriptor limit (soft and hard) to n.
func limitFiles(t *testing.T, pid, n int) {
	t.Helper()
	lim := unix.Rlimit{Cur: uint64(n), Max: uint64(n)}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
		t.Fatalf("limit the daemon to %d files: %v", n, err)
	}
}

// memoryKiB reads the process's resident set and its peak (VmRSS, VmHWM) in KiB.
func memoryKiB(t *testing.T, pid int) (rss, hwm int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read the daemon's memory: %v", err)
	}
	for line := range strings.Lines(string(b)) {
		key, val, ok := strings.Cut(line, ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			t.Fatalf("parse %s: %v", line, err)
		}
		if key == "VmRSS" {
			rss = n
		} else {
			hwm = n
		}
	}
	return rss, hwm
}

// watchMemory samples the daemon's resident memory every 100ms until ctx ends; the
// function it returns gives the largest sample so far, in KiB.
func watchMemory(ctx context.Context, pid int) func() int64 {
	var peak atomic.Int64
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err == nil {
				for line := range strings.Lines(string(b)) {
					if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
						n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
						peak.Store(max(peak.Load(), n))
					}
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return peak.Load
}

// timedSync asks the daemon for a sync through the API and returns how long it took.
func timedSync(t *testing.T, c *http.Client, addr string) (time.Duration, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/api/v1/apps/app/sync", nil)
	if err != nil {
		return 0, fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+floodToken)
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("POST sync: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("POST sync: status %d", resp.StatusCode)
	}
	return time.Since(start), nil
}

// healthzLatency checks /healthz five times on new connections, each within healthzBound,
// and returns the slowest.
func healthzLatency(t *testing.T, addr string) time.Duration {
	t.Helper()
	c := &http.Client{Timeout: healthzBound, Transport: &http.Transport{DisableKeepAlives: true}}
	var slowest time.Duration
	for i := range 5 {
		start := time.Now()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/healthz", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Errorf("/healthz %d during the flood: %v", i+1, err)
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("/healthz %d during the flood: status %d", i+1, resp.StatusCode)
		}
		slowest = max(slowest, time.Since(start))
	}
	return slowest
}

// flooder runs the flood: floodConns goroutines, each holding one connection of its kind
// from its source address and opening it again when the daemon closes it.
type flooder struct {
	addr   string
	wg     sync.WaitGroup
	opened atomic.Int64 // connections opened, first ones and reconnects
	rounds atomic.Int64 // reconnects
}

type floodKind int

const (
	slowBody      floodKind = iota // a webhook declaring 1 MiB − 1 byte, sent one byte short, then stalled
	idleKeepAlive                  // one GET, then idle
	slowHeaders                    // a header line a second, never ending (slowloris)
)

func (f *flooder) start(ctx context.Context) {
	for i := range floodConns {
		kind := []floodKind{slowBody, slowBody, idleKeepAlive, slowHeaders}[i%4]
		src := floodSources[i%len(floodSources)]
		f.wg.Go(func() { f.run(ctx, kind, src) })
	}
}

func (f *flooder) run(ctx context.Context, kind floodKind, src string) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	for round := range floodMaxRounds {
		if round > 0 {
			f.rounds.Add(1)
			select {
			case <-ctx.Done():
				return
			case <-time.After(floodReconnect):
			}
		}
		c, err := d.DialContext(ctx, "tcp", f.addr)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			continue
		}
		f.opened.Add(1)
		stopClose := context.AfterFunc(ctx, func() { _ = c.Close() })
		f.hold(c, kind)
		stopClose()
		_ = c.Close()
	}
}

// hold plays one connection of kind until the daemon closes it or the flood ends (which
// closes c).
func (f *flooder) hold(c net.Conn, kind floodKind) {
	switch kind {
	case slowBody:
		const declared = 1<<20 - 1
		fmt.Fprintf(c, "POST /hooks/github HTTP/1.1\r\nHost: %s\r\nX-GitHub-Event: push\r\n"+
			"X-Hub-Signature-256: sha256=%s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
			f.addr, strings.Repeat("0", 64), declared)
		chunk := make([]byte, 64<<10)
		for sent := 0; sent < declared-1; {
			n := min(len(chunk), declared-1-sent)
			_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(chunk[:n]); err != nil {
				return
			}
			sent += n
		}
	case idleKeepAlive:
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", f.addr)
	case slowHeaders:
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n", f.addr)
		for i := range 120 {
			if !readsNothingFor(c, time.Second) {
				return
			}
			if _, err := fmt.Fprintf(c, "X-Slow-%d: 1\r\n", i); err != nil {
				return
			}
		}
	}
	// Stall: wait for the daemon to answer and close, or for the end of the flood.
	_ = c.SetReadDeadline(time.Now().Add(floodFor))
	_, _ = io.Copy(io.Discard, bufio.NewReader(c))
}

// readsNothingFor waits d for the daemon to send or close; it reports false when it did.
func readsNothingFor(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	var b [512]byte
	_, err := c.Read(b[:])
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
