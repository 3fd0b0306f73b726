package manifests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sentinel is in files outside the checkout only: no loaded result may ever contain it.
const sentinel = "leaked-sentinel-7f3a"

// fuzzCheckout makes a checkout with a symlink that leads out of it, and files outside it
// holding the sentinel, and returns the checkout's path.
func fuzzCheckout(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "checkout")
	for name, content := range map[string]string{
		"outside.env":           "SECRET=" + sentinel + "\n",
		"outside.yaml":          "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: leak}\ndata: {v: " + sentinel + "}\n",
		"checkout/data/cfg.txt": "inside\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"link.env": "../outside.env", "link.yaml": "../outside.yaml", "linkdir": ".."} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func writeIn(t *testing.T, root, name, content string) {
	t.Helper()
	p := filepath.Join(root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// FuzzLoadCompose feeds arbitrary compose files and .env files to the compose loader in a
// checkout with a way out (a symlink to the parent): it must never panic, never hang, and
// never return anything read from outside the checkout.
func FuzzLoadCompose(f *testing.F) {
	f.Add("services:\n  web:\n    image: nginx\n    env_file: link.env\n", "")
	f.Add("services:\n  web:\n    image: nginx\n    env_file: ../outside.env\n", "")
	f.Add("services:\n  web:\n    image: ${IMG}\n    configs: [c]\nconfigs:\n  c: {file: linkdir/outside.env}\n", "IMG=busybox\n")
	f.Add("services:\n  web:\n    image: x\n    volumes: ['./data:/data', 'linkdir:/up']\n", "")
	f.Add("services:\n  a: {image: x, extends: {file: link.yaml, service: b}}\n", "")
	f.Add("services:\n  a: {image: x, secrets: [s]}\nsecrets:\n  s: {file: /etc/passwd}\n", "")
	f.Add("include: [../outside.yaml]\nservices: {}\n", "")
	f.Add("services:\n  a:\n    build: {context: linkdir}\n    image: x\n", "")
	f.Add("x-a: &a {image: x}\nservices:\n  a: *a\n  b: {<<: *a, depends_on: [a]}\n", "COMPOSE_PROFILES=p\n")
	f.Fuzz(func(t *testing.T, compose, env string) {
		root := fuzzCheckout(t)
		writeIn(t, root, "compose.yaml", compose)
		writeIn(t, root, ".env", env)
		c, err := LoadCompose(t.Context(), ComposeOptions{Root: root, Path: ".", Project: "fz"})
		if err != nil {
			if strings.Contains(err.Error(), sentinel) {
				t.Fatalf("an error quotes a file outside the checkout: %v", err)
			}
			return
		}
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("marshal the loaded project: %v", err)
		}
		if strings.Contains(string(out), sentinel) {
			t.Fatalf("the loaded project holds content from outside the checkout:\n%s", out)
		}
	})
}

// FuzzLoadKube feeds arbitrary manifests and kustomizations to the Kubernetes loader in a
// checkout with a way out: no panic, and nothing read from outside the checkout.
func FuzzLoadKube(f *testing.F) {
	f.Add("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n", "")
	f.Add("apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n", "")
	f.Add("---\n---\n{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"s\"},\"stringData\":{\"p\":\"x\"}}\n", "")
	f.Add("", "resources: [m.yaml, ../../outside.yaml]\n")
	f.Add("", "resources: [m.yaml, ../link.yaml]\n")
	f.Add("", "resources: [../linkdir/outside.yaml]\n")
	f.Add("", "configMapGenerator:\n- name: g\n  envs: [../link.env]\n")
	f.Add("", "resources: [https://example.invalid/x.yaml]\n")
	f.Add("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: n}\n", "namespace: other\nresources: [m.yaml]\npatches:\n- {path: m.yaml}\n")
	f.Fuzz(func(t *testing.T, manifest, kustomization string) {
		root := fuzzCheckout(t)
		writeIn(t, root, "app/m.yaml", manifest)
		if kustomization != "" {
			writeIn(t, root, "app/kustomization.yaml", kustomization)
		}
		objs, err := LoadKube(t.Context(), KubeOptions{Root: root, Path: "app"})
		if err != nil {
			if strings.Contains(err.Error(), sentinel) {
				t.Fatalf("an error quotes a file outside the checkout: %v", err)
			}
			return
		}
		for _, o := range objs {
			out, err := json.Marshal(o.Object)
			if err != nil {
				t.Fatalf("marshal %s: %v", o.GetName(), err)
			}
			if strings.Contains(string(out), sentinel) {
				t.Fatalf("an object holds content from outside the checkout:\n%s", out)
			}
		}
	})
}
