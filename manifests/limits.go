package manifests

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Limits on what shipwatch reads from a checkout. Git content is input from whoever can
// push: without them a 50 MB compose file cost 856 MB of memory and 10 s on every revision.
const (
	// MaxParsedFileBytes bounds a file shipwatch parses: compose and env files, env_file and
	// extends files, Kubernetes manifests, kustomize inputs, .dockerignore.
	MaxParsedFileBytes = 4 << 20
	// MaxRepoFileBytes bounds a repo file a service reads at run time (a file config or
	// secret, a bind-mounted file), which shipwatch digests and copies.
	MaxRepoFileBytes = 64 << 20
	// MaxBuildFileBytes bounds one file of a build context, which is read whole to be sent.
	MaxBuildFileBytes = 256 << 20
	// MaxTreeEntries bounds the entries walked in one directory tree: a bind-mounted
	// directory, a build context, a manifest directory.
	MaxTreeEntries = 100_000
)

// ErrTooLarge is wrapped by errors for input over a limit. The revision is wrong as it
// stands, so the reconciler stalls on it rather than retrying.
var ErrTooLarge = errors.New("file too large for shipwatch")

// tooLarge says which file is too large and by how much.
func tooLarge(key, rel string, size, limit int64) error {
	return fmt.Errorf("%s %s is %s, over the limit of %s: %w", key, rel, bytesText(size), bytesText(limit), ErrTooLarge)
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}

// checkSize refuses a regular file larger than limit. A file that grows between the check
// and the read is caught by readLimited.
func checkSize(fi fs.FileInfo, key, rel string, limit int64) error {
	if fi.Mode().IsRegular() && fi.Size() > limit {
		return tooLarge(key, rel, fi.Size(), limit)
	}
	return nil
}

// readLimited reads at most limit bytes of f and fails beyond them.
func readLimited(f io.Reader, key, rel string, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, tooLarge(key, rel, int64(len(b)), limit)
	}
	return b, nil
}

// readRootFile reads a file under root after checking its size.
func readRootFile(root *os.Root, rel, key string, limit int64) ([]byte, error) {
	f, err := root.Open(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := checkSize(fi, key, rel, limit); err != nil {
		return nil, err
	}
	return readLimited(f, key, rel, limit)
}

// entryCounter fails a walk once it has visited more than MaxTreeEntries entries.
type entryCounter struct {
	n   int
	key string
	rel string
}

func (c *entryCounter) visit() error {
	c.n++
	if c.n > MaxTreeEntries {
		return fmt.Errorf("%s %s holds more than %d entries: %w", c.key, c.rel, MaxTreeEntries, ErrTooLarge)
	}
	return nil
}

// readFSFile reads a file of fsys after checking its size.
func readFSFile(fsys fs.FS, name string, limit int64) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := checkSize(fi, "file", name, limit); err != nil {
		return nil, err
	}
	return readLimited(f, "file", name, limit)
}
