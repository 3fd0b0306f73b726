package manifests

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// KubeOptions says where a kubernetes app lives in a checkout.
type KubeOptions struct {
	// Root is the checkout root (absolute); nothing outside it is read.
	Root string
	// Path is the app directory relative to Root; empty means Root itself.
	Path string
	// AllowRemoteBases lets a kustomization refer to remote bases and files (git URLs,
	// github.com/..., http(s) files). Kustomize then fetches them itself: it uses the network
	// and, for git bases, runs the `git` binary to clone into a temporary directory. The
	// result then depends on more than the checkout's revision, so it is off by default.
	AllowRemoteBases bool
}

// KubeError reports a problem in one file of a kubernetes app. File is relative to the
// checkout root; Doc (1-based) and Line are zero when they do not apply. Messages name
// fields and keys, never values, so a Secret's data cannot leak through an error.
type KubeError struct {
	// File is the file the problem is in, relative to the checkout root.
	File string
	// Doc is the 1-based index of the YAML document in File, or 0.
	Doc int
	// Line is the 1-based line in File, or 0 when unknown.
	Line int
	// Msg says what is wrong.
	Msg string
	// Err is an underlying cause for errors.Is/As, e.g. ErrRemoteResource; may be nil.
	Err error
}

// Error renders `file: document 2 (line 14): msg[: cause]`.
func (e *KubeError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	switch {
	case e.Doc > 0 && e.Line > 0:
		fmt.Fprintf(&b, ": document %d (line %d)", e.Doc, e.Line)
	case e.Doc > 0:
		fmt.Fprintf(&b, ": document %d", e.Doc)
	case e.Line > 0:
		fmt.Fprintf(&b, ": line %d", e.Line)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *KubeError) Unwrap() error { return e.Err }

// kustomizationNames are the file names kustomize recognises, in its order.
var kustomizationNames = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

// LoadKube loads every object of a kubernetes app.
//
// If the app directory holds a kustomization, it is built with kustomize (plugins and Helm
// disabled) on a filesystem confined to the checkout, and the objects come in kustomize's
// output order: the kustomization's sortOptions, else kustomize's legacy order, as
// `kustomize build` prints them. Otherwise every *.yaml, *.yml and *.json file under the
// directory (recursively; dot files and dot directories skipped) is read in path order,
// documents in file order, List items expanded in place.
//
// Objects are returned in that file order, not in apply order: callers that apply them
// use SortForApply. Kustomize takes no context; ctx is checked before and after it runs.
func LoadKube(ctx context.Context, opts KubeOptions) ([]*unstructured.Unstructured, error) {
	c, err := newConfiner(opts.Root)
	if err != nil {
		return nil, err
	}
	dir, err := resolve(c.root, filepath.FromSlash(opts.Path))
	if err != nil {
		return nil, fmt.Errorf("app path: %w", err)
	}
	if _, err := c.check(dir, "app path"); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(c.root)
	if err != nil {
		return nil, fmt.Errorf("open checkout: %w", err)
	}
	defer root.Close()
	st, err := root.Stat(relOrDot(c, dir))
	if err != nil {
		return nil, fmt.Errorf("app path %q: %w", c.rel(dir), err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("app path %q: not a directory", c.rel(dir))
	}
	kf, err := findKustomization(root, c, dir)
	if err != nil {
		return nil, err
	}
	if kf != "" {
		return buildKustomization(ctx, c, root, kf, opts.AllowRemoteBases)
	}
	return loadPlain(ctx, c, root, dir)
}

// relOrDot returns abs relative to the checkout root, "." for the root itself.
func relOrDot(c *confiner, abs string) string {
	r, err := filepath.Rel(c.root, abs)
	if err != nil || r == "" {
		return "."
	}
	return r
}

// findKustomization returns the absolute path of dir's kustomization file, or "".
func findKustomization(root *os.Root, c *confiner, dir string) (string, error) {
	var found []string
	for _, name := range kustomizationNames {
		p := filepath.Join(dir, name)
		if _, err := c.check(p, "kustomization"); err != nil {
			return "", err
		}
		if _, err := root.Stat(relOrDot(c, p)); err == nil {
			found = append(found, p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("kustomization %q: %w", c.rel(p), err)
		}
	}
	switch len(found) {
	case 0:
		return "", nil
	case 1:
		return found[0], nil
	default:
		return "", &KubeError{File: c.rel(dir), Msg: "more than one kustomization file: keep only one of " + strings.Join(kustomizationNames, ", ")}
	}
}

// loadPlain reads every manifest file under dir, in path order.
func loadPlain(ctx context.Context, c *confiner, root *os.Root, dir string) ([]*unstructured.Unstructured, error) {
	files, err := manifestFiles(c, dir)
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	seen := map[objectKey]origin{}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("load kubernetes manifests: %w", err)
		}
		rel := c.rel(f)
		content, err := readFile(root, c, f, "manifest")
		if err != nil {
			return nil, err
		}
		docs, err := parseKubeFile(filepath.ToSlash(rel), content)
		if err != nil {
			return nil, err
		}
		for _, d := range docs {
			k := keyOf(d.obj)
			if prev, ok := seen[k]; ok {
				return nil, &KubeError{File: d.file, Doc: d.doc, Line: d.line,
					Msg: fmt.Sprintf("duplicate object %s: also defined in %s document %d", k, prev.file, prev.doc)}
			}
			seen[k] = origin{file: d.file, doc: d.doc}
			objs = append(objs, d.obj)
		}
	}
	return objs, nil
}

// manifestFiles lists the manifest files under dir, sorted by path. Symlinks are followed
// only while they stay inside the checkout; a symlink leaving it is an *EscapeError.
func manifestFiles(c *confiner, dir string) ([]string, error) {
	var files []string
	visited := map[string]bool{}
	count := &entryCounter{key: "manifest directory", rel: c.rel(dir)}
	var walk func(d string) error
	walk = func(d string) error {
		real, err := filepath.EvalSymlinks(d)
		if err != nil {
			return fmt.Errorf("read directory %q: %w", c.rel(d), err)
		}
		if visited[real] {
			return nil // a symlink loop or a second link to a directory already read
		}
		visited[real] = true
		entries, err := os.ReadDir(d)
		if err != nil {
			return fmt.Errorf("read directory %q: %w", c.rel(d), err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				continue
			}
			if err := count.visit(); err != nil {
				return err
			}
			p := filepath.Join(d, e.Name())
			isDir := e.IsDir()
			if e.Type()&fs.ModeSymlink != 0 {
				if _, err := c.check(p, "manifest"); err != nil {
					return err
				}
				st, err := os.Stat(p)
				if err != nil {
					return fmt.Errorf("manifest %q: %w", c.rel(p), err)
				}
				isDir = st.IsDir()
			}
			if isDir {
				if err := nestedKustomization(c, p); err != nil {
					return err
				}
				if err := walk(p); err != nil {
					return err
				}
				continue
			}
			if isManifestName(e.Name()) {
				files = append(files, p)
			}
		}
		return nil
	}
	if err := walk(dir); err != nil {
		return nil, err
	}
	slices.SortFunc(files, func(a, b string) int {
		return strings.Compare(filepath.ToSlash(c.rel(a)), filepath.ToSlash(c.rel(b)))
	})
	return files, nil
}

// nestedKustomization refuses a kustomization below a plain app directory: its files would
// be read as plain manifests, which is never what the author meant.
func nestedKustomization(c *confiner, dir string) error {
	for _, name := range kustomizationNames {
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); err == nil {
			return &KubeError{File: c.rel(p), Msg: "kustomization below a plain manifest directory: point the app path at its directory"}
		}
	}
	return nil
}

func isManifestName(name string) bool {
	switch strings.ToLower(path.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// objectKey identifies an object the way the API server does.
type objectKey struct {
	group, kind, namespace, name string
}

func keyOf(o *unstructured.Unstructured) objectKey {
	gvk := o.GroupVersionKind()
	return objectKey{group: gvk.Group, kind: gvk.Kind, namespace: o.GetNamespace(), name: o.GetName()}
}

// String renders `group/Kind namespace/name`, leaving out empty parts.
func (k objectKey) String() string {
	gk := k.kind
	if k.group != "" {
		gk = k.group + "/" + k.kind
	}
	if k.namespace != "" {
		return gk + " " + k.namespace + "/" + k.name
	}
	return gk + " " + k.name
}

type origin struct {
	file string
	doc  int
}

// SortForApply returns the objects in an order that applies cleanly: CustomResourceDefinitions
// first (custom resources need them), then Namespaces (namespaced objects need them), then
// everything else by kind, group, namespace and name. The sort is stable and the input is
// not modified.
func SortForApply(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	out := slices.Clone(objs)
	slices.SortStableFunc(out, func(a, b *unstructured.Unstructured) int {
		ka, kb := keyOf(a), keyOf(b)
		if r := applyRank(ka) - applyRank(kb); r != 0 {
			return r
		}
		for _, c := range [][2]string{{ka.kind, kb.kind}, {ka.group, kb.group}, {ka.namespace, kb.namespace}, {ka.name, kb.name}} {
			if r := strings.Compare(c[0], c[1]); r != 0 {
				return r
			}
		}
		return 0
	})
	return out
}

func applyRank(k objectKey) int {
	switch {
	case k.group == "apiextensions.k8s.io" && k.kind == "CustomResourceDefinition":
		return 0
	case k.group == "" && k.kind == "Namespace":
		return 1
	default:
		return 2
	}
}
