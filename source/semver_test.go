package source

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/shipwatch/shipwatch/internal/testgit"
)

// semverFixture is a repository tagged with versions, and the commit each tag names.
type semverFixture struct {
	repo    *testgit.Repo
	commits map[string]string // tag → commit
}

// newSemverFixture tags one commit per tag, each commit's a.txt holding the tag's name:
// v1.0.0, v1.2.0, v1.2.5 (annotated), 1.3.0-rc.1, v2.0.0, and on the tip "not-a-version"
// and "v3", a partial version as moving major tags are, which is no semantic version.
func newSemverFixture(t *testing.T) semverFixture {
	t.Helper()
	f := semverFixture{repo: testgit.New(t), commits: map[string]string{}}
	for _, tag := range []string{"v1.0.0", "v1.2.0", "v1.2.5", "1.3.0-rc.1", "v2.0.0", "not-a-version"} {
		f.commits[tag] = f.repo.Commit(tag, map[string]string{"compose.yaml": emptyCompose, "a.txt": tag})
		if tag == "v1.2.5" {
			f.repo.Git("tag", "-a", "-m", "release "+tag, tag)
		} else {
			f.repo.Git("tag", tag)
		}
	}
	f.repo.Git("tag", "v3")
	f.commits["v3"] = f.commits["not-a-version"]
	if f.repo.Git("rev-parse", "refs/tags/v1.2.5") == f.commits["v1.2.5"] {
		t.Fatal("fixture: v1.2.5 should be an annotated tag object")
	}
	return f
}

func TestSemverResolve(t *testing.T) {
	f := newSemverFixture(t)
	const token = "tok-semver-0123456789"
	transports := map[string]Repo{
		"file-url":   {Name: "app", URL: "file://" + f.repo.Dir},
		"local-path": {Name: "app", URL: f.repo.Dir},
		"http": {Name: "app", URL: testgit.StartHTTP(t, f.repo.Dir, testgit.HTTPAuth{Token: token}),
			Auth: Auth{TokenFile: testgit.SecretFile(t, token)}},
	}
	cases := []struct{ ref, tag string }{
		{"semver:>=1.2.0 <2", "v1.2.5"},
		{"semver:~1.2", "v1.2.5"},
		{"semver:>=1.3.0-rc.0 <2", "1.3.0-rc.1"},
		{"semver:  ^1.0  ", "v1.2.5"},        // no pre-release without asking for one
		{"semver:>=1.0.0", "v2.0.0"},         // "v3" is not a version
		{"semver:<1.1 || >=2", "v2.0.0"},     // an OR of ranges
		{"semver:1.0.x", "v1.0.0"},           // a lightweight tag
		{"semver:=1.2.0", "v1.2.0"},          // an exact version
		{"semver:>=1.2.0, <1.2.5", "v1.2.0"}, // comma as AND
	}
	for name, repo := range transports {
		t.Run(name, func(t *testing.T) {
			obs := newCountingObserver()
			c := newTestCache(t, obs, 0)
			for _, tc := range cases {
				obs.reset()
				got, err := c.Resolve(t.Context(), repo, tc.ref)
				if err != nil || got != f.commits[tc.tag] {
					t.Errorf("Resolve(%q) = %s, %v; want %s (%s)", tc.ref, got, err, f.commits[tc.tag], tc.tag)
					continue
				}
				if n := obs.count(OpLsRemote); n != 1 {
					t.Errorf("Resolve(%q): %d ls-remote observations, want exactly 1", tc.ref, n)
				}
				if n := obs.count(OpFetch); n > 1 {
					t.Errorf("Resolve(%q): %d fetches, want at most 1 (to peel the tag)", tc.ref, n)
				}
				if full := refName(c, tc.ref); full != "refs/tags/"+tc.tag {
					t.Errorf("Resolve(%q) remembered ref %q, want refs/tags/%s", tc.ref, full, tc.tag)
				}
			}
			checkSemverErrors(t, c, obs, repo)
		})
	}
}

func refName(c *Cache, ref string) string {
	st := c.state("app")
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.refNames[ref]
}

// checkSemverErrors: no matching tag is ErrNotFound after one ls-remote, naming the
// constraint and the highest tags; an invalid constraint is ErrConfig without network.
func checkSemverErrors(t *testing.T, c *Cache, obs *countingObserver, repo Repo) {
	t.Helper()
	obs.reset()
	_, err := c.Resolve(t.Context(), repo, "semver:>=3")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve(>=3) error = %v, want ErrNotFound", err)
	} else {
		for _, want := range []string{`">=3"`, "v2.0.0, 1.3.0-rc.1, v1.2.5, v1.2.0, v1.0.0"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Resolve(>=3) error %q does not name %s", err, want)
			}
		}
		if strings.Contains(err.Error(), "not-a-version") {
			t.Errorf("Resolve(>=3) error %q lists a tag that is no version", err)
		}
	}
	if n := obs.count(OpLsRemote); n != 1 {
		t.Errorf("Resolve(>=3): %d ls-remote observations, want 1", n)
	}

	obs.reset()
	for _, ref := range []string{"semver:latest please", "semver:", "semver:>=1.2.0 <<2"} {
		_, err := c.Resolve(t.Context(), repo, ref)
		if !errors.Is(err, ErrConfig) {
			t.Errorf("Resolve(%q) error = %v, want ErrConfig", ref, err)
		} else if constraint := strings.TrimPrefix(ref, SemverPrefix); constraint != "" && !strings.Contains(err.Error(), constraint) {
			t.Errorf("Resolve(%q) error %q does not name the constraint", ref, err)
		}
	}
	if n := obs.count(OpLsRemote) + obs.count(OpFetch); n != 0 {
		t.Errorf("invalid constraints: %d remote operations, want 0", n)
	}
}

// TestSemverCheckout: the revision a semver ref resolved to checks out after fetching that
// one tag only, shallowly over HTTP.
func TestSemverCheckout(t *testing.T) {
	f := newSemverFixture(t)
	const token = "tok-semver-checkout"
	transports := map[string]struct {
		repo    Repo
		shallow bool
	}{
		"file-url": {repo: Repo{Name: "app", URL: "file://" + f.repo.Dir}},
		"http": {repo: Repo{Name: "app", URL: testgit.StartHTTP(t, f.repo.Dir, testgit.HTTPAuth{Token: token}),
			Auth: Auth{TokenFile: testgit.SecretFile(t, token)}}, shallow: true},
	}
	const ref = "semver:>=1.2.0 <2"
	want := f.commits["v1.2.5"]
	for name, tr := range transports {
		t.Run(name, func(t *testing.T) {
			obs := newCountingObserver()
			c := newTestCache(t, obs, 0)
			rev := mustResolve(t, c, tr.repo, ref)
			if rev != want {
				t.Fatalf("Resolve = %s, want v1.2.5's commit %s", rev, want)
			}
			dir, err := c.Checkout(t.Context(), tr.repo, ref, rev)
			if err != nil {
				t.Fatalf("Checkout: %v", err)
			}
			if got := readFile(t, filepath.Join(dir, "a.txt")); got != "v1.2.5" {
				t.Errorf("a.txt = %q, want v1.2.5", got)
			}
			if n, m := obs.count(OpLsRemote), obs.count(OpFetch+"/"+ResultSuccess); n != 1 || m != 1 {
				t.Errorf("Resolve and Checkout: %d ls-remote and %d fetches, want 1 and 1", n, m)
			}
			if n := obs.count(OpFetch + "/" + ResultError); n != 0 {
				t.Errorf("%d failed fetches, want 0", n)
			}
			checkFetchedOnly(t, c, f, "v1.2.5", tr.shallow)
		})
	}
}

// checkFetchedOnly asserts that the store holds tag as its only fetched ref and, for a
// shallow fetch, not the commit before it.
func checkFetchedOnly(t *testing.T, c *Cache, f semverFixture, tag string, shallow bool) {
	t.Helper()
	st := c.state("app")
	st.mu.Lock()
	defer st.mu.Unlock()
	r, err := c.open(st, "app")
	if err != nil {
		t.Fatal(err)
	}
	iter, err := r.References()
	if err != nil {
		t.Fatal(err)
	}
	var fetched []string
	_ = iter.ForEach(func(ref *plumbing.Reference) error {
		if strings.HasPrefix(ref.Name().String(), localNamespace) {
			fetched = append(fetched, ref.Name().String())
		}
		return nil
	})
	if want := localNamespace + "tags/" + tag; len(fetched) != 1 || fetched[0] != want {
		t.Errorf("fetched refs = %v, want only %s", fetched, want)
	}
	if !shallow {
		return
	}
	if shallows, err := r.Storer.Shallow(); err != nil || len(shallows) == 0 {
		t.Errorf("store is not shallow (%v, %v): the tag was fetched with history", shallows, err)
	}
	if _, err := peelToCommit(r, plumbing.NewHash(f.commits["v1.2.0"])); err == nil {
		t.Error("the commit before the tag was fetched too")
	}
}

// TestSemverCheckoutWithoutResolve: a cache that did not resolve the ref (a restart) learns
// the tag with one ls-remote at checkout.
func TestSemverCheckoutWithoutResolve(t *testing.T) {
	f := newSemverFixture(t)
	obs := newCountingObserver()
	c := newTestCache(t, obs, 0)
	repo := Repo{Name: "app", URL: "file://" + f.repo.Dir}
	dir, err := c.Checkout(t.Context(), repo, "semver:~1.2", f.commits["v1.2.5"])
	if err != nil {
		t.Fatalf("Checkout: %v", err)
	}
	if got := readFile(t, filepath.Join(dir, "a.txt")); got != "v1.2.5" {
		t.Errorf("a.txt = %q, want v1.2.5", got)
	}
	if n := obs.count(OpLsRemote); n != 1 {
		t.Errorf("%d ls-remote, want 1", n)
	}
	checkFetchedOnly(t, c, f, "v1.2.5", false)
}

func TestParseSemverRef(t *testing.T) {
	for _, ref := range []string{"main", "v1.2.0", "refs/tags/v1", "HEAD", ""} {
		if _, ok, err := ParseSemverRef(ref); ok || err != nil {
			t.Errorf("ParseSemverRef(%q) = %v, %v; want not a semver ref", ref, ok, err)
		}
	}
	if c, ok, err := ParseSemverRef("semver: >=1.2.0 <2 "); !ok || err != nil || c != ">=1.2.0 <2" {
		t.Errorf("ParseSemverRef = %q, %v, %v; want >=1.2.0 <2", c, ok, err)
	}
	for _, ref := range []string{"semver:", "semver:  ", "semver:garbage", "semver:>=1.2.0 <<2", "semver:" + strings.Repeat("1", 600)} {
		if _, ok, err := ParseSemverRef(ref); !ok || !errors.Is(err, ErrConfig) {
			t.Errorf("ParseSemverRef(%q) = %v, %v; want ErrConfig", ref, ok, err)
		}
	}
	if err := CheckSemver("~1.2"); err != nil {
		t.Errorf("CheckSemver(~1.2) = %v", err)
	}
	if err := CheckSemver(">=one"); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), ">=one") {
		t.Errorf("CheckSemver(>=one) = %v, want ErrConfig naming it", err)
	}
}

// TestPickSemver covers what a server's listing can hold beyond the fixture: advertised
// peeled values, equal versions under two names, build metadata, many tags.
func TestPickSemver(t *testing.T) {
	refs := map[string]string{
		"refs/heads/main":           "h-main",
		"refs/heads/v9.9.9":         "h-branch", // a branch is never a candidate
		"refs/tags/v1.2.0":          "tag-object",
		"refs/tags/v1.2.0^{}":       "h-peeled",
		"refs/tags/1.2.0":           "h-plain",
		"refs/tags/v1.1.0+build.7":  "h-build",
		"refs/tags/v01.3.0":         "h-leading-zero",
		"refs/tags/vv1.4.0":         "h-double-v",
		"refs/tags/release-1.5.0":   "h-prefixed",
		"refs/tags/v1.6":            "h-partial",
		"refs/tags/1.7.0-beta.1^{}": "h-orphan-peel",
	}
	pick := func(constraint string) (string, string, error) { return pickSemver(refs, constraint) }
	if full, hash, err := pick("1.2.0"); err != nil || full != "refs/tags/v1.2.0" || hash != "h-peeled" {
		t.Errorf("pick(1.2.0) = %s, %s, %v; want the peeled v1.2.0, stable over 1.2.0", full, hash, err)
	}
	if full, _, err := pick("<1.2.0"); err != nil || full != "refs/tags/v1.1.0+build.7" {
		t.Errorf("pick(<1.2.0) = %s, %v; want v1.1.0+build.7", full, err)
	}
	if _, _, err := pick(">=1.3.0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("pick(>=1.3.0) = %v; want ErrNotFound (no such version tag)", err)
	}

	many := map[string]string{}
	for i := range 12 {
		many[fmt.Sprintf("refs/tags/v0.%d.0", i)] = "h"
	}
	_, _, err := pickSemver(many, ">=1")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "v0.11.0, v0.10.0, v0.9.0, v0.8.0, v0.7.0 and 7 lower") {
		t.Errorf("pick over 12 tags: %v; want the 5 highest named and the rest counted", err)
	}
	_, _, err = pickSemver(map[string]string{"refs/tags/latest": "h"}, ">=1")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no tag is a semantic version") {
		t.Errorf("pick without version tags: %v", err)
	}
}
