package source

import (
	"errors"
	"testing"

	"github.com/shipwatch/shipwatch/internal/testgit"
)

// TestCommitFindsRollbackTargets checks that a revision named for a rollback is expanded
// from a prefix and must be in the ref's history, over file:// (full fetches) and smart HTTP
// (shallow fetches, so the history has to be deepened first).
func TestCommitFindsRollbackTargets(t *testing.T) {
	f := testgit.New(t)
	first := f.Commit("first", map[string]string{"compose.yaml": emptyCompose})
	second := f.Commit("second", map[string]string{"compose.yaml": "services: {a: {image: x}}\n"})
	f.Git("checkout", "-q", "-b", "side")
	side := f.Commit("side", map[string]string{"compose.yaml": "services: {b: {image: y}}\n"})
	f.Git("checkout", "-q", "main")
	third := f.Commit("third", map[string]string{"compose.yaml": "services: {c: {image: z}}\n"})

	const token = "tok-commit-test"
	urls := map[string]Repo{
		"file": {Name: "app", URL: f.URL()},
		"http": {Name: "app", URL: testgit.StartHTTP(t, f.Dir, testgit.HTTPAuth{Token: token}),
			Auth: Auth{TokenFile: testgit.SecretFile(t, token)}},
	}
	for name, repo := range urls {
		t.Run(name, func(t *testing.T) {
			c := newTestCache(t, nil, 0)
			// A checkout of the tip first, as a running daemon has: over HTTP that is a
			// depth-1 fetch, so the older commits are not in the store yet.
			if _, err := c.Checkout(t.Context(), repo, "main", mustResolve(t, c, repo, "main")); err != nil {
				t.Fatal(err)
			}
			if name == "http" {
				r, err := c.open(c.state(repo.Name), repo.Name)
				if sh, _ := r.Storer.Shallow(); err != nil || len(sh) == 0 {
					t.Fatalf("fixture: the HTTP store should be shallow before Commit (%v)", err)
				}
			}
			for spec, want := range map[string]string{first: first, first[:7]: first, second[:10]: second, third: third} {
				got, err := c.Commit(t.Context(), repo, "main", spec)
				if err != nil || got != want {
					t.Errorf("Commit(%s) = %s, %v; want %s", spec, got, err, want)
				}
			}
			if _, err := c.Checkout(t.Context(), repo, "main", first); err != nil {
				t.Errorf("checkout of the rollback target: %v", err)
			}
			if _, err := c.Commit(t.Context(), repo, "main", side); !errors.Is(err, ErrNotFound) {
				t.Errorf("a commit only on another branch: err = %v, want ErrNotFound", err)
			}
			for _, bad := range []string{"abc", "main", "zzzzzzz", ""} {
				if _, err := c.Commit(t.Context(), repo, "main", bad); !errors.Is(err, ErrConfig) {
					t.Errorf("Commit(%q): err = %v, want ErrConfig", bad, err)
				}
			}
		})
	}
}
