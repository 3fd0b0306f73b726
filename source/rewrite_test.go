package source

import (
	"path/filepath"
	"testing"

	"github.com/shipwatch/shipwatch/internal/testgit"
)

// TestRewrittenHistoryIsFetchedAgain: a repository whose history was rewritten and
// garbage-collected (amend, force-push, gc) no longer has commits the cache offers as
// "haves"; the cache recovers by itself.
func TestRewrittenHistoryIsFetchedAgain(t *testing.T) {
	for form, url := range map[string]func(*testgit.Repo) string{
		"file": func(r *testgit.Repo) string { return r.URL() },
		"http": func(r *testgit.Repo) string {
			return testgit.StartHTTP(t, r.Dir, testgit.HTTPAuth{User: "u", Password: "p"})
		},
	} {
		t.Run(form, func(t *testing.T) {
			f := testgit.New(t)
			f.Commit("first", map[string]string{"a": "1"})
			f.Commit("second", map[string]string{"a": "2"})
			repo := Repo{Name: "app", URL: url(f)}
			if form == "http" {
				repo.Auth = Auth{UsernameFile: testgit.SecretFile(t, "u"), PasswordFile: testgit.SecretFile(t, "p")}
			}
			c := newTestCache(t, nil, 0)
			if _, err := c.Checkout(t.Context(), repo, "main", mustResolve(t, c, repo, "main")); err != nil {
				t.Fatal(err)
			}
			f.Git("reset", "-q", "--hard", "HEAD~1")
			f.Write(map[string]string{"a": "rewritten"})
			f.Git("commit", "-q", "-a", "--amend", "-m", "rewritten")
			f.Git("reflog", "expire", "--expire=now", "--all")
			f.Git("gc", "-q", "--prune=now")
			rev := mustResolve(t, c, repo, "main")
			dir, err := c.Checkout(t.Context(), repo, "main", rev)
			if err != nil {
				t.Fatalf("checkout after a history rewrite: %v", err)
			}
			if got := readFile(t, filepath.Join(dir, "a")); got != "rewritten" {
				t.Errorf("a = %q", got)
			}
		})
	}
}

// TestNewURLUnderTheSameName: a repo's url changed in the config to an unrelated repository
// under the same name; the cache follows the new one.
func TestNewURLUnderTheSameName(t *testing.T) {
	a, b := testgit.New(t), testgit.New(t)
	a.Commit("a", map[string]string{"x": "from a"})
	b.Commit("b", map[string]string{"x": "from b"})
	c := newTestCache(t, nil, 0)
	for _, r := range []*testgit.Repo{a, b} {
		repo := Repo{Name: "deploy", URL: r.URL()}
		dir, err := c.Checkout(t.Context(), repo, "main", mustResolve(t, c, repo, "main"))
		if err != nil {
			t.Fatalf("checkout of %s: %v", r.Dir, err)
		}
		if want := readFile(t, filepath.Join(r.Dir, "x")); readFile(t, filepath.Join(dir, "x")) != want {
			t.Errorf("checkout of %s holds %q", r.Dir, readFile(t, filepath.Join(dir, "x")))
		}
	}
}
