package manifests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const digestCompose = `services:
  api:
    image: x
    volumes:
      - ./conf:/conf:ro
      - ./single.txt:/single.txt
    configs: [c]
  worker:
    image: x
    volumes: [./conf:/conf]
configs:
  c:
    file: ./c.conf
`

func digestTree(t *testing.T) string {
	return writeTree(t, map[string]string{
		"app/compose.yaml":   digestCompose,
		"app/conf/a.conf":    "a",
		"app/conf/sub/b.txt": "b",
		"app/single.txt":     "s",
		"app/c.conf":         "c",
	})
}

func digests(t *testing.T, root string) map[string]string {
	t.Helper()
	c := mustLoad(t, ComposeOptions{Root: root, Path: "app"})
	out := map[string]string{}
	for svc, files := range c.Files {
		for _, f := range files {
			if !strings.HasPrefix(f.Digest, "sha256:") || len(f.Digest) != len("sha256:")+64 {
				t.Fatalf("bad digest %q", f.Digest)
			}
			if f.Path != filepath.Join(root, f.Rel) {
				t.Errorf("Path %q and Rel %q disagree", f.Path, f.Rel)
			}
			out[svc+" "+f.Rel] = f.Digest
		}
	}
	return out
}

func TestDigestsIdenticalForIdenticalContent(t *testing.T) {
	a, b := digests(t, digestTree(t)), digests(t, digestTree(t))
	if len(a) != 4 {
		t.Fatalf("want 4 files (api: conf, single.txt, c.conf; worker: conf), got %v", a)
	}
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("digests differ for identical checkouts:\n%v\n%v", a, b)
	}
	if a["api app/conf"] != a["worker app/conf"] {
		t.Error("same directory has different digests per service")
	}
}

func TestDigestsChangeWithContent(t *testing.T) {
	root := digestTree(t)
	before := digests(t, root)
	for _, change := range []struct {
		name string
		do   func(t *testing.T)
		key  string
	}{
		{"file in bound dir", func(t *testing.T) { write(t, root, "app/conf/sub/b.txt", "B") }, "api app/conf"},
		{"new file in bound dir", func(t *testing.T) { write(t, root, "app/conf/new", "") }, "api app/conf"},
		{"bound file", func(t *testing.T) { write(t, root, "app/single.txt", "S") }, "api app/single.txt"},
		{"config file", func(t *testing.T) { write(t, root, "app/c.conf", "C") }, "api app/c.conf"},
		{"mode bits", func(t *testing.T) {
			if err := os.Chmod(filepath.Join(root, "app/single.txt"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, "api app/single.txt"},
		{"symlink in dir", func(t *testing.T) {
			if err := os.Symlink("/nonexistent", filepath.Join(root, "app/conf/link")); err != nil {
				t.Fatal(err)
			}
		}, "api app/conf"},
	} {
		change.do(t)
		after := digests(t, root)
		if after[change.key] == before[change.key] {
			t.Errorf("%s: digest of %s unchanged", change.name, change.key)
		}
		before = after
	}
}

func TestMissingBindSourceInCheckoutRefused(t *testing.T) {
	root := writeTree(t, map[string]string{"app/compose.yaml": "services:\n  api:\n    image: x\n    volumes: [./data:/data]\n"})
	wantContains(t, loadErr(t, ComposeOptions{Root: root, Path: "app"}), "app/data", "does not exist")
}

func write(t *testing.T, root, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkLoadCompose(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("services:\n")
	files := map[string]string{"app/.env": "TAG=1.0\n", "app/conf/a.conf": "a", "app/common.env": "A=1\nB=2\n"}
	for i := range 50 {
		fmt.Fprintf(&sb, `  svc%02d:
    image: example/svc%02d:${TAG}
    environment: {N: "%d"}
    env_file: [common.env]
    ports: ["%d:80"]
    volumes: [./conf:/conf:ro, data%02d:/data]
    depends_on: [svc00]
    healthcheck: {test: ["CMD", "true"], interval: 5s}
    labels: {com.example.n: "%d"}
`, i, i, i, 10000+i, i, i)
	}
	sb.WriteString("volumes:\n")
	for i := range 50 {
		fmt.Fprintf(&sb, "  data%02d: {}\n", i)
	}
	files["app/compose.yaml"] = strings.Replace(sb.String(), "    depends_on: [svc00]\n", "", 1)
	root := b.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	opts := ComposeOptions{Root: root, Path: "app", Project: "bench"}
	b.ReportAllocs()
	for b.Loop() {
		c, err := LoadCompose(b.Context(), opts)
		if err != nil {
			b.Fatal(err)
		}
		if len(c.Project.Services) != 50 {
			b.Fatalf("%d services", len(c.Project.Services))
		}
	}
}
