package manifests

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// errReadOnly is returned for every write kustomize attempts on the checkout.
var errReadOnly = errors.New("the checkout is read-only to kustomize")

// kubeFS is the filesystem kustomize builds on: reads confined to the checkout (after
// cleaning and resolving symlinks), no writes. With remote bases allowed it also lets
// kustomize use the directories its git cloner makes under the temp dir (kustomize-*),
// confined to each clone.
//
// kustomize wraps errors in ways that lose the chain (e.g. %q), so the first escape is
// also recorded and returned by escaped, to hand the caller a real *EscapeError.
type kubeFS struct {
	c    *confiner
	root *os.Root
	// cloneBase is the resolved temp dir when remote bases are allowed, else "".
	cloneBase string

	mu     sync.Mutex
	escape *EscapeError
	// oversize is the first file over a size limit, recorded for the same reason.
	oversize error
}

var _ filesys.FileSystem = (*kubeFS)(nil)

func newKubeFS(c *confiner, root *os.Root, allowRemote bool) *kubeFS {
	f := &kubeFS{c: c, root: root}
	if allowRemote {
		if tmp, err := filepath.EvalSymlinks(os.TempDir()); err == nil {
			f.cloneBase = tmp
		}
	}
	return f
}

// tooLarge records err when it is a size-limit error, and returns it.
func (f *kubeFS) tooLarge(err error) error {
	if errors.Is(err, ErrTooLarge) {
		f.mu.Lock()
		if f.oversize == nil {
			f.oversize = err
		}
		f.mu.Unlock()
	}
	return err
}

// oversized returns the first size-limit error kustomize ran into, or nil.
func (f *kubeFS) oversized() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.oversize
}

// escaped returns the first escape kustomize ran into, or nil.
func (f *kubeFS) escaped() *EscapeError {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.escape
}

// target is a path that passed confinement: either rel inside the checkout (read through
// os.Root) or abs inside a kustomize clone.
type target struct {
	rel   string
	abs   string
	clone bool
}

// confine checks p. Kustomize hands over absolute, symlink-free paths, so a path under the
// resolved checkout is mapped back to the checkout as given before checking.
func (f *kubeFS) confine(p string) (target, error) {
	if !filepath.IsAbs(p) {
		p = filepath.Join(f.c.real, p)
	}
	p = filepath.Clean(p)
	if t, ok := f.inClone(p); ok {
		return t, nil
	}
	if !within(f.c.root, p) && within(f.c.real, p) {
		if r, err := filepath.Rel(f.c.real, p); err == nil {
			p = filepath.Join(f.c.root, r)
		}
	}
	rel, err := f.c.check(p, "kustomize input")
	if err != nil {
		var ee *EscapeError
		if errors.As(err, &ee) {
			f.mu.Lock()
			if f.escape == nil {
				f.escape = ee
			}
			f.mu.Unlock()
		}
		return target{}, err
	}
	return target{rel: rel, abs: filepath.Join(f.c.real, rel)}, nil
}

// inClone accepts p when remote bases are allowed and p stays, after resolving symlinks,
// inside the same kustomize-* clone directory under the temp dir.
func (f *kubeFS) inClone(p string) (target, bool) {
	if f.cloneBase == "" || !within(f.cloneBase, p) {
		return target{}, false
	}
	r, err := filepath.Rel(f.cloneBase, p)
	if err != nil {
		return target{}, false
	}
	first, _, _ := strings.Cut(filepath.ToSlash(r), "/")
	if !strings.HasPrefix(first, "kustomize-") {
		return target{}, false
	}
	clone := filepath.Join(f.cloneBase, first)
	resolved, err := evalExisting(p)
	if err != nil || !within(clone, resolved) {
		return target{}, false
	}
	return target{abs: resolved, clone: true}, true
}

func (f *kubeFS) stat(t target) (os.FileInfo, error) {
	if t.clone {
		return os.Stat(t.abs)
	}
	return f.root.Stat(t.rel)
}

// Create refuses: the checkout is read-only.
func (f *kubeFS) Create(p string) (filesys.File, error) {
	return nil, fmt.Errorf("create %s: %w", f.c.rel(p), errReadOnly)
}

// Mkdir refuses: the checkout is read-only.
func (f *kubeFS) Mkdir(p string) error {
	return fmt.Errorf("mkdir %s: %w", f.c.rel(p), errReadOnly)
}

// MkdirAll refuses: the checkout is read-only.
func (f *kubeFS) MkdirAll(p string) error {
	return fmt.Errorf("mkdir %s: %w", f.c.rel(p), errReadOnly)
}

// RemoveAll removes only kustomize's own clones; the checkout is read-only.
func (f *kubeFS) RemoveAll(p string) error {
	if t, ok := f.inClone(filepath.Clean(p)); ok {
		if err := os.RemoveAll(t.abs); err != nil {
			return fmt.Errorf("remove kustomize clone: %w", err)
		}
		return nil
	}
	return fmt.Errorf("remove %s: %w", f.c.rel(p), errReadOnly)
}

// WriteFile refuses: the checkout is read-only.
func (f *kubeFS) WriteFile(p string, _ []byte) error {
	return fmt.Errorf("write %s: %w", f.c.rel(p), errReadOnly)
}

// Open opens a confined file for reading.
func (f *kubeFS) Open(p string) (filesys.File, error) {
	t, err := f.confine(p)
	if err != nil {
		return nil, err
	}
	var file *os.File
	if t.clone {
		file, err = os.Open(t.abs)
	} else {
		file, err = f.root.Open(t.rel)
	}
	if err != nil {
		return nil, err // not a typed nil inside the interface
	}
	if fi, err := file.Stat(); err == nil {
		if err := checkSize(fi, "kustomize input", f.c.rel(t.abs), MaxParsedFileBytes); err != nil {
			_ = file.Close()
			return nil, f.tooLarge(err)
		}
	}
	return file, nil
}

// IsDir reports a confined directory; an escape is false (and recorded).
func (f *kubeFS) IsDir(p string) bool {
	t, err := f.confine(p)
	if err != nil {
		return false
	}
	st, err := f.stat(t)
	return err == nil && st.IsDir()
}

// Exists reports a confined path; an escape is false (and recorded).
func (f *kubeFS) Exists(p string) bool {
	t, err := f.confine(p)
	if err != nil {
		return false
	}
	_, err = f.stat(t)
	return err == nil
}

// ReadDir lists a confined directory, sorted.
func (f *kubeFS) ReadDir(p string) ([]string, error) {
	t, err := f.confine(p)
	if err != nil {
		return nil, err
	}
	var entries []os.DirEntry
	if t.clone {
		entries, err = os.ReadDir(t.abs)
	} else {
		entries, err = readRootDir(f.root, t.rel)
	}
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	slices.Sort(names)
	return names, nil
}

func readRootDir(root *os.Root, rel string) ([]os.DirEntry, error) {
	d, err := root.Open(rel)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.ReadDir(-1)
}

// CleanedAbs splits a confined path into its resolved directory and file name, as
// kustomize's on-disk filesystem does; a missing path is an error.
func (f *kubeFS) CleanedAbs(p string) (filesys.ConfirmedDir, string, error) {
	t, err := f.confine(p)
	if err != nil {
		return "", "", err
	}
	st, err := f.stat(t)
	if err != nil {
		return "", "", fmt.Errorf("resolve %s: %w", f.c.rel(p), err)
	}
	if st.IsDir() {
		return filesys.ConfirmedDir(t.abs), "", nil
	}
	return filesys.ConfirmedDir(filepath.Dir(t.abs)), filepath.Base(t.abs), nil
}

// Glob matches a pattern and keeps only confined matches; a match that leaves the
// checkout is an error. Hidden files are dropped unless the pattern asks for them.
func (f *kubeFS) Glob(pattern string) ([]string, error) {
	matches, err := filepath.Glob(pattern)
	if err != nil {
		return nil, fmt.Errorf("glob: %w", err)
	}
	if !filesys.IsHiddenFilePath(pattern) {
		matches = filesys.RemoveHiddenFiles(matches)
	}
	for _, m := range matches {
		if _, err := f.confine(m); err != nil {
			return nil, err
		}
	}
	return matches, nil
}

// Walk walks a confined tree; every visited path is confined too.
func (f *kubeFS) Walk(p string, fn filepath.WalkFunc) error {
	if _, err := f.confine(p); err != nil {
		return err
	}
	return filepath.Walk(p, func(q string, info os.FileInfo, err error) error {
		if err == nil {
			if _, cerr := f.confine(q); cerr != nil {
				return cerr
			}
		}
		return fn(q, info, err)
	})
}

// ReadFile reads a confined file.
func (f *kubeFS) ReadFile(p string) ([]byte, error) {
	t, err := f.confine(p)
	if err != nil {
		return nil, err
	}
	if t.clone {
		file, err := os.Open(t.abs)
		if err != nil {
			return nil, err
		}
		defer file.Close()
		b, err := readLimited(file, "kustomize input", f.c.rel(t.abs), MaxParsedFileBytes)
		return b, f.tooLarge(err)
	}
	b, err := readRootFile(f.root, t.rel, "kustomize input", MaxParsedFileBytes)
	return b, f.tooLarge(err)
}
