package manifests

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// EscapeError reports a file reference that leaves the checkout, lexically ("../"), by an
// absolute path, or through a symlink. Nothing is read from such a path.
type EscapeError struct {
	// Ref is the offending path: relative to the checkout root when it is lexically
	// inside or just outside it, absolute otherwise.
	Ref string
	// Key says where the path was found, e.g. `services.api.env_file` or `compose file`.
	Key string
	// Via is set when a symlink inside the checkout led outside it.
	Via string
}

// Error names the path, where it was found and the symlink that led outside, if any.
func (e *EscapeError) Error() string {
	if e.Via != "" {
		return fmt.Sprintf("%s %q: symlink %q leads outside the checkout", e.Key, e.Ref, e.Via)
	}
	return fmt.Sprintf("%s %q: path is outside the checkout", e.Key, e.Ref)
}

// ErrRemoteResource is returned for include/extends references to git or OCI resources:
// a deployment must be fully determined by the checkout.
var ErrRemoteResource = errors.New("remote resources are not supported by shipwatch")

// confiner checks that paths stay inside one checkout. root is the checkout as given
// (paths in the project are built from it); real is root with its own symlinks resolved,
// so a checkout under a symlinked directory (e.g. /tmp -> /private/tmp) still works.
type confiner struct {
	root string
	real string
}

func newConfiner(root string) (*confiner, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("checkout root %q must be absolute", root)
	}
	root = filepath.Clean(root)
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("resolve checkout root: %w", err)
	}
	return &confiner{root: root, real: real}, nil
}

// rel returns p relative to the root, for messages.
func (c *confiner) rel(p string) string {
	r, err := filepath.Rel(c.root, p)
	if err != nil {
		return p
	}
	return r
}

func within(base, p string) bool {
	r, err := filepath.Rel(base, p)
	return err == nil && r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator)) && !filepath.IsAbs(r)
}

// check verifies that the absolute path p is inside the checkout, lexically and after
// following symlinks. A missing path is checked up to its deepest existing ancestor, since
// a symlinked parent could still lead outside. It returns the path relative to the root.
func (c *confiner) check(p, key string) (string, error) {
	p = filepath.Clean(p)
	if !within(c.root, p) {
		return "", &EscapeError{Ref: c.rel(p), Key: key}
	}
	resolved, err := evalExisting(p)
	if err != nil {
		return "", fmt.Errorf("%s %q: %w", key, c.rel(p), err)
	}
	if !within(c.real, resolved) {
		return "", &EscapeError{Ref: c.rel(p), Key: key, Via: c.rel(p)}
	}
	r, err := filepath.Rel(c.real, resolved)
	if err != nil {
		return "", fmt.Errorf("%s %q: %w", key, c.rel(p), err)
	}
	return r, nil
}

// evalExisting resolves symlinks in the longest existing prefix of p and appends the rest.
func evalExisting(p string) (string, error) {
	rest := ""
	cur := p
	for {
		resolved, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(resolved, rest), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return p, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// resolve makes a compose path absolute against dir the way compose-go does, refusing
// home-relative paths: they would depend on the daemon's environment, not on Git.
func resolve(dir, p string) (string, error) {
	if strings.HasPrefix(p, "~") {
		return "", fmt.Errorf("home-relative path %q is not supported: use a path in the repository", p)
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p), nil
	}
	return filepath.Join(dir, p), nil
}

// isRemote reports references compose-go's git and OCI loaders would fetch.
func isRemote(p string) bool {
	return strings.Contains(p, "://") || strings.HasPrefix(p, "git@") || strings.HasPrefix(p, "oci:")
}

// guardLoader is a compose-go ResourceLoader placed before compose-go's local loader, so
// it sees every include and extends reference first. It refuses remote references and
// `include`, and confines extends files to the checkout before compose-go reads them.
//
// compose-go resolves an extends file (also one nested in an extended file, whose
// paths were made relative to the project dir) against the project working dir, so
// that is the only base needed here.
type guardLoader struct {
	c       *confiner
	workDir string

	mu        sync.Mutex
	lastEvent string
}

// listen records which declaration compose-go is about to load: its listener fires
// just before it asks the loaders, and the loaders themselves are not told.
func (g *guardLoader) listen(event string, _ map[string]any) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lastEvent = event
}

// Accept takes every reference, so compose-go's unchecked local loader never sees one.
func (g *guardLoader) Accept(string) bool { return true }

// Load refuses include and remote references and returns the confined absolute path.
func (g *guardLoader) Load(_ context.Context, p string) (string, error) {
	g.mu.Lock()
	event := g.lastEvent
	g.mu.Unlock()
	if event == "include" {
		return "", &UnsupportedError{Key: "include", Hint: "keep an app's compose files in its path and list them in files"}
	}
	if isRemote(p) {
		return "", fmt.Errorf("extends file %q: %w", p, ErrRemoteResource)
	}
	abs, err := resolve(g.workDir, p)
	if err != nil {
		return "", fmt.Errorf("extends file: %w", err)
	}
	if _, err := g.c.check(abs, "extends file"); err != nil {
		return "", err
	}
	// compose-go reads the file itself, whole.
	if fi, err := os.Stat(abs); err == nil {
		if err := checkSize(fi, "extends file", g.c.rel(abs), MaxParsedFileBytes); err != nil {
			return "", err
		}
	}
	return abs, nil
}

// Dir returns the extended file's directory relative to the working dir, as compose-go's
// local loader does: relative paths of the extended service then stay relative until
// LoadCompose resolves and confines them.
func (g *guardLoader) Dir(p string) string {
	abs, err := resolve(g.workDir, p)
	if err != nil {
		return filepath.Dir(p)
	}
	d := filepath.Dir(abs)
	if r, err := filepath.Rel(g.workDir, d); err == nil {
		return r
	}
	return d
}

// readFile reads a confined file through os.Root, which refuses escapes on its own too.
func readFile(root *os.Root, c *confiner, abs, key string) ([]byte, error) {
	rel, err := c.check(abs, key)
	if err != nil {
		return nil, err
	}
	b, err := readRootFile(root, rel, key, MaxParsedFileBytes)
	if errors.Is(err, ErrTooLarge) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", key, c.rel(abs), err)
	}
	return b, nil
}
