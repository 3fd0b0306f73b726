package source

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// editTree writes the tree root with files set (nil content removes a file) and returns its
// hash; unchanged trees keep their hash, so an edit that changes nothing returns root.
// Directories left empty disappear, as in git.
func editTree(r *git.Repository, root plumbing.Hash, files map[string][]byte) (plumbing.Hash, error) {
	var entries []object.TreeEntry
	if !root.IsZero() {
		t, err := object.GetTree(r.Storer, root)
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("read tree %s: %w", root, err)
		}
		entries = slices.Clone(t.Entries)
	}
	here, below := splitEdits(files)
	for _, name := range slices.Sorted(maps.Keys(below)) {
		old := entryHash(entries, name, true)
		sub, err := editTree(r, old, below[name])
		if err != nil {
			return plumbing.ZeroHash, err
		}
		entries = setEntry(entries, name, sub, filemode.Dir, sub == emptyTreeHash(r))
	}
	for _, name := range slices.Sorted(maps.Keys(here)) {
		content := here[name]
		if content == nil {
			entries = setEntry(entries, name, plumbing.ZeroHash, filemode.Regular, true)
			continue
		}
		blob, err := writeBlob(r, content)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		mode := filemode.Regular
		if i := slices.IndexFunc(entries, func(e object.TreeEntry) bool { return e.Name == name }); i >= 0 && entries[i].Mode == filemode.Executable {
			mode = filemode.Executable
		}
		entries = setEntry(entries, name, blob, mode, false)
	}
	return storeTree(r, entries)
}

// splitEdits splits paths into this directory's files and, per subdirectory, the edits
// below it.
func splitEdits(files map[string][]byte) (map[string][]byte, map[string]map[string][]byte) {
	here := map[string][]byte{}
	below := map[string]map[string][]byte{}
	for p, content := range files {
		dir, rest, nested := strings.Cut(p, "/")
		if !nested {
			here[p] = content
			continue
		}
		if below[dir] == nil {
			below[dir] = map[string][]byte{}
		}
		below[dir][rest] = content
	}
	return here, below
}

func entryHash(entries []object.TreeEntry, name string, dir bool) plumbing.Hash {
	for _, e := range entries {
		if e.Name == name && (e.Mode == filemode.Dir) == dir {
			return e.Hash
		}
	}
	return plumbing.ZeroHash
}

// setEntry replaces (or removes) the entry name.
func setEntry(entries []object.TreeEntry, name string, h plumbing.Hash, mode filemode.FileMode, remove bool) []object.TreeEntry {
	entries = slices.DeleteFunc(entries, func(e object.TreeEntry) bool { return e.Name == name })
	if remove {
		return entries
	}
	return append(entries, object.TreeEntry{Name: name, Mode: mode, Hash: h})
}

// storeTree stores a tree with its entries in git's order: by name, a directory's name
// compared as if it ended in "/".
func storeTree(r *git.Repository, entries []object.TreeEntry) (plumbing.Hash, error) {
	key := func(e object.TreeEntry) string {
		if e.Mode == filemode.Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	slices.SortFunc(entries, func(a, b object.TreeEntry) int { return strings.Compare(key(a), key(b)) })
	obj := r.Storer.NewEncodedObject()
	if err := (&object.Tree{Entries: entries}).Encode(obj); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("encode tree: %w", err)
	}
	return r.Storer.SetEncodedObject(obj)
}

func writeBlob(r *git.Repository, content []byte) (plumbing.Hash, error) {
	obj := r.Storer.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	w, err := obj.Writer()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if _, err := w.Write(content); err != nil {
		return plumbing.ZeroHash, errors.Join(err, w.Close())
	}
	if err := w.Close(); err != nil {
		return plumbing.ZeroHash, err
	}
	return r.Storer.SetEncodedObject(obj)
}

// emptyTreeHash is git's hash of the empty tree.
func emptyTreeHash(r *git.Repository) plumbing.Hash {
	obj := r.Storer.NewEncodedObject()
	_ = (&object.Tree{}).Encode(obj)
	return obj.Hash()
}

// ReadFile returns the content of a file at a commit, from the local object store (the
// commit must have been fetched: Resolve and Checkout, or Commit, did so). It bounds the
// size like every file read from Git.
func (c *Cache) ReadFile(repo Repo, revision, name string, limit int64) ([]byte, error) {
	st := c.state(repo.Name)
	st.mu.Lock()
	defer st.mu.Unlock()
	r, err := c.open(st, repo.Name)
	if err != nil {
		return nil, err
	}
	commit, err := peelToCommit(r, plumbing.NewHash(revision))
	if err != nil {
		return nil, fmt.Errorf("%w: revision %s: %w", ErrNotFound, revision, err)
	}
	f, err := commit.File(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %s at %s: %w", ErrNotFound, name, revision, err)
	}
	if f.Size > limit {
		return nil, fmt.Errorf("%s at %s is %d bytes, over the limit of %d", name, revision, f.Size, limit)
	}
	rd, err := f.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	return io.ReadAll(io.LimitReader(rd, limit))
}
