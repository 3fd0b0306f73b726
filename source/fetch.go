package source

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// localNamespace keeps fetched refs apart from anything a user might expect in a clone.
const localNamespace = "refs/shipwatch/"

// maxTagDepth bounds the peeling of tags that point at tags.
const maxTagDepth = 10

// open returns the repo's bare repository, creating it on first use. Callers hold st.mu.
func (c *Cache) open(st *repoState, name string) (*git.Repository, error) {
	if st.git != nil {
		return st.git, nil
	}
	path := c.barePath(name)
	r, err := git.PlainOpen(path)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		r, err = git.PlainInit(path, true)
	}
	if err != nil {
		return nil, fmt.Errorf("open cache repository: %w", err)
	}
	st.git = r
	return r, nil
}

// reset removes the repo's bare repository and opens a new, empty one. Callers hold st.mu.
func (c *Cache) reset(st *repoState, name string) (*git.Repository, error) {
	st.git = nil
	if err := os.RemoveAll(c.barePath(name)); err != nil {
		return nil, fmt.Errorf("reset cache repository: %w", err)
	}
	return c.open(st, name)
}

// ensureCommit returns the commit rev, fetching ref first if the local object store does
// not hold it. Callers hold st.mu, so concurrent callers queue here and find the commit
// the first one fetched: one fetch serves them all.
func (c *Cache) ensureCommit(ctx context.Context, st *repoState, repo Repo, ref, rev string) (*object.Commit, error) {
	r, err := c.open(st, repo.Name)
	if err != nil {
		return nil, err
	}
	if commit, err := peelToCommit(r, plumbing.NewHash(rev)); err == nil {
		return commit, nil
	}
	creds, err := loadCredentials(repo)
	if err != nil {
		return nil, err
	}
	specs, shallow, err := c.refspecsFor(ctx, st, repo, creds, ref)
	if err != nil {
		return nil, err
	}
	c.log.DebugContext(ctx, "git fetch", "repo", repo.Name, "revision", rev, "action", "fetch")
	err = c.fetch(ctx, r, repo, creds, specs, shallow)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		// The remote no longer has what the cache holds (history rewritten and collected,
		// or another repository at the URL): the negotiation fails on our "haves" for
		// good. The cache holds nothing Git does not: start it afresh.
		c.log.WarnContext(ctx, "git cache no longer matches the remote (rewritten history or a new URL): fetching it again",
			"repo", repo.Name, "action", "fetch")
		if r, err = c.reset(st, repo.Name); err != nil {
			return nil, err
		}
		err = c.fetch(ctx, r, repo, creds, specs, shallow)
	}
	if err != nil {
		return nil, err
	}
	if commit, err := peelToCommit(r, plumbing.NewHash(rev)); err == nil {
		return commit, nil
	}
	if shallow {
		// The ref moved past rev between Resolve and this fetch: a depth-1 fetch only
		// brought the new tip. History may still hold rev.
		if err := c.fetchOnce(ctx, r, repo, creds, specs, fullDepth(r)); err != nil {
			return nil, err
		}
		if commit, err := peelToCommit(r, plumbing.NewHash(rev)); err == nil {
			return commit, nil
		}
	}
	return nil, fmt.Errorf("%w: revision %s is not reachable from %q", ErrNotFound, rev, ref)
}

// refspecsFor returns what to fetch for ref and whether a shallow fetch can find the
// revision. A commit SHA can be anywhere in history, so it takes every branch and tag in
// full.
func (c *Cache) refspecsFor(ctx context.Context, st *repoState, repo Repo, creds credentials, ref string) ([]config.RefSpec, bool, error) {
	if ref == "" || isFullSHA(ref) {
		return []config.RefSpec{
			config.RefSpec("+refs/heads/*:" + localNamespace + "heads/*"),
			config.RefSpec("+refs/tags/*:" + localNamespace + "tags/*"),
		}, false, nil
	}
	full, ok := st.refNames[ref]
	if !ok {
		refs, err := c.lsRemote(ctx, repo, creds)
		if err != nil {
			return nil, false, err
		}
		if full, _, err = pickRef(refs, ref); err != nil {
			return nil, false, err
		}
		st.refNames[ref] = full
	}
	dst := localNamespace + strings.TrimPrefix(full, "refs/")
	return []config.RefSpec{config.RefSpec("+" + full + ":" + dst)}, true, nil
}

// fetch tries a depth-1 fetch when allowed and falls back to a full one: not every
// transport and server can serve shallow requests.
func (c *Cache) fetch(ctx context.Context, r *git.Repository, repo Repo, creds credentials, specs []config.RefSpec, shallow bool) error {
	if !shallow || creds.local {
		return c.fetchOnce(ctx, r, repo, creds, specs, fullDepth(r))
	}
	err := c.fetchOnce(ctx, r, repo, creds, specs, 1)
	if err == nil || final(err) {
		return err
	}
	c.log.DebugContext(ctx, "git shallow fetch failed, fetching full history", "repo", repo.Name, "action", "fetch",
		"err", scrub(err.Error(), creds.secrets))
	return c.fetchOnce(ctx, r, repo, creds, specs, fullDepth(r))
}

// infiniteDepth is what git itself sends for --unshallow.
const infiniteDepth = 0x7fffffff

// fullDepth is the depth that fetches complete history. Once the store holds shallow
// commits, depth 0 is not enough: go-git then neither tells the server where the local
// history is cut nor asks for the missing parents, so the store must be deepened instead.
func fullDepth(r *git.Repository) int {
	if shallows, err := r.Storer.Shallow(); err == nil && len(shallows) > 0 {
		return infiniteDepth
	}
	return 0
}

func (c *Cache) fetchOnce(ctx context.Context, r *git.Repository, repo Repo, creds credentials, specs []config.RefSpec, depth int) error {
	remote := git.NewRemote(r.Storer, &config.RemoteConfig{Name: "origin", URLs: []string{repo.URL}})
	err := c.observe(repo.Name, OpFetch, func() error {
		err := remote.FetchContext(ctx, &git.FetchOptions{
			RefSpecs: specs,
			Depth:    depth,
			Auth:     creds.method,
			Tags:     git.NoTags,
			Force:    true,
		})
		if errors.Is(err, git.NoErrAlreadyUpToDate) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	return nil
}

// final reports errors that a retry without depth cannot fix.
func final(err error) bool {
	c := classify(err)
	for _, target := range []error{ErrNotFound, ErrAuth, ErrHostKey, ErrConfig, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(c, target) {
			return true
		}
	}
	return false
}

// peelTag returns the commit a tag ref names when the server did not advertise the
// peeled value. Callers hold the repo's lock.
func (c *Cache) peelTag(ctx context.Context, repo Repo, creds credentials, full, hash string) (string, error) {
	st := c.state(repo.Name)
	r, err := c.open(st, repo.Name)
	if err != nil {
		return "", err
	}
	if commit, err := peelToCommit(r, plumbing.NewHash(hash)); err == nil {
		return commit.Hash.String(), nil
	}
	spec := config.RefSpec("+" + full + ":" + localNamespace + strings.TrimPrefix(full, "refs/"))
	if err := c.fetch(ctx, r, repo, creds, []config.RefSpec{spec}, true); err != nil {
		return "", err
	}
	commit, err := peelToCommit(r, plumbing.NewHash(hash))
	if err != nil {
		return "", fmt.Errorf("peel tag %s: %w", full, err)
	}
	return commit.Hash.String(), nil
}

// peelToCommit returns the commit h names, following annotated tags.
func peelToCommit(r *git.Repository, h plumbing.Hash) (*object.Commit, error) {
	for range maxTagDepth {
		obj, err := r.Object(plumbing.AnyObject, h)
		if err != nil {
			return nil, err
		}
		switch o := obj.(type) {
		case *object.Commit:
			return o, nil
		case *object.Tag:
			h = o.Target
		default:
			return nil, fmt.Errorf("%w: object %s is a %s, not a commit", ErrNotFound, h, obj.Type())
		}
	}
	return nil, fmt.Errorf("%w: tag chain at %s too deep", ErrNotFound, h)
}
