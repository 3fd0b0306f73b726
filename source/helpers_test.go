package source

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// emptyCompose is the compose.yaml the transport tests commit and read back.
const emptyCompose = "services: {}\n"

// countingObserver counts observations per "op/result".
type countingObserver struct {
	mu     sync.Mutex
	counts map[string]int
}

func newCountingObserver() *countingObserver {
	return &countingObserver{counts: map[string]int{}}
}

func (o *countingObserver) ObserveGitRequest(repo, op, result string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.counts[op+"/"+result]++
	o.counts[op]++
}

func (o *countingObserver) count(key string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[key]
}

func (o *countingObserver) reset() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.counts = map[string]int{}
}

func newTestCache(t *testing.T, obs Observer, keep int) *Cache {
	t.Helper()
	dir := t.TempDir()
	c, err := New(Options{Dir: dir, Observer: obs, Keep: keep})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// Checkouts are read-only; without this a non-root TempDir cleanup would fail.
	t.Cleanup(func() { _ = removeTree(dir) })
	return c
}

// mustResolve resolves ref of repo; an error fails the test.
func mustResolve(t *testing.T, c *Cache, repo Repo, ref string) string {
	t.Helper()
	rev, err := c.Resolve(t.Context(), repo, ref)
	if err != nil {
		t.Fatalf("Resolve(%s): %v", ref, err)
	}
	return rev
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkReads reads repo through a new cache the way the reconciler does: each ref must
// resolve to want, and a checkout of main at want must hold emptyCompose after exactly one
// fetch, with no failed attempt before it (a transport that cannot fetch shallow would
// show one).
func checkReads(t *testing.T, repo Repo, want string, refs ...string) {
	t.Helper()
	obs := newCountingObserver()
	c := newTestCache(t, obs, 0)
	for _, ref := range refs {
		rev, err := c.Resolve(t.Context(), repo, ref)
		if err != nil || rev != want {
			t.Fatalf("Resolve(%s) = %s, %v; want %s", ref, rev, err, want)
		}
	}
	dir, err := c.Checkout(t.Context(), repo, "main", want)
	if err != nil {
		t.Fatalf("Checkout: %v", err)
	}
	if got := readFile(t, filepath.Join(dir, "compose.yaml")); got != emptyCompose {
		t.Errorf("compose.yaml = %q", got)
	}
	if n := obs.count(OpFetch + "/" + ResultSuccess); n != 1 {
		t.Errorf("%d successful fetches, want 1", n)
	}
	if n := obs.count(OpFetch + "/" + ResultError); n != 0 {
		t.Errorf("%d failed fetches, want 0", n)
	}
}
