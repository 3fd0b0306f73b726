package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// maxHistoryWalk bounds the commits Commit looks through for a prefix.
const maxHistoryWalk = 200_000

var prefixRE = regexp.MustCompile(`^[0-9a-fA-F]{7,40}$`)

// Commit returns the full SHA of the commit that spec names, which must be in the history of
// ref: a rollback may only return to something the repository's branch really held. spec is
// a full SHA or an unambiguous prefix of at least 7 hex digits. It costs one ls-remote and,
// when the local store is shallow, one fetch of ref's full history.
func (c *Cache) Commit(ctx context.Context, repo Repo, ref, spec string) (string, error) {
	if !prefixRE.MatchString(spec) {
		return "", newError(repo.Name, "resolve", fmt.Errorf("%w: revision %q is not a commit SHA (7 to 40 hex digits)", ErrConfig, spec), nil)
	}
	head, err := c.Resolve(ctx, repo, ref)
	if err != nil {
		return "", err
	}
	st := c.state(repo.Name)
	st.mu.Lock()
	defer st.mu.Unlock()
	creds, err := loadCredentials(repo)
	if err != nil {
		return "", newError(repo.Name, "resolve", err, nil)
	}
	tip, err := c.ensureCommit(ctx, st, repo, ref, head)
	if err != nil {
		return "", newError(repo.Name, "resolve", err, creds.secrets)
	}
	r, err := c.open(st, repo.Name)
	if err != nil {
		return "", newError(repo.Name, "resolve", err, nil)
	}
	if err := c.deepen(ctx, st, r, repo, creds, ref); err != nil {
		return "", newError(repo.Name, "resolve", err, creds.secrets)
	}
	full, err := findInHistory(r, tip, strings.ToLower(spec))
	if err != nil {
		return "", newError(repo.Name, "resolve", fmt.Errorf("revision %s in the history of %q: %w", spec, ref, err), nil)
	}
	return full, nil
}

// deepen fetches ref's whole history when the local store holds only part of it.
func (c *Cache) deepen(ctx context.Context, st *repoState, r *git.Repository, repo Repo, creds credentials, ref string) error {
	if shallows, err := r.Storer.Shallow(); err != nil || len(shallows) == 0 {
		return err
	}
	specs, _, err := c.refspecsFor(ctx, st, repo, creds, ref)
	if err != nil {
		return err
	}
	return c.fetchOnce(ctx, r, repo, creds, specs, fullDepth(r))
}

// findInHistory walks from tip looking for the commits whose SHA starts with prefix.
func findInHistory(r *git.Repository, tip *object.Commit, prefix string) (string, error) {
	iter, err := r.Log(&git.LogOptions{From: tip.Hash, Order: git.LogOrderBSF})
	if err != nil {
		return "", err
	}
	defer iter.Close()
	var found []string
	for n := 0; n < maxHistoryWalk; n++ {
		commit, err := iter.Next()
		if errors.Is(err, io.EOF) || errors.Is(err, plumbing.ErrObjectNotFound) {
			break
		}
		if err != nil {
			return "", err
		}
		h := commit.Hash.String()
		if !strings.HasPrefix(h, prefix) {
			continue
		}
		if len(prefix) == len(h) {
			return h, nil
		}
		found = append(found, h)
		if len(found) > 1 {
			return "", fmt.Errorf("%w: prefix is ambiguous (%s, %s, ...)", ErrConfig, found[0][:12], found[1][:12])
		}
	}
	if len(found) == 0 {
		return "", fmt.Errorf("%w: no such commit", ErrNotFound)
	}
	return found[0], nil
}
