package source

import (
	"context"
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage/memory"
)

const peeledSuffix = "^{}"

// Resolve turns ref (a branch or tag name, a full refs/... name, "HEAD", a full 40-hex
// commit SHA, or a semver range "semver:<constraint>") into a commit SHA. A SHA is returned
// lower-cased without network; anything else costs exactly one ls-remote. A short name that
// is both a branch and a tag is an ErrConfig error rather than a silent pick. Annotated tags
// resolve to the commit they point to.
//
// A semver ref ("semver:>=1.2.0 <2", "semver:~1.2"; see ParseSemverRef) picks the highest
// tag whose name is a semantic version (MAJOR.MINOR.PATCH[-pre][+build], with or without a
// leading "v"; other tags are ignored) satisfying the constraint; pre-releases only when
// the constraint names one. Checkout then fetches exactly that tag. An invalid constraint
// is ErrConfig, before any network; no matching tag is ErrNotFound naming the highest
// version tags seen.
func (c *Cache) Resolve(ctx context.Context, repo Repo, ref string) (string, error) {
	if err := ctx.Err(); err != nil {
		// The in-process file transport does not watch ctx; fail as the others would.
		return "", newError(repo.Name, "resolve", err, nil)
	}
	if err := validate(repo); err != nil {
		return "", err
	}
	if isFullSHA(ref) {
		return strings.ToLower(ref), nil
	}
	if _, _, err := ParseSemverRef(ref); err != nil {
		return "", newError(repo.Name, "resolve", err, nil)
	}
	creds, err := loadCredentials(repo)
	if err != nil {
		return "", newError(repo.Name, "resolve", err, nil)
	}
	refs, err := c.lsRemote(ctx, repo, creds)
	if err != nil {
		return "", newError(repo.Name, "resolve", err, creds.secrets)
	}
	full, hash, err := pickRef(refs, ref)
	if err != nil {
		return "", newError(repo.Name, "resolve", err, creds.secrets)
	}
	st := c.state(repo.Name)
	st.mu.Lock()
	defer st.mu.Unlock()
	st.refNames[ref] = full
	if _, peeled := refs[full+peeledSuffix]; !peeled && !advertisesPeeled(refs) && strings.HasPrefix(full, "refs/tags/") {
		// Some servers do not advertise peeled tags; then the hash may be a tag object,
		// and only its content says which commit it names. A server that peels any tag
		// peels all annotated ones, so there a missing entry means a lightweight tag.
		hash, err = c.peelTag(ctx, repo, creds, full, hash)
		if err != nil {
			return "", newError(repo.Name, "resolve", err, creds.secrets)
		}
	}
	return hash, nil
}

// lsRemote lists the remote's refs: name → hash, with peeled tags as "name^{}" and a
// symbolic HEAD as "HEAD" → its target's hash.
func (c *Cache) lsRemote(ctx context.Context, repo Repo, creds credentials) (map[string]string, error) {
	remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{repo.URL}})
	var list []*plumbing.Reference
	err := c.observe(repo.Name, OpLsRemote, func() error {
		var err error
		list, err = remote.ListContext(ctx, &git.ListOptions{Auth: creds.method, PeelingOption: git.AppendPeeled})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ls-remote: %w", err)
	}
	refs := make(map[string]string, len(list))
	var symbolic []*plumbing.Reference
	for _, r := range list {
		if r.Type() == plumbing.SymbolicReference {
			symbolic = append(symbolic, r)
			continue
		}
		refs[r.Name().String()] = r.Hash().String()
	}
	for _, r := range symbolic {
		if h, ok := refs[r.Target().String()]; ok {
			refs[r.Name().String()] = h
		}
	}
	return refs, nil
}

func advertisesPeeled(refs map[string]string) bool {
	for name := range refs {
		if strings.HasSuffix(name, peeledSuffix) {
			return true
		}
	}
	return false
}

// pickRef finds ref among the listed refs and returns its full name and hash, peeled if
// the server advertised the peeled value. A semver ref picks its tag (see pickSemver).
func pickRef(refs map[string]string, ref string) (string, string, error) {
	if ref == "" {
		return "", "", fmt.Errorf("%w: empty ref", ErrConfig)
	}
	if constraint, ok, _ := ParseSemverRef(ref); ok {
		return pickSemver(refs, constraint)
	}
	var candidates []string
	switch {
	case ref == "HEAD" || strings.HasPrefix(ref, "refs/"):
		candidates = []string{ref}
	default:
		candidates = []string{"refs/heads/" + ref, "refs/tags/" + ref}
	}
	var found []string
	for _, name := range candidates {
		if _, ok := refs[name]; ok {
			found = append(found, name)
		}
	}
	switch len(found) {
	case 0:
		return "", "", fmt.Errorf("%w: ref %q", ErrNotFound, ref)
	case 1:
	default:
		return "", "", fmt.Errorf("%w: ref %q is both a branch and a tag; use refs/heads/%s or refs/tags/%s",
			ErrConfig, ref, ref, ref)
	}
	full := found[0]
	if h, ok := refs[full+peeledSuffix]; ok {
		return full, h, nil
	}
	return full, refs[full], nil
}
