package source

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// ErrNothingToCommit is returned by Write when the branch already holds the files as given:
// nothing is committed or pushed.
var ErrNothingToCommit = errors.New("nothing to commit: the files are already so")

// ErrPushRejected is returned by Write when the branch moved on the remote twice while the
// commit was being pushed.
var ErrPushRejected = errors.New("push rejected: the branch moved on the remote")

// Edit is a commit shipwatch writes: files set or removed on top of a branch, then pushed.
type Edit struct {
	// Branch is the branch the commit goes on top of ("main").
	Branch string
	// PushTo is the branch pushed, when not Branch itself: a branch for review, which
	// Write owns and replaces if it exists.
	PushTo string
	// Files maps a slash-separated path in the repository to its new content; nil removes
	// the file.
	Files map[string][]byte
	// Message is the commit message.
	Message string
	// Author names who commits.
	Author Signature
}

// Signature is a commit's author.
type Signature struct {
	Name, Email string
}

// Write commits edit on the branch's current head and pushes it with the repo's
// credentials. When the branch moved on the remote meanwhile, the same files are committed
// again on the new head once; a second move is ErrPushRejected. It returns the pushed
// commit, or ErrNothingToCommit when the files are already so.
func (c *Cache) Write(ctx context.Context, repo Repo, edit Edit) (string, error) {
	if err := validate(repo); err != nil {
		return "", err
	}
	if err := checkEdit(edit); err != nil {
		return "", newError(repo.Name, "write", err, nil)
	}
	for attempt := 0; ; attempt++ {
		head, err := c.Resolve(ctx, repo, "refs/heads/"+edit.Branch)
		if err != nil {
			return "", err
		}
		sha, err := c.commitAndPush(ctx, repo, edit, head)
		if err == nil || errors.Is(err, ErrNothingToCommit) {
			return sha, err
		}
		// Whether the branch moved is read from the remote, not guessed from the error's
		// text: only then is the same edit worth trying again on the new head.
		now, rerr := c.Resolve(ctx, repo, "refs/heads/"+edit.Branch)
		if rerr != nil || now == head || edit.PushTo != "" {
			return "", err
		}
		if attempt == 1 {
			return "", newError(repo.Name, "write", ErrPushRejected, nil)
		}
		c.log.InfoContext(ctx, "branch moved while pushing; committing again on its new head",
			"repo", repo.Name, "revision", now, "action", "push")
	}
}

func checkEdit(e Edit) error {
	if e.Branch == "" || len(e.Files) == 0 || e.Message == "" {
		return fmt.Errorf("%w: an edit needs a branch, files and a message", ErrConfig)
	}
	for p := range e.Files {
		if err := checkEntryPath(p); err != nil || path.IsAbs(p) || path.Clean(p) != p {
			return fmt.Errorf("%w: file path %q must be clean and inside the repository", ErrConfig, p)
		}
	}
	return nil
}

// commitAndPush makes the commit on head and pushes it.
func (c *Cache) commitAndPush(ctx context.Context, repo Repo, edit Edit, head string) (string, error) {
	st := c.state(repo.Name)
	st.mu.Lock()
	defer st.mu.Unlock()
	creds, err := loadCredentials(repo)
	if err != nil {
		return "", newError(repo.Name, "write", err, nil)
	}
	parent, err := c.ensureCommit(ctx, st, repo, "refs/heads/"+edit.Branch, head)
	if err != nil {
		return "", newError(repo.Name, "write", err, creds.secrets)
	}
	r := st.git
	tree, err := editTree(r, parent.TreeHash, edit.Files)
	if err != nil {
		return "", newError(repo.Name, "write", err, nil)
	}
	if tree == parent.TreeHash {
		return head, ErrNothingToCommit
	}
	sha, err := writeCommit(r, edit, tree, parent.Hash)
	if err != nil {
		return "", newError(repo.Name, "write", err, nil)
	}
	if c.beforePush != nil {
		c.beforePush()
	}
	if err := c.push(ctx, r, repo, creds, edit, sha); err != nil {
		return "", newError(repo.Name, "write", err, creds.secrets)
	}
	return sha.String(), nil
}

func writeCommit(r *git.Repository, edit Edit, tree, parent plumbing.Hash) (plumbing.Hash, error) {
	sig := object.Signature{Name: edit.Author.Name, Email: edit.Author.Email, When: time.Now()}
	commit := &object.Commit{
		Author: sig, Committer: sig, Message: strings.TrimRight(edit.Message, "\n") + "\n",
		TreeHash: tree, ParentHashes: []plumbing.Hash{parent},
	}
	obj := r.Storer.NewEncodedObject()
	if err := commit.Encode(obj); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("encode commit: %w", err)
	}
	return r.Storer.SetEncodedObject(obj)
}

// push sends commit to the branch (fast-forward only) or to the review branch (replaced).
// The commit goes through a local ref, since a push names refs, not hashes.
func (c *Cache) push(ctx context.Context, r *git.Repository, repo Repo, creds credentials, edit Edit, commit plumbing.Hash) error {
	target, force := edit.Branch, false
	if edit.PushTo != "" {
		target, force = edit.PushTo, true
	}
	local := plumbing.ReferenceName(localNamespace + "push/" + target)
	if err := r.Storer.SetReference(plumbing.NewHashReference(local, commit)); err != nil {
		return fmt.Errorf("push: %w", err)
	}
	// Gone after the push: a commit the remote refused must not be offered as a "have" in
	// later fetches, which some servers answer with "object not found".
	defer func() { _ = r.Storer.RemoveReference(local) }()
	spec := config.RefSpec(local.String() + ":refs/heads/" + target)
	if force {
		spec = "+" + spec
	}
	remote := git.NewRemote(r.Storer, &config.RemoteConfig{Name: "origin", URLs: []string{repo.URL}})
	return c.observe(repo.Name, OpPush, func() error {
		err := remote.PushContext(ctx, &git.PushOptions{RefSpecs: []config.RefSpec{spec}, Auth: creds.method})
		if errors.Is(err, git.NoErrAlreadyUpToDate) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("push to %s: %w", target, err)
		}
		return nil
	})
}
