package source

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

const (
	tmpPrefix = ".tmp-"
	delPrefix = ".del-"
)

// Checkout returns a read-only directory holding the tree of revision, a commit SHA that
// Resolve returned for ref. It fetches ref only when the revision is not already in the
// local object store, so an unchanged revision costs no network; concurrent callers for
// one repo share one fetch. Checkouts beyond Options.Keep per repo are removed, least
// recently returned first, never the one being returned and never a held one (see Hold):
// without a hold, a caller should be done reading a directory before Keep newer revisions
// of the same repo are checked out.
func (c *Cache) Checkout(ctx context.Context, repo Repo, ref, revision string) (string, error) {
	dir, release, err := c.Hold(ctx, repo, ref, revision)
	if err != nil {
		return "", err
	}
	release()
	return dir, nil
}

// Hold is Checkout for a caller that reads the directory later (a plan applied after it, a
// bundle kept between passes): the checkout is not pruned until release is called, however
// many newer revisions are checked out meanwhile. release may be called more than once.
func (c *Cache) Hold(ctx context.Context, repo Repo, ref, revision string) (string, func(), error) {
	if err := validate(repo); err != nil {
		return "", nil, err
	}
	if !isFullSHA(revision) {
		return "", nil, newError(repo.Name, "checkout", fmt.Errorf("%w: revision %q is not a full commit SHA", ErrConfig, revision), nil)
	}
	rev := strings.ToLower(revision)
	dir := c.checkoutPath(repo.Name, rev)
	// Held before it is looked at, so a concurrent prune cannot remove it in between.
	release := c.hold(repo.Name, rev)
	if err := touch(dir); err != nil {
		if err := c.materializeShared(ctx, repo, ref, rev); err != nil {
			release()
			return "", nil, err
		}
	}
	c.prune(ctx, repo.Name, rev)
	return dir, release, nil
}

// hold counts one more holder of a checkout; the returned function undoes it once.
func (c *Cache) hold(repo, rev string) func() {
	key := repo + "/" + rev
	c.mu.Lock()
	c.holds[key]++
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.holds[key]--; c.holds[key] <= 0 {
				delete(c.holds, key)
			}
		})
	}
}

func (c *Cache) held(repo, rev string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.holds[repo+"/"+rev] > 0
}

// materializeShared writes the checkout once for all concurrent callers of one revision.
// If the caller that did the work was cancelled, the others try again on their own
// context instead of inheriting its cancellation.
func (c *Cache) materializeShared(ctx context.Context, repo Repo, ref, rev string) error {
	for {
		_, err, shared := c.flight.Do(repo.Name+"\x00"+rev, func() (any, error) {
			return nil, c.materialize(ctx, repo, ref, rev)
		})
		if shared && ctx.Err() == nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			continue
		}
		return err
	}
}

func (c *Cache) materialize(ctx context.Context, repo Repo, ref, rev string) error {
	st := c.state(repo.Name)
	st.mu.Lock()
	defer st.mu.Unlock()
	dir := c.checkoutPath(repo.Name, rev)
	if touch(dir) == nil {
		return nil
	}
	commit, err := c.ensureCommit(ctx, st, repo, ref, rev)
	if err != nil {
		creds, _ := loadCredentials(repo)
		return newError(repo.Name, "checkout", err, creds.secrets)
	}
	if err := c.writeCheckout(ctx, commit, dir); err != nil {
		return newError(repo.Name, "checkout", err, nil)
	}
	c.log.DebugContext(ctx, "git checkout written", "repo", repo.Name, "revision", rev)
	return nil
}

// writeCheckout writes the commit's tree to a temporary sibling of dir and renames it into
// place, so a crash never leaves a partial directory under the final name.
func (c *Cache) writeCheckout(ctx context.Context, commit *object.Commit, dir string) error {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return fmt.Errorf("create checkout directory: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, tmpPrefix+filepath.Base(dir)+"-")
	if err != nil {
		return fmt.Errorf("create checkout directory: %w", err)
	}
	done := false
	defer func() {
		if !done {
			_ = removeTree(tmp)
		}
	}()
	tree, err := commit.Tree()
	if err != nil {
		return fmt.Errorf("read tree of %s: %w", commit.Hash, err)
	}
	if err := writeTree(ctx, tree, tmp); err != nil {
		return err
	}
	if err := makeReadOnly(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("move checkout into place: %w", err)
	}
	done = true
	return nil
}

// writeTree writes every entry of tree below dir through an os.Root, so that no entry
// (a crafted "../x", or a file below a symlink written earlier) lands outside dir.
func writeTree(ctx context.Context, tree *object.Tree, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("open checkout directory: %w", err)
	}
	defer root.Close()
	walker := object.NewTreeWalker(tree, true, nil)
	defer walker.Close()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		name, entry, err := walker.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("walk tree: %w", err)
		}
		if err := checkEntryPath(name); err != nil {
			return err
		}
		if err := writeEntry(root, tree, name, entry); err != nil {
			return err
		}
	}
}

// checkEntryPath rejects names git itself refuses to check out.
func checkEntryPath(name string) error {
	for _, part := range strings.Split(name, "/") {
		if part == "" || part == "." || part == ".." || strings.EqualFold(part, ".git") {
			return fmt.Errorf("tree entry %q: unsafe path", name)
		}
	}
	return nil
}

func writeEntry(root *os.Root, tree *object.Tree, name string, entry object.TreeEntry) error {
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create directory %s: %w", dir, err)
		}
	}
	switch entry.Mode {
	case filemode.Dir, filemode.Submodule:
		// A submodule is checked out as an empty directory, as git does without --recursive.
		if err := root.Mkdir(name, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create directory %s: %w", name, err)
		}
		return nil
	case filemode.Symlink:
		target, err := readBlob(tree, name, &entry)
		if err != nil {
			return err
		}
		if err := root.Symlink(string(target), name); err != nil {
			return fmt.Errorf("create symlink %s: %w", name, err)
		}
		return nil
	case filemode.Regular, filemode.Deprecated:
		return copyBlob(root, tree, name, &entry, 0o444)
	case filemode.Executable:
		return copyBlob(root, tree, name, &entry, 0o555)
	}
	return fmt.Errorf("tree entry %q: unsupported mode %s", name, entry.Mode)
}

func readBlob(tree *object.Tree, name string, entry *object.TreeEntry) ([]byte, error) {
	f, err := tree.TreeEntryFile(entry)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	r, err := f.Reader()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return b, nil
}

// copyBlob creates the file with its final read-only mode; the open descriptor can still
// write it.
func copyBlob(root *os.Root, tree *object.Tree, name string, entry *object.TreeEntry, mode os.FileMode) error {
	f, err := tree.TreeEntryFile(entry)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	r, err := f.Reader()
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	defer r.Close()
	out, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	if _, err := io.Copy(out, r); err != nil {
		_ = out.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// makeReadOnly clears the write bits of every directory below and including dir. Files
// were created read-only and symlinks have no mode of their own.
func makeReadOnly(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("make checkout read-only: %w", err)
	}
	for _, d := range dirs {
		if err := os.Chmod(d, 0o555); err != nil {
			return fmt.Errorf("make checkout read-only: %w", err)
		}
	}
	return nil
}

// removeTree deletes a read-only tree: directories get their write bit back first, since
// a non-root owner cannot unlink from a read-only directory.
func removeTree(dir string) error {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// touch marks a checkout as just used and reports whether it exists.
func touch(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("checkout %s is not a directory", dir)
	}
	now := time.Now()
	return os.Chtimes(dir, now, now)
}

// prune removes the least recently used checkouts of a repo beyond c.keep. A checkout is
// renamed out of the way before it is deleted, so a crash mid-delete leaves nothing that
// looks like a complete checkout.
func (c *Cache) prune(ctx context.Context, name, current string) {
	st := c.state(name)
	st.mu.Lock()
	defer st.mu.Unlock()
	parent := filepath.Join(c.checkoutsDir(), name)
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	type checkout struct {
		name string
		used time.Time
	}
	var all []checkout
	for _, e := range entries {
		if !isFullSHA(e.Name()) || e.Name() == current || c.held(name, e.Name()) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		all = append(all, checkout{e.Name(), fi.ModTime()})
	}
	// The current checkout takes one of the kept places.
	if len(all) < c.keep {
		return
	}
	slices.SortFunc(all, func(a, b checkout) int {
		return cmp.Or(b.used.Compare(a.used), strings.Compare(a.name, b.name))
	})
	for _, old := range all[c.keep-1:] {
		if err := c.removeCheckout(parent, old.name); err != nil {
			c.log.WarnContext(ctx, "git checkout not removed", "repo", name, "revision", old.name, "err", err)
		}
	}
}

func (c *Cache) removeCheckout(parent, rev string) error {
	del, err := os.MkdirTemp(parent, delPrefix+rev+"-")
	if err != nil {
		return fmt.Errorf("remove checkout: %w", err)
	}
	// Moving a directory to another parent rewrites its "..": that needs its write bit.
	src := filepath.Join(parent, rev)
	if err := os.Chmod(src, 0o755); err != nil {
		_ = os.Remove(del)
		return fmt.Errorf("remove checkout: %w", err)
	}
	if err := os.Rename(src, filepath.Join(del, rev)); err != nil {
		_ = os.Remove(del)
		return fmt.Errorf("remove checkout: %w", err)
	}
	if err := removeTree(del); err != nil {
		return fmt.Errorf("remove checkout: %w", err)
	}
	return nil
}

// removeLeftovers deletes checkouts that a previous process was writing or deleting when
// it stopped.
func (c *Cache) removeLeftovers() error {
	repos, err := os.ReadDir(c.checkoutsDir())
	if err != nil {
		return fmt.Errorf("source cache: %w", err)
	}
	for _, r := range repos {
		if !r.IsDir() {
			continue
		}
		parent := filepath.Join(c.checkoutsDir(), r.Name())
		entries, err := os.ReadDir(parent)
		if err != nil {
			return fmt.Errorf("source cache: %w", err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), tmpPrefix) || strings.HasPrefix(e.Name(), delPrefix) {
				if err := removeTree(filepath.Join(parent, e.Name())); err != nil {
					return fmt.Errorf("source cache: remove leftover %s: %w", e.Name(), err)
				}
			}
		}
	}
	return nil
}
