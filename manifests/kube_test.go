package manifests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// kubeCheckout makes <tmp>/checkout from files and returns it with <tmp>, so tests can put
// files next to the checkout, outside it.
func kubeCheckout(t *testing.T, files map[string]string) (root, outside string) {
	t.Helper()
	tmp := t.TempDir()
	root = filepath.Join(tmp, "checkout")
	outside = filepath.Join(tmp, "outside")
	for _, d := range []string{root, outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range files {
		p := filepath.Join(tmp, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root, outside
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func mustLoadKube(t *testing.T, opts KubeOptions) []*unstructured.Unstructured {
	t.Helper()
	objs, err := LoadKube(t.Context(), opts)
	if err != nil {
		t.Fatalf("LoadKube: %v", err)
	}
	return objs
}

func loadKubeErr(t *testing.T, opts KubeOptions) error {
	t.Helper()
	objs, err := LoadKube(t.Context(), opts)
	if err == nil {
		t.Fatalf("LoadKube succeeded with %d objects, want an error", len(objs))
	}
	return err
}

// ids renders objects as `Kind ns/name` for comparison.
func ids(objs []*unstructured.Unstructured) string {
	var b strings.Builder
	for _, o := range objs {
		fmt.Fprintf(&b, "%s %s/%s\n", o.GetKind(), o.GetNamespace(), o.GetName())
	}
	return b.String()
}

func wantKubeError(t *testing.T, err error, file string, doc, line int, msgPart string) {
	t.Helper()
	var ke *KubeError
	if !errors.As(err, &ke) {
		t.Fatalf("error %v (%T) is not a *KubeError", err, err)
	}
	if ke.File != file || ke.Doc != doc || ke.Line != line {
		t.Errorf("KubeError at %s doc %d line %d, want %s doc %d line %d (%v)", ke.File, ke.Doc, ke.Line, file, doc, line, err)
	}
	if !strings.Contains(err.Error(), msgPart) {
		t.Errorf("error %q does not contain %q", err, msgPart)
	}
}

func TestLoadKubePlainDirectory(t *testing.T) {
	root, _ := kubeCheckout(t, map[string]string{
		"checkout/apps/web/b-deploy.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 2
---
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
`,
		"checkout/apps/web/a-ns.yml": `apiVersion: v1
kind: Namespace
metadata:
  name: shop
`,
		"checkout/apps/web/nested/deeper/list.yaml": `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: one, namespace: shop}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: two, namespace: shop}
`,
		"checkout/apps/web/nested/crd.json": `{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
 "metadata": {"name": "widgets.example.com"}, "spec": {"group": "example.com"}}`,
		"checkout/apps/web/.hidden/x.yaml":   "not: [valid",
		"checkout/apps/web/.gitlab-ci.yml":   "stages: [x]",
		"checkout/apps/web/README.md":        "# not a manifest",
		"checkout/apps/other/deploy.yaml":    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n",
		"checkout/apps/web/nested/empty.yml": "---\n# only a comment\n",
	})
	objs := mustLoadKube(t, KubeOptions{Root: root, Path: "apps/web"})
	want := `Namespace /shop
Deployment shop/web
Service shop/web
CustomResourceDefinition /widgets.example.com
ConfigMap shop/one
ConfigMap shop/two
`
	if got := ids(objs); got != want {
		t.Errorf("file order:\n%s\nwant:\n%s", got, want)
	}
	if r, _, _ := unstructured.NestedInt64(objs[1].Object, "spec", "replicas"); r != 2 {
		t.Errorf("replicas = %d, want int64 2", r)
	}
	sorted := `CustomResourceDefinition /widgets.example.com
Namespace /shop
ConfigMap shop/one
ConfigMap shop/two
Deployment shop/web
Service shop/web
`
	if got := ids(SortForApply(objs)); got != sorted {
		t.Errorf("apply order:\n%s\nwant:\n%s", got, sorted)
	}
	if objs[0].GetKind() != "Namespace" {
		t.Error("SortForApply modified its input")
	}
}

func TestLoadKubeMissingFields(t *testing.T) {
	ok := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n"
	for _, tc := range []struct {
		name, doc string
		line      int
		msg       string
	}{
		// The second document starts on line 6, after the first and the separator.
		{"apiVersion", "kind: ConfigMap\nmetadata:\n  name: x\n", 6, "missing apiVersion"},
		{"kind", "apiVersion: v1\nmetadata:\n  name: x\n", 6, "missing kind"},
		{"name", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {a: b}\n", 8, "missing metadata.name"},
		{"emptyName", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"\"\n", 8, "missing metadata.name"},
		{"metadata", "apiVersion: v1\nkind: ConfigMap\ndata: {}\n", 6, "missing metadata.name"},
		{"kindType", "apiVersion: v1\nkind: [ConfigMap]\nmetadata:\n  name: x\n", 7, "kind must be a string"},
		{"scalar", "just a string\n", 6, "not an object"},
		{"listItem", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  metadata: {name: y}\n", 9, "items[0]: missing kind"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, _ := kubeCheckout(t, map[string]string{
				"checkout/app/objects.yaml": ok + "---\n" + tc.doc,
			})
			err := loadKubeErr(t, KubeOptions{Root: root, Path: "app"})
			wantKubeError(t, err, "app/objects.yaml", 2, tc.line, tc.msg)
			if !strings.HasPrefix(err.Error(), fmt.Sprintf("app/objects.yaml: document 2 (line %d): ", tc.line)) {
				t.Errorf("message %q does not start with file, document and line", err)
			}
		})
	}
}

func TestLoadKubeInvalidYAML(t *testing.T) {
	root, _ := kubeCheckout(t, map[string]string{
		"checkout/app/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: ConfigMap\n  bad: indent\n",
	})
	err := loadKubeErr(t, KubeOptions{Root: root, Path: "app"})
	wantKubeError(t, err, "app/cm.yaml", 2, 8, "invalid YAML")

	root, _ = kubeCheckout(t, map[string]string{
		"checkout/app/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nkind: Secret\nmetadata: {name: a}\n",
	})
	err = loadKubeErr(t, KubeOptions{Root: root, Path: "app"})
	wantKubeError(t, err, "app/cm.yaml", 1, 3, "already defined at line 2")
}

func TestLoadKubeErrorsHideSecretValues(t *testing.T) {
	for name, doc := range map[string]string{
		"syntax":   "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: \"hunter2-s3cr3t\n  user: x: y\n",
		"noName":   "apiVersion: v1\nkind: Secret\nmetadata: {}\nstringData:\n  password: hunter2-s3cr3t\n",
		"dupKey":   "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData:\n  hunter2-s3cr3t: a\n  hunter2-s3cr3t: b\n",
		"badValue": "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData:\n  password: *hunter2-s3cr3t\n",
	} {
		t.Run(name, func(t *testing.T) {
			root, _ := kubeCheckout(t, map[string]string{"checkout/app/secret.yaml": doc})
			err := loadKubeErr(t, KubeOptions{Root: root, Path: "app"})
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error leaks the secret value: %v", err)
			}
			var ke *KubeError
			if !errors.As(err, &ke) || ke.File != "app/secret.yaml" {
				t.Errorf("error %v does not name the file", err)
			}
		})
	}
}

func TestLoadKubeDuplicateAcrossFiles(t *testing.T) {
	deploy := "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: shop\n"
	root, _ := kubeCheckout(t, map[string]string{
		"checkout/app/a.yaml":     deploy,
		"checkout/app/sub/b.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web, namespace: shop}\n---\n" + deploy,
		// Same name, other kind or namespace: not duplicates.
		"checkout/app/c.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: other}\n",
	})
	err := loadKubeErr(t, KubeOptions{Root: root, Path: "app"})
	wantKubeError(t, err, "app/sub/b.yaml", 2, 5, "duplicate object apps/Deployment shop/web")
	if !strings.Contains(err.Error(), "app/a.yaml") {
		t.Errorf("error %q does not name the first file", err)
	}
}

func TestLoadKubeNestedKustomizationRefused(t *testing.T) {
	root, _ := kubeCheckout(t, map[string]string{
		"checkout/app/cm.yaml":                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
		"checkout/app/overlay/kustomization.yaml": "resources: []\n",
	})
	err := loadKubeErr(t, KubeOptions{Root: root, Path: "app"})
	wantKubeError(t, err, "app/overlay/kustomization.yaml", 0, 0, "point the app path")
}

func TestLoadKubePlainSymlinkEscape(t *testing.T) {
	root, outside := kubeCheckout(t, map[string]string{
		"checkout/app/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
		"outside/secret.yaml":  "apiVersion: v1\nkind: Secret\nmetadata: {name: stolen}\n",
	})
	symlink(t, filepath.Join(outside, "secret.yaml"), filepath.Join(root, "app", "leak.yaml"))
	err := loadKubeErr(t, KubeOptions{Root: root, Path: "app"})
	wantEscape(t, err, "app/leak.yaml")

	// A symlinked directory leaving the checkout is refused the same way.
	root2, outside2 := kubeCheckout(t, map[string]string{"outside/secret.yaml": "kind: x"})
	symlink(t, outside2, filepath.Join(root2, "app", "dir"))
	wantEscape(t, loadKubeErr(t, KubeOptions{Root: root2, Path: "app"}), "app/dir")
}

func TestLoadKubePlainSymlinkInside(t *testing.T) {
	root, _ := kubeCheckout(t, map[string]string{
		"checkout/shared/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared}\n",
	})
	symlink(t, filepath.Join("..", "shared", "cm.yaml"), filepath.Join(root, "app", "cm.yaml"))
	objs := mustLoadKube(t, KubeOptions{Root: root, Path: "app"})
	if got := ids(objs); got != "ConfigMap /shared\n" {
		t.Errorf("objects %q", got)
	}
}

func TestLoadKubeAppPathEscape(t *testing.T) {
	root, _ := kubeCheckout(t, map[string]string{"outside/cm.yaml": "kind: x"})
	wantEscape(t, loadKubeErr(t, KubeOptions{Root: root, Path: "../outside"}), "../outside")
}

func TestLoadKubeCanceled(t *testing.T) {
	root, _ := kubeCheckout(t, map[string]string{
		"checkout/app/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
	})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := LoadKube(ctx, KubeOptions{Root: root, Path: "app"})
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}
