package source

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

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

// fixture is a real Git repository built with the git CLI.
type fixture struct {
	t    *testing.T
	dir  string
	home string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("the git CLI is needed to build fixture repositories: %v", err)
	}
	f := &fixture{t: t, dir: filepath.Join(t.TempDir(), "upstream.git"), home: t.TempDir()}
	f.git("init", "-q", "-b", "main", f.dir)
	return f
}

// git runs the git CLI in the fixture and returns its trimmed stdout.
func (f *fixture) git(args ...string) string {
	f.t.Helper()
	cmd := exec.Command("git", args...)
	if len(args) == 0 || args[0] != "init" {
		cmd.Dir = f.dir
	}
	cmd.Env = append(os.Environ(),
		"HOME="+f.home, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			stderr = string(ee.Stderr)
		}
		f.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// write writes files (path → content) into the work tree; a content starting with
// "symlink:" makes a symlink, a path ending in ".sh" is made executable.
func (f *fixture) write(files map[string]string) {
	f.t.Helper()
	for name, content := range files {
		p := filepath.Join(f.dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			f.t.Fatal(err)
		}
		_ = os.Remove(p)
		if target, ok := strings.CutPrefix(content, "symlink:"); ok {
			if err := os.Symlink(target, p); err != nil {
				f.t.Fatal(err)
			}
			continue
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			f.t.Fatal(err)
		}
	}
}

// commit writes files, commits them and returns the commit SHA.
func (f *fixture) commit(msg string, files map[string]string) string {
	f.t.Helper()
	f.write(files)
	f.git("add", "-A")
	f.git("commit", "-q", "-m", msg)
	return f.git("rev-parse", "HEAD")
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

func writeSecret(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
