package manifests

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/shipwatch/shipwatch/internal/testenv"
)

const baseDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: web:1
        envFrom:
        - configMapRef:
            name: web-config
`

func findObj(t *testing.T, objs []*unstructured.Unstructured, kind, namePrefix string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && strings.HasPrefix(o.GetName(), namePrefix) {
			return o
		}
	}
	t.Fatalf("no %s %s* in:\n%s", kind, namePrefix, ids(objs))
	return nil
}

func TestLoadKubeKustomizeOverlay(t *testing.T) {
	root, _ := kubeCheckout(t, map[string]string{
		"checkout/base/kustomization.yaml": `resources:
- deployment.yaml
- service.yaml
configMapGenerator:
- name: web-config
  literals: [MODE=prod]
  files: [app.properties]
`,
		"checkout/base/deployment.yaml": baseDeployment,
		"checkout/base/service.yaml":    "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n",
		"checkout/base/app.properties":  "color=blue\n",
		"checkout/apps/web/kustomization.yml": `namespace: shop
resources:
- ../../base
- namespace.yaml
patches:
- path: replicas.yaml
configMapGenerator:
- name: web-config
  behavior: merge
  literals: [LEVEL=debug]
`,
		"checkout/apps/web/namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n",
		"checkout/apps/web/replicas.yaml":  "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n",
	})
	objs := mustLoadKube(t, KubeOptions{Root: root, Path: "apps/web"})
	if len(objs) != 4 {
		t.Fatalf("got %d objects, want 4:\n%s", len(objs), ids(objs))
	}
	// kustomize's legacy order: Namespace, ConfigMap, Service, Deployment.
	for i, kind := range []string{"Namespace", "ConfigMap", "Service", "Deployment"} {
		if objs[i].GetKind() != kind {
			t.Errorf("object %d is a %s, want %s (order:\n%s)", i, objs[i].GetKind(), kind, ids(objs))
		}
	}
	cm := findObj(t, objs, "ConfigMap", "web-config-")
	data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
	if data["MODE"] != "prod" || data["LEVEL"] != "debug" || data["app.properties"] != "color=blue\n" {
		t.Errorf("merged config map data = %v", data)
	}
	dep := findObj(t, objs, "Deployment", "web")
	if dep.GetNamespace() != "shop" {
		t.Errorf("deployment namespace %q, want shop", dep.GetNamespace())
	}
	if r, _, _ := unstructured.NestedInt64(dep.Object, "spec", "replicas"); r != 3 {
		t.Errorf("replicas = %d, want 3 from the patch", r)
	}
	containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	envFrom, _, _ := unstructured.NestedSlice(containers[0].(map[string]any), "envFrom")
	name, _, _ := unstructured.NestedString(envFrom[0].(map[string]any), "configMapRef", "name")
	if name != cm.GetName() {
		t.Errorf("deployment refers to config map %q, want the generated %q", name, cm.GetName())
	}
}

func TestLoadKubeKustomizeEscapes(t *testing.T) {
	outsideKust := map[string]string{
		"outside/kustomization.yaml": "resources: [secret.yaml]\n",
		"outside/secret.yaml":        "apiVersion: v1\nkind: Secret\nmetadata: {name: stolen}\n",
		"outside/secret.txt":         "s3cr3t\n",
		"checkout/app/cm.yaml":       "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
		"checkout/app/patch.yaml":    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {x: y}\n",
	}
	for _, tc := range []struct {
		name, kustomization string
		links               map[string]string // link in checkout -> target relative to outside
		ref                 string
	}{
		{name: "parentBase", kustomization: "resources: [cm.yaml, ../../outside]\n", ref: "../outside"},
		{name: "absoluteFile", kustomization: "resources: [cm.yaml]\nconfigMapGenerator:\n- name: x\n  files: [OUTSIDE/secret.txt]\n", ref: "../outside/secret.txt"},
		{name: "generatorFile", kustomization: "resources: [cm.yaml]\nsecretGenerator:\n- name: x\n  files: [key=../../outside/secret.txt]\n", ref: "../outside/secret.txt"},
		{name: "symlinkFile", kustomization: "resources: [cm.yaml, leak.yaml]\n",
			links: map[string]string{"app/leak.yaml": "secret.yaml"}, ref: "app/leak.yaml"},
		{name: "symlinkBase", kustomization: "resources: [cm.yaml, base]\n",
			links: map[string]string{"app/base": "."}, ref: "app/base"},
		{name: "symlinkPatch", kustomization: "resources: [cm.yaml]\npatches:\n- path: p.yaml\n",
			links: map[string]string{"app/p.yaml": "secret.yaml"}, ref: "app/p.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{}
			for k, v := range outsideKust {
				files[k] = v
			}
			root, outside := kubeCheckout(t, files)
			k := strings.ReplaceAll(tc.kustomization, "OUTSIDE", outside)
			if err := os.WriteFile(filepath.Join(root, "app", "kustomization.yaml"), []byte(k), 0o644); err != nil {
				t.Fatal(err)
			}
			for link, target := range tc.links {
				symlink(t, filepath.Join(outside, target), filepath.Join(root, link))
			}
			err := loadKubeErr(t, KubeOptions{Root: root, Path: "app"})
			wantEscape(t, err, tc.ref)
			if !strings.Contains(err.Error(), "app/kustomization.yaml") {
				t.Errorf("error %q does not name the kustomization file", err)
			}
		})
	}
}

// TestKubeFSConfines checks the filesystem kustomize reads through on its own, since the
// scan before a build already refuses what the tests above try.
func TestKubeFSConfines(t *testing.T) {
	root, outside := kubeCheckout(t, map[string]string{
		"checkout/app/cm.yaml": "kind: ConfigMap\n",
		"outside/secret.yaml":  "kind: Secret\n",
	})
	symlink(t, filepath.Join(outside, "secret.yaml"), filepath.Join(root, "app", "leak.yaml"))
	c, err := newConfiner(root)
	if err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f := newKubeFS(c, r, true)

	if b, err := f.ReadFile(filepath.Join(root, "app", "cm.yaml")); err != nil || string(b) != "kind: ConfigMap\n" {
		t.Errorf("ReadFile inside = %q, %v", b, err)
	}
	if _, err := f.ReadFile(filepath.Join(root, "app", "..", "..", "outside", "secret.yaml")); err == nil {
		t.Error("ReadFile of a ../ path outside succeeded")
	} else {
		wantEscape(t, err, "../outside/secret.yaml")
	}
	if _, err := f.Open(filepath.Join(root, "app", "leak.yaml")); err == nil {
		t.Error("Open through a symlink leaving the checkout succeeded")
	}
	if f.Exists(outside) || f.IsDir(outside) {
		t.Error("a directory outside the checkout is visible")
	}
	if _, _, err := f.CleanedAbs(filepath.Join(root, "app", "leak.yaml")); err == nil {
		t.Error("CleanedAbs of an escaping symlink succeeded")
	}
	if f.escaped() == nil {
		t.Error("escape not recorded")
	}
	d, name, err := f.CleanedAbs(filepath.Join(root, "app", "cm.yaml"))
	if err != nil || name != "cm.yaml" || !strings.HasSuffix(string(d), filepath.Join("checkout", "app")) {
		t.Errorf("CleanedAbs = %q %q %v", d, name, err)
	}
	if names, err := f.ReadDir(filepath.Join(root, "app")); err != nil || strings.Join(names, ",") != "cm.yaml,leak.yaml" {
		t.Errorf("ReadDir = %v, %v", names, err)
	}
	for name, err := range map[string]error{
		"WriteFile": f.WriteFile(filepath.Join(root, "app", "x"), nil),
		"MkdirAll":  f.MkdirAll(filepath.Join(root, "app", "d")),
		"RemoveAll": f.RemoveAll(filepath.Join(root, "app")),
	} {
		if !errors.Is(err, errReadOnly) {
			t.Errorf("%s: err = %v, want errReadOnly", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "app", "cm.yaml")); err != nil {
		t.Errorf("checkout damaged: %v", err)
	}
	// A temp directory that is not a kustomize clone stays out of reach with remote bases on.
	if _, err := f.ReadFile(filepath.Join(outside, "secret.yaml")); err == nil {
		t.Error("ReadFile in the temp dir outside a clone succeeded")
	}
}

func TestLoadKubeKustomizeRemoteRefused(t *testing.T) {
	for _, tc := range []struct {
		name, file, resource, hidden string
	}{
		{name: "github", file: "checkout/app/kustomization.yaml", resource: "github.com/org/repo//deploy?ref=v1"},
		{name: "gitSSH", file: "checkout/app/kustomization.yaml", resource: "git@gitlab.com:org/repo.git//deploy"},
		{name: "httpsCredentials", file: "checkout/app/kustomization.yaml", resource: "https://bot:tok3n@example.com/deploy.yaml", hidden: "tok3n"},
		{name: "inBase", file: "checkout/base/kustomization.yaml", resource: "https://example.com/org/repo.git//x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{
				"checkout/app/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
				tc.file:                "resources:\n- cm.yaml\n- " + tc.resource + "\n",
			}
			if tc.file != "checkout/app/kustomization.yaml" {
				files["checkout/app/kustomization.yaml"] = "resources: [cm.yaml, ../base]\n"
				files["checkout/base/cm.yaml"] = files["checkout/app/cm.yaml"]
				files[tc.file] = "resources:\n- " + tc.resource + "\n"
			}
			root, _ := kubeCheckout(t, files)
			err := loadKubeErr(t, KubeOptions{Root: root, Path: "app"})
			if !errors.Is(err, ErrRemoteResource) {
				t.Errorf("err = %v, want ErrRemoteResource", err)
			}
			rel := strings.TrimPrefix(tc.file, "checkout/")
			wantKubeError(t, err, rel, 0, 0, "resources")
			if tc.hidden != "" {
				if strings.Contains(err.Error(), tc.hidden) {
					t.Errorf("error leaks URL credentials: %v", err)
				}
			} else if !strings.Contains(err.Error(), tc.resource) {
				t.Errorf("error %q does not name the resource", err)
			}
		})
	}
}

func TestLoadKubeKustomizeRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, kustomization, msg string
	}{
		{"helm", "helmCharts:\n- name: redis\n  repo: https://charts.example.com\n", "Helm chart inflation is disabled"},
		{"missingBase", "resources: [nothere]\n", `resources "nothere": no such file or directory`},
		{"baseWithoutKustomization", "resources: [empty]\n", `resources "empty": directory has no kustomization`},
		{"unknownField", "resourcez: [cm.yaml]\n", "invalid kustomization"},
		{"kustomizeError", "resources: [cm.yaml]\npatches:\n- path: patch.yaml\n", "kustomize build"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, _ := kubeCheckout(t, map[string]string{
				"checkout/app/kustomization.yaml": tc.kustomization,
				"checkout/app/cm.yaml":            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
				"checkout/app/patch.yaml":         "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: absent}\ndata: {x: y}\n",
				"checkout/app/empty/README.md":    "nothing",
			})
			err := loadKubeErr(t, KubeOptions{Root: root, Path: "app"})
			wantKubeError(t, err, "app/kustomization.yaml", 0, 0, tc.msg)
			if strings.Contains(err.Error(), root) {
				t.Errorf("error %q holds the absolute checkout path", err)
			}
		})
	}
}

// TestLoadKubeKustomizeRemoteAllowed builds a remote git base served from a local file://
// repository made with the git CLI: kustomize's cloner runs git, no network involved.
func TestLoadKubeKustomizeRemoteAllowed(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		testenv.Missing(t, "the git CLI is not installed")
	}
	root, outside := kubeCheckout(t, map[string]string{
		"outside/repo/deploy/kustomization.yaml": "resources: [cm.yaml]\n",
		"outside/repo/deploy/cm.yaml":            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: remote}\n",
		"checkout/app/cm.yaml":                   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: local}\n",
	})
	repo := filepath.Join(outside, "repo")
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "."},
		{"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "base"},
	} {
		cmd := exec.CommandContext(t.Context(), "git", append([]string{"-C", repo}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	remote := "file://" + filepath.ToSlash(repo) + "//deploy?ref=main"
	k := "resources:\n- cm.yaml\n- " + remote + "\n"
	if err := os.WriteFile(filepath.Join(root, "app", "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	err := loadKubeErr(t, KubeOptions{Root: root, Path: "app"})
	if !errors.Is(err, ErrRemoteResource) {
		t.Fatalf("default: err = %v, want ErrRemoteResource", err)
	}
	objs := mustLoadKube(t, KubeOptions{Root: root, Path: "app", AllowRemoteBases: true})
	if got := ids(objs); got != "ConfigMap /local\nConfigMap /remote\n" {
		t.Errorf("objects:\n%s", got)
	}
}

// TestLoadKubeKustomizeConcurrent builds several apps at once, as the reconciler's workers
// do; run with -race it catches shared state in kustomize.
func TestLoadKubeKustomizeConcurrent(t *testing.T) {
	root, _ := kubeCheckout(t, map[string]string{
		"checkout/app/kustomization.yaml": "namePrefix: p-\nresources: [d.yaml]\nconfigMapGenerator:\n- name: c\n  literals: [A=b]\n",
		"checkout/app/d.yaml":             baseDeployment,
	})
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			objs, err := LoadKube(t.Context(), KubeOptions{Root: root, Path: "app"})
			if err == nil && len(objs) != 2 {
				err = errors.New(ids(objs))
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestLoadKubeKustomizeErrorsHideSecrets(t *testing.T) {
	for name, gen := range map[string]string{
		"literalWithoutKey": "  literals: [hunter2-s3cr3t]\n",
		"badEnvLine":        "  envs: [secret.env]\n",
	} {
		t.Run(name, func(t *testing.T) {
			root, _ := kubeCheckout(t, map[string]string{
				"checkout/app/kustomization.yaml": "secretGenerator:\n- name: db\n" + gen,
				"checkout/app/secret.env":         "USER=app\nPASSWORD=hunter2-s3cr3t\xff\n",
			})
			err := loadKubeErr(t, KubeOptions{Root: root, Path: "app"})
			wantKubeError(t, err, "app/kustomization.yaml", 0, 0, "kustomize build")
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "104 117 110") {
				t.Errorf("error leaks the secret: %v", err)
			}
		})
	}
}
