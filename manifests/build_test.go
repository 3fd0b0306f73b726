package manifests

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func buildTree(extra map[string]string) map[string]string {
	files := map[string]string{
		"app/compose.yaml":   "services:\n  api:\n    build: ./src\n  web:\n    image: x\n",
		"app/src/Dockerfile": "FROM scratch\nCOPY . /\n",
		"app/src/main.txt":   "v1",
		"app/src/sub/a.txt":  "a",
		"app/other.txt":      "outside the context",
	}
	for k, v := range extra {
		files[k] = v
	}
	return files
}

func buildDigest(t *testing.T, root string) string {
	t.Helper()
	c := mustLoad(t, ComposeOptions{Root: root, Path: "app"})
	b, ok := c.Builds["api"]
	if !ok {
		t.Fatalf("no build for api: %v", c.Builds)
	}
	if _, ok := c.Builds["web"]; ok {
		t.Errorf("web has no build section but got one")
	}
	return b.Digest
}

func TestBuildLoaded(t *testing.T) {
	root := writeTree(t, buildTree(nil))
	c := mustLoad(t, ComposeOptions{Root: root, Path: "app"})
	b := c.Builds["api"]
	if b.Dir != "app/src" || b.Rel != "app/src" || b.Dockerfile != "Dockerfile" || b.Root != root {
		t.Errorf("build = %+v", b)
	}
	if got := c.Project.Services["api"].Build.Context; got != filepath.Join(root, "app/src") {
		t.Errorf("context = %q, want absolute", got)
	}
	if c.Project.Services["api"].Image != "" {
		t.Errorf("image = %q: must stay empty, compose hashes it so", c.Project.Services["api"].Image)
	}
}

func TestBuildDockerfileInSubdir(t *testing.T) {
	root := writeTree(t, buildTree(map[string]string{
		"app/compose.yaml":               "services:\n  api:\n    build:\n      context: ./src\n      dockerfile: docker/Dockerfile.prod\n",
		"app/src/docker/Dockerfile.prod": "FROM scratch\n",
	}))
	c := mustLoad(t, ComposeOptions{Root: root, Path: "app"})
	if got := c.Builds["api"].Dockerfile; got != "docker/Dockerfile.prod" {
		t.Errorf("dockerfile = %q", got)
	}
}

func TestBuildDigestChanges(t *testing.T) {
	base := buildDigest(t, writeTree(t, buildTree(nil)))
	if again := buildDigest(t, writeTree(t, buildTree(nil))); again != base {
		t.Errorf("same content, different digest: %s vs %s", again, base)
	}
	if d := buildDigest(t, writeTree(t, buildTree(map[string]string{"app/other.txt": "changed"}))); d != base {
		t.Error("a file outside the context changed the digest")
	}
	for name, extra := range map[string]map[string]string{
		"content":    {"app/src/main.txt": "v2"},
		"new file":   {"app/src/new.txt": ""},
		"dockerfile": {"app/src/Dockerfile": "FROM scratch\n"},
		"nested":     {"app/src/sub/a.txt": "b"},
	} {
		if d := buildDigest(t, writeTree(t, buildTree(extra))); d == base {
			t.Errorf("%s: digest unchanged", name)
		}
	}
}

func TestBuildDigestMode(t *testing.T) {
	root := writeTree(t, buildTree(nil))
	base := buildDigest(t, root)
	if err := os.Chmod(filepath.Join(root, "app/src/main.txt"), 0o755); err != nil {
		t.Fatal(err)
	}
	if buildDigest(t, root) == base {
		t.Error("mode change did not change the digest")
	}
}

func TestBuildDigestOrderIndependent(t *testing.T) {
	files := buildTree(map[string]string{"app/src/b.txt": "b", "app/src/a.txt": "a", "app/src/c/d.txt": "d"})
	r1 := writeTree(t, files)
	// Write the same files in reverse order into a second checkout: creation order must not count.
	r2 := t.TempDir()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range slices.Backward(names) {
		p := filepath.Join(r2, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(files[n]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if buildDigest(t, r1) != buildDigest(t, r2) {
		t.Error("digest depends on file creation order or checkout location")
	}
}

func TestBuildDockerignore(t *testing.T) {
	ignore := "# comment\n*.log\n/tmp\nsub/**/*.bin\n!keep.log\nDockerfile\n.dockerignore\n"
	base := buildDigest(t, writeTree(t, buildTree(map[string]string{"app/src/.dockerignore": ignore, "app/src/sub/a/k": "x"})))
	for name, extra := range map[string]string{
		"app/src/x.log":       "ignored",
		"app/src/tmp/y":       "ignored dir",
		"app/src/sub/a/z.bin": "ignored by **",
		"app/src/sub/z.bin":   "** matches zero dirs",
	} {
		files := buildTree(map[string]string{"app/src/.dockerignore": ignore, "app/src/sub/a/k": "x", name: "x"})
		if d := buildDigest(t, writeTree(t, files)); d != base {
			t.Errorf("%s (%s) changed the digest", name, extra)
		}
	}
	for _, name := range []string{"app/src/keep.log", "app/src/sub/z.txt", "app/src/tmpfile"} {
		files := buildTree(map[string]string{"app/src/.dockerignore": ignore, "app/src/sub/a/k": "x", name: "x"})
		if d := buildDigest(t, writeTree(t, files)); d == base {
			t.Errorf("%s is not ignored but did not change the digest", name)
		}
	}
	// The Dockerfile is always sent, even when ignored.
	files := buildTree(map[string]string{"app/src/.dockerignore": ignore, "app/src/sub/a/k": "x", "app/src/Dockerfile": "FROM scratch\n"})
	if d := buildDigest(t, writeTree(t, files)); d == base {
		t.Error("an ignored Dockerfile must still count")
	}
}

func TestWriteContextMatchesDigest(t *testing.T) {
	root := writeTree(t, buildTree(map[string]string{"app/src/.dockerignore": "*.log\n", "app/src/x.log": "no"}))
	c := mustLoad(t, ComposeOptions{Root: root, Path: "app"})
	var buf bytes.Buffer
	if err := WriteContext(t.Context(), &buf, c.Builds["api"]); err != nil {
		t.Fatal(err)
	}
	var names []string
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	want := []string{".dockerignore", "Dockerfile", "main.txt", "sub/", "sub/a.txt"}
	if !slices.Equal(names, want) {
		t.Errorf("tar entries = %v, want %v", names, want)
	}
	if err := os.WriteFile(filepath.Join(root, "app/src/main.txt"), []byte("v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteContext(t.Context(), io.Discard, c.Builds["api"]); !errors.Is(err, ErrContextChanged) {
		t.Errorf("changed context: err = %v, want ErrContextChanged", err)
	}
}

func TestBuildConfinement(t *testing.T) {
	cases := []struct {
		name, compose, ref string
	}{
		{"dotdot context", "services:\n  api:\n    build: ../../\n", ""},
		{"absolute context", "services:\n  api:\n    build: /etc\n", "/etc"},
		{"dockerfile outside", "services:\n  api:\n    build:\n      context: ./src\n      dockerfile: ../../../Dockerfile\n", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := writeTree(t, buildTree(map[string]string{"app/compose.yaml": tc.compose}))
			err := loadErr(t, ComposeOptions{Root: root, Path: "app"})
			var ee *EscapeError
			if !errors.As(err, &ee) {
				t.Fatalf("error %v is not an *EscapeError", err)
			}
		})
	}
}

func TestBuildSymlinks(t *testing.T) {
	outside := t.TempDir()
	root := writeTree(t, buildTree(nil))
	if err := os.Symlink(outside, filepath.Join(root, "app/ctxlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "app/compose.yaml"), []byte("services:\n  api:\n    build: ./ctxlink\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantEscape(t, loadErr(t, ComposeOptions{Root: root, Path: "app"}), "app/ctxlink")

	root = writeTree(t, buildTree(nil))
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "app/src/passwd")); err != nil {
		t.Fatal(err)
	}
	err := loadErr(t, ComposeOptions{Root: root, Path: "app"})
	wantContains(t, err, "app/src/passwd", "outside the checkout")

	root = writeTree(t, buildTree(nil))
	if err := os.Symlink("main.txt", filepath.Join(root, "app/src/link")); err != nil {
		t.Fatal(err)
	}
	mustLoad(t, ComposeOptions{Root: root, Path: "app"}) // a link inside the checkout is sent as a link
}

func TestBuildRefused(t *testing.T) {
	cases := []struct{ name, build, want string }{
		{"git url", "build: https://github.com/x/y.git", `key "build.context" value "https://github.com/x/y.git"`},
		{"git ssh", "build: git@github.com:x/y.git", `key "build.context"`},
		{"inline", "build:\n      dockerfile_inline: FROM scratch", `key "build.dockerfile_inline"`},
		{"platforms", "build:\n      context: ./src\n      platforms: [linux/arm64]", `key "build.platforms"`},
		{"tags", "build:\n      context: ./src\n      tags: [x:1]", `key "build.tags"`},
		{"missing dockerfile", "build:\n      context: ./src\n      dockerfile: Nope", "is not a file"},
		{"context not a dir", "build: ./other.txt", "is not a directory"},
		{"dockerfile outside the context", "build:\n      context: ./src\n      dockerfile: ../other.txt", "must be inside the build context"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := writeTree(t, buildTree(map[string]string{"app/compose.yaml": "services:\n  api:\n    " + tc.build + "\n"}))
			err := loadErr(t, ComposeOptions{Root: root, Path: "app"})
			wantContains(t, err, tc.want, "api")
		})
	}
}
