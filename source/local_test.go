package source

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/shipwatch/shipwatch/internal/testgit"
)

// urlForms are the two ways a local repository can be configured.
func urlForms(dir string) map[string]string {
	return map[string]string{"file-url": "file://" + dir, "local-path": dir}
}

func TestResolveRefs(t *testing.T) {
	f := testgit.New(t)
	first := f.Commit("first", map[string]string{"compose.yaml": "services: {}\n"})
	f.Git("tag", "v1")
	f.Git("tag", "-a", "-m", "annotated", "v2")
	tagObject := f.Git("rev-parse", "v2")
	if tagObject == first {
		t.Fatal("fixture: annotated tag should be its own object")
	}
	second := f.Commit("second", map[string]string{"compose.yaml": "services: {a: {image: x}}\n"})

	for form, url := range urlForms(f.Dir) {
		t.Run(form, func(t *testing.T) {
			obs := newCountingObserver()
			c := newTestCache(t, obs, 0)
			repo := Repo{Name: "app", URL: url}
			cases := map[string]string{
				"main":            second,
				"refs/heads/main": second,
				"HEAD":            second,
				"v1":              first,
				"refs/tags/v1":    first,
				"v2":              first,
				"refs/tags/v2":    first,
			}
			for ref, want := range cases {
				obs.reset()
				if got := mustResolve(t, c, repo, ref); got != want {
					t.Errorf("Resolve(%q) = %s, want %s", ref, got, want)
				}
				if n := obs.count(OpLsRemote + "/" + ResultSuccess); n != 1 {
					t.Errorf("Resolve(%q): %d ls-remote observations, want exactly 1", ref, n)
				}
				// The in-process file server advertises no peeled tags, so a tag
				// costs one fetch to peel; a branch never does.
				maxFetch := 0
				if want == first { // every tag of the fixture names the first commit
					maxFetch = 1
				}
				if n := obs.count(OpFetch); n > maxFetch {
					t.Errorf("Resolve(%q): %d fetch observations, want at most %d", ref, n, maxFetch)
				}
			}

			obs.reset()
			got, err := c.Resolve(t.Context(), repo, "ABCDEF"+first[6:])
			if err != nil || got != "abcdef"+first[6:] {
				t.Errorf("Resolve(full SHA) = %q, %v; want it returned lower-cased", got, err)
			}
			if n := obs.count(OpLsRemote); n != 0 {
				t.Errorf("Resolve(full SHA): %d ls-remote observations, want 0", n)
			}

			_, err = c.Resolve(t.Context(), repo, "no-such-branch")
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("Resolve(missing) error = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestResolveAmbiguousRef(t *testing.T) {
	f := testgit.New(t)
	f.Commit("first", map[string]string{"a": "1"})
	f.Git("tag", "main")
	c := newTestCache(t, nil, 0)
	_, err := c.Resolve(t.Context(), Repo{Name: "app", URL: f.Dir}, "main")
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("Resolve(ambiguous) error = %v, want ErrConfig", err)
	}
	if _, err := c.Resolve(t.Context(), Repo{Name: "app", URL: f.Dir}, "refs/heads/main"); err != nil {
		t.Fatalf("Resolve(refs/heads/main): %v", err)
	}
}

func TestCheckoutContent(t *testing.T) {
	f := testgit.New(t)
	f.Commit("first", map[string]string{
		"compose.yaml":       "services:\n  web:\n    image: web\n",
		"scripts/run.sh":     "#!/bin/sh\necho hi\n",
		"config/app/env":     "A=1\n",
		"config/link.yaml":   "symlink:../compose.yaml",
		"outside":            "symlink:/etc/passwd",
		"config/app/.hidden": "h",
	})
	for form, url := range urlForms(f.Dir) {
		t.Run(form, func(t *testing.T) {
			c := newTestCache(t, nil, 0)
			repo := Repo{Name: "app", URL: url}
			rev := mustResolve(t, c, repo, "main")
			dir, err := c.Checkout(t.Context(), repo, "main", rev)
			if err != nil {
				t.Fatalf("Checkout: %v", err)
			}
			if want := filepath.Join(c.dir, "checkouts", "app", rev); dir != want {
				t.Errorf("Checkout dir = %s, want %s", dir, want)
			}
			if got := readFile(t, filepath.Join(dir, "compose.yaml")); got != "services:\n  web:\n    image: web\n" {
				t.Errorf("compose.yaml = %q", got)
			}
			if got := readFile(t, filepath.Join(dir, "config/app/env")); got != "A=1\n" {
				t.Errorf("config/app/env = %q", got)
			}
			assertMode(t, filepath.Join(dir, "compose.yaml"), 0o444)
			assertMode(t, filepath.Join(dir, "scripts/run.sh"), 0o555)
			assertMode(t, filepath.Join(dir, "config/app"), os.ModeDir|0o555)
			assertMode(t, dir, os.ModeDir|0o555)
			for link, want := range map[string]string{"config/link.yaml": "../compose.yaml", "outside": "/etc/passwd"} {
				got, err := os.Readlink(filepath.Join(dir, link))
				if err != nil || got != want {
					t.Errorf("Readlink(%s) = %q, %v; want %q (kept as a symlink)", link, got, err, want)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, ".git")); !os.IsNotExist(err) {
				t.Errorf("checkout has a .git entry: %v", err)
			}
			entries, _ := os.ReadDir(filepath.Dir(dir))
			if len(entries) != 1 {
				t.Errorf("checkouts dir holds %d entries, want only the checkout (no temp dirs)", len(entries))
			}
		})
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode() & (os.ModeType | os.ModePerm); got != want {
		t.Errorf("mode of %s = %v, want %v", path, got, want)
	}
}

func TestCheckoutUnchangedRevisionDoesNotFetch(t *testing.T) {
	f := testgit.New(t)
	f.Commit("first", map[string]string{"a": "1"})
	obs := newCountingObserver()
	c := newTestCache(t, obs, 0)
	repo := Repo{Name: "app", URL: "file://" + f.Dir}
	rev := mustResolve(t, c, repo, "main")
	if _, err := c.Checkout(t.Context(), repo, "main", rev); err != nil {
		t.Fatal(err)
	}
	if n := obs.count(OpFetch + "/" + ResultSuccess); n != 1 {
		t.Fatalf("first Checkout: %d successful fetches, want 1", n)
	}

	obs.reset()
	dir, err := c.Checkout(t.Context(), repo, "main", rev)
	if err != nil {
		t.Fatal(err)
	}
	if n := obs.count(OpFetch); n != 0 {
		t.Errorf("second Checkout of the same revision: %d fetches, want 0", n)
	}

	// The checkout is gone but the commit is in the object store: still no fetch.
	if err := removeTree(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Checkout(t.Context(), repo, "main", rev); err != nil {
		t.Fatal(err)
	}
	if n := obs.count(OpFetch); n != 0 {
		t.Errorf("Checkout of a stored revision: %d fetches, want 0", n)
	}
	if got := readFile(t, filepath.Join(dir, "a")); got != "1" {
		t.Errorf("rewritten checkout: a = %q", got)
	}

	// A new commit needs exactly one fetch.
	second := f.Commit("second", map[string]string{"a": "2"})
	obs.reset()
	rev2, err := c.Resolve(t.Context(), repo, "main")
	if err != nil || rev2 != second {
		t.Fatalf("Resolve = %s, %v; want %s", rev2, err, second)
	}
	dir2, err := c.Checkout(t.Context(), repo, "main", rev2)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir2, "a")); got != "2" {
		t.Errorf("new revision: a = %q, want 2", got)
	}
	if n, m := obs.count(OpLsRemote), obs.count(OpFetch); n != 1 || m != 1 {
		t.Errorf("new revision: %d ls-remote and %d fetches, want 1 and 1", n, m)
	}
}

func TestConcurrentCheckoutFetchesOnce(t *testing.T) {
	f := testgit.New(t)
	f.Commit("first", map[string]string{"a": "1"})
	obs := newCountingObserver()
	c := newTestCache(t, obs, 0)
	repo := Repo{Name: "app", URL: "file://" + f.Dir}
	rev := mustResolve(t, c, repo, "main")
	var wg sync.WaitGroup
	dirs := make([]string, 8)
	errs := make([]error, 8)
	for i := range 8 {
		wg.Go(func() { dirs[i], errs[i] = c.Checkout(t.Context(), repo, "main", rev) })
	}
	wg.Wait()
	for i := range 8 {
		if errs[i] != nil || dirs[i] != dirs[0] {
			t.Errorf("caller %d: %s, %v; want %s", i, dirs[i], errs[i], dirs[0])
		}
	}
	if n := obs.count(OpFetch); n != 1 {
		t.Errorf("8 concurrent Checkouts: %d fetches, want 1", n)
	}
}

func TestCheckoutKeep(t *testing.T) {
	f := testgit.New(t)
	c := newTestCache(t, nil, 2)
	repo := Repo{Name: "app", URL: f.Dir}
	var revs []string
	for i := range 4 {
		f.Commit("c", map[string]string{"a": string(rune('0' + i))})
		rev := mustResolve(t, c, repo, "main")
		if _, err := c.Checkout(t.Context(), repo, "main", rev); err != nil {
			t.Fatal(err)
		}
		revs = append(revs, rev)
	}
	entries, err := os.ReadDir(filepath.Join(c.dir, "checkouts", "app"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	want := []string{revs[2], revs[3]}
	sort.Strings(want)
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("kept checkouts = %v, want the last two %v", got, want)
	}
	// A pruned revision comes back from the object store.
	dir, err := c.Checkout(t.Context(), repo, "main", revs[3])
	if err != nil || readFile(t, filepath.Join(dir, "a")) != "3" {
		t.Errorf("Checkout after prune: %v", err)
	}
}

func TestCheckoutBySHA(t *testing.T) {
	f := testgit.New(t)
	old := f.Commit("old", map[string]string{"a": "old"})
	f.Commit("new", map[string]string{"a": "new"})
	c := newTestCache(t, nil, 0)
	repo := Repo{Name: "app", URL: "file://" + f.Dir}
	rev, err := c.Resolve(t.Context(), repo, old)
	if err != nil || rev != old {
		t.Fatalf("Resolve(SHA) = %s, %v", rev, err)
	}
	dir, err := c.Checkout(t.Context(), repo, old, rev)
	if err != nil {
		t.Fatalf("Checkout(old SHA): %v", err)
	}
	if got := readFile(t, filepath.Join(dir, "a")); got != "old" {
		t.Errorf("a = %q, want old", got)
	}
	missing := "0123456789012345678901234567890123456789"
	_, err = c.Checkout(t.Context(), repo, missing, missing)
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Checkout(unknown SHA) error = %v, want ErrNotFound", err)
	}
}

// The branch moves on after a resolve: the resolved revision can still be checked out (a
// depth-1 fetch of the branch would miss it), and the next resolve sees the new commit.
func TestBranchMovesOnAfterResolve(t *testing.T) {
	f := testgit.New(t)
	old := f.Commit("old", map[string]string{"a": "old"})
	c := newTestCache(t, nil, 0)
	repo := Repo{Name: "app", URL: "file://" + f.Dir}
	rev, err := c.Resolve(t.Context(), repo, "main")
	if err != nil || rev != old {
		t.Fatalf("Resolve = %s, %v; want %s", rev, err, old)
	}
	next := f.Commit("new", map[string]string{"a": "new"})
	dir, err := c.Checkout(t.Context(), repo, "main", rev)
	if err != nil {
		t.Fatalf("Checkout of the resolved revision: %v", err)
	}
	if got := readFile(t, filepath.Join(dir, "a")); got != "old" {
		t.Errorf("a = %q, want old", got)
	}
	rev, err = c.Resolve(t.Context(), repo, "main")
	if err != nil || rev != next {
		t.Fatalf("Resolve after the commit = %s, %v; want %s", rev, err, next)
	}
}

func TestCheckoutWithoutResolve(t *testing.T) {
	f := testgit.New(t)
	rev := f.Commit("first", map[string]string{"a": "1"})
	obs := newCountingObserver()
	c := newTestCache(t, obs, 0)
	if _, err := c.Checkout(t.Context(), Repo{Name: "app", URL: f.Dir}, "main", rev); err != nil {
		t.Fatalf("Checkout: %v", err)
	}
	if n := obs.count(OpLsRemote); n != 1 {
		t.Errorf("Checkout without Resolve: %d ls-remote, want 1 (to learn the ref's full name)", n)
	}
}

func TestNewRemovesLeftovers(t *testing.T) {
	dir := t.TempDir()
	partial := filepath.Join(dir, "checkouts", "app", tmpPrefix+"abc-1")
	if err := os.MkdirAll(filepath.Join(partial, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(partial, 0o555); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(partial); !os.IsNotExist(err) {
		t.Errorf("partial checkout still present: %v", err)
	}
}

func TestCancelledContext(t *testing.T) {
	f := testgit.New(t)
	rev := f.Commit("first", map[string]string{"a": "1"})
	c := newTestCache(t, nil, 0)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	repo := Repo{Name: "app", URL: "file://" + f.Dir}
	if _, err := c.Resolve(ctx, repo, "main"); !errors.Is(err, context.Canceled) {
		t.Errorf("Resolve with a cancelled context: %v, want context.Canceled", err)
	}
	if _, err := c.Checkout(ctx, repo, "main", rev); !errors.Is(err, context.Canceled) {
		t.Errorf("Checkout with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestInvalidInput(t *testing.T) {
	c := newTestCache(t, nil, 0)
	for _, name := range []string{"", "../x", "a/b", ".hidden", "a..b"} {
		if _, err := c.Resolve(t.Context(), Repo{Name: name, URL: "/tmp"}, "main"); !errors.Is(err, ErrConfig) {
			t.Errorf("Resolve with repo name %q: %v, want ErrConfig", name, err)
		}
	}
	if _, err := c.Checkout(t.Context(), Repo{Name: "app", URL: "/tmp"}, "main", "main"); !errors.Is(err, ErrConfig) {
		t.Errorf("Checkout with a non-SHA revision: %v, want ErrConfig", err)
	}
	if _, err := New(Options{Dir: t.TempDir(), Keep: -1}); err == nil {
		t.Error("New with negative Keep: no error")
	}
}

func TestLocalFetchIsFullAndInProcess(t *testing.T) {
	f := testgit.New(t)
	first := f.Commit("first", map[string]string{"a": "1"})
	tip := f.Commit("second", map[string]string{"a": "2"})
	obs := newCountingObserver()
	c := newTestCache(t, obs, 0)
	repo := Repo{Name: "app", URL: "file://" + f.Dir}
	// With no git binary on PATH the fetch can only succeed in process.
	t.Setenv("PATH", t.TempDir())
	if _, err := c.Checkout(t.Context(), repo, "main", tip); err != nil {
		t.Fatal(err)
	}
	if n := obs.count(OpFetch + "/" + ResultError); n != 0 {
		t.Errorf("%d failed fetches: a local fetch must not try shallow first", n)
	}
	st := c.state("app")
	st.mu.Lock()
	defer st.mu.Unlock()
	r, err := c.open(st, "app")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := peelToCommit(r, plumbing.NewHash(first)); err != nil {
		t.Errorf("the parent commit is missing after a local fetch: %v", err)
	}
}

// Servers that do not advertise peeled tags make Resolve peel from the object itself.
func TestPeelTagWithoutAdvertisedPeel(t *testing.T) {
	f := testgit.New(t)
	commit := f.Commit("first", map[string]string{"a": "1"})
	f.Git("tag", "-a", "-m", "annotated", "v2")
	tagObject := f.Git("rev-parse", "refs/tags/v2")
	obs := newCountingObserver()
	c := newTestCache(t, obs, 0)
	repo := Repo{Name: "app", URL: f.Dir}
	st := c.state("app")
	st.mu.Lock()
	defer st.mu.Unlock()
	got, err := c.peelTag(t.Context(), repo, credentials{local: true}, "refs/tags/v2", tagObject)
	if err != nil || got != commit {
		t.Fatalf("peelTag = %s, %v; want %s", got, err, commit)
	}
	if n := obs.count(OpFetch); n != 1 {
		t.Errorf("%d fetches to peel an unknown tag, want 1", n)
	}
	// Now the tag object is local: no more network.
	if got, err := c.peelTag(t.Context(), repo, credentials{local: true}, "refs/tags/v2", tagObject); err != nil || got != commit {
		t.Fatalf("second peelTag = %s, %v", got, err)
	}
	if n := obs.count(OpFetch); n != 1 {
		t.Errorf("%d fetches after the tag was stored, want still 1", n)
	}
}

// TestCacheIsPrivate: the cache holds repo contents; no other local user may read it.
func TestCacheIsPrivate(t *testing.T) {
	f := testgit.New(t)
	rev := f.Commit("first", map[string]string{"compose.yaml": "services: {}\n", ".env": "PASSWORD=x\n"})
	c := newTestCache(t, nil, 0)
	repo := Repo{Name: "app", URL: f.Dir}
	dir, err := c.Checkout(t.Context(), repo, "main", rev)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{c.dir, c.reposDir(), c.checkoutsDir(), filepath.Dir(dir)} {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v, %v; want no access for group or others", d, fi.Mode(), err)
		}
	}
}

// TestHeldCheckoutOutlivesNewerRevisions: a plan applied after newer revisions of the same
// repo were checked out (other apps, diffs) still finds its directory.
func TestHeldCheckoutOutlivesNewerRevisions(t *testing.T) {
	f := testgit.New(t)
	c := newTestCache(t, nil, 2)
	repo := Repo{Name: "app", URL: f.Dir}
	f.Commit("planned", map[string]string{"a": "planned"})
	planned := mustResolve(t, c, repo, "main")
	dir, release, err := c.Hold(t.Context(), repo, "main", planned)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		f.Commit("newer", map[string]string{"a": string(rune('0' + i))})
		if _, err := c.Checkout(t.Context(), repo, "main", mustResolve(t, c, repo, "main")); err != nil {
			t.Fatal(err)
		}
	}
	if got := readFile(t, filepath.Join(dir, "a")); got != "planned" {
		t.Fatalf("held checkout reads %q", got)
	}
	release()
	release() // twice is harmless
	f.Commit("last", map[string]string{"a": "last"})
	if _, err := c.Checkout(t.Context(), repo, "main", mustResolve(t, c, repo, "main")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a released checkout beyond Keep is still there: %v", err)
	}
}

// TestDamagedCacheIsFetchedAgain: a process killed while go-git wrote a ref leaves an empty
// ref file, which failed every later fetch for good; the next start fetches the repository
// again instead.
func TestDamagedCacheIsFetchedAgain(t *testing.T) {
	f := testgit.New(t)
	f.Commit("first", map[string]string{"a": "1"})
	dir := t.TempDir()
	repo := Repo{Name: "app", URL: f.Dir}
	c, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Checkout(t.Context(), repo, "main", mustResolve(t, c, repo, "main")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = removeTree(dir) })
	ref := filepath.Join(dir, "repos", "app.git", "refs", "shipwatch", "heads", "main")
	if err := os.WriteFile(ref, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tmpPack := filepath.Join(dir, "repos", "app.git", "objects", "pack", "tmp_pack_123")
	if err := os.WriteFile(tmpPack, []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	second := f.Commit("second", map[string]string{"a": "2"})
	c, err = New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Checkout(t.Context(), repo, "main", mustResolve(t, c, repo, "main"))
	if err != nil {
		t.Fatalf("checkout after a damaged ref: %v", err)
	}
	if readFile(t, filepath.Join(got, "a")) != "2" || !strings.HasSuffix(got, second) {
		t.Errorf("checkout = %s", got)
	}
	if _, err := os.Stat(tmpPack); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a leftover temporary pack is still there: %v", err)
	}
}
