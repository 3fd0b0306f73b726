package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/internal/testdaemon"
	"github.com/shipwatch/shipwatch/reconciler"
)

// kubeCluster returns a kubeconfig for a real API server: $SHIPWATCH_KUBECONFIG when set,
// else a cluster started with test/k8s/testenv.sh for this test.
func kubeCluster(t *testing.T) string {
	t.Helper()
	if kc := os.Getenv("SHIPWATCH_KUBECONFIG"); kc != "" {
		return kc
	}
	dir := t.TempDir()
	script, err := filepath.Abs("../k8s/testenv.sh")
	if err != nil {
		t.Fatal(err)
	}
	start := exec.CommandContext(t.Context(), "bash", script, "start", dir)
	if out, err := start.CombinedOutput(); err != nil {
		t.Fatalf("start the test cluster (run `test/k8s/testenv.sh build` first): %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("bash", script, "stop", dir).Run() })
	return filepath.Join(dir, "kubeconfig")
}

const kubeSecretValue = "s3cr3t-db-password-e2e"

func kubeManifests(ns, greeting string, withSecret bool) map[string]string {
	files := map[string]string{
		"app/config.yaml": fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: web-config, namespace: %s}
data: {greeting: %q}
`, ns, greeting),
		"app/deploy.yaml": fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: %[1]s}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: example.invalid/web:1}]
`, ns),
		"app/ns.yaml": fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", ns),
	}
	if withSecret {
		files["app/secret.yaml"] = fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: db, namespace: %s}
stringData: {password: %q}
`, ns, kubeSecretValue)
	} else {
		files["app/secret.yaml"] = ""
	}
	return files
}

func TestKubernetesAppThroughTheDaemon(t *testing.T) {
	kubeconfig := kubeCluster(t)
	restCfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	kc := k8s.NewForConfigOrDie(restCfg)
	ns := uniqueProject(t) // a fresh name; the Docker cleanup it registers finds nothing
	t.Cleanup(func() {
		_ = kc.CoreV1().Namespaces().Delete(context.WithoutCancel(t.Context()), ns, metav1.DeleteOptions{})
	})

	// A second app, under drift: alert, in a namespace of its own.
	nsAlert := ns + "-alert"
	t.Cleanup(func() {
		_ = kc.CoreV1().Namespaces().Delete(context.WithoutCancel(t.Context()), nsAlert, metav1.DeleteOptions{})
	})
	files := kubeManifests(ns, "hello", true)
	for name, content := range kubeManifests(nsAlert, "hello", false) {
		files["alert/"+strings.TrimPrefix(name, "app/")] = content
	}
	repo := newRepo(t, files)
	addr := testdaemon.FreeAddr(t)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "shipwatch.yaml")
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("t0k"), 0o600); err != nil {
		t.Fatal(err)
	}
	// An hour-long poll: commits are picked up through the API's refresh, and the scale
	// below can only be seen in time through the driver's watches.
	doc := fmt.Sprintf(`stateDir: %s
listen: %q
api: {tokenFile: %s}
repos: [{name: deploy, url: %s, interval: 1h}]
apps:
  - name: kapp
    repo: deploy
    path: app
    driver: kubernetes
    kubernetes: {kubeconfig: %s, namespace: %s}
    drift: heal
    healthTimeout: 90s
  - name: kalert
    repo: deploy
    path: alert
    driver: kubernetes
    kubernetes: {kubeconfig: %[5]s, namespace: %[7]s}
    drift: alert
    healthTimeout: 90s
`, filepath.Join(dir, "state"), addr, tokenFile, repo.Dir, kubeconfig, ns, nsAlert)
	if err := os.WriteFile(cfgFile, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfgFile, addr)
	status := func() reconciler.Status { return d.Status(t, "kapp") }
	ctx := t.Context()
	eventually(t, 120*time.Second, "first apply synced and healthy", func() bool {
		st := status()
		return st.Sync == reconciler.SyncSynced && st.Health == "Healthy"
	})
	if _, err := kc.CoreV1().Secrets(ns).Get(ctx, "db", metav1.GetOptions{}); err != nil {
		t.Fatalf("secret not applied: %v", err)
	}

	repo.Commit("greet", kubeManifests(ns, "bonjour", true))
	if code := d.Post(t, "/api/v1/apps/kapp/refresh", "t0k"); code != http.StatusAccepted {
		t.Fatalf("refresh = %d", code)
	}
	eventually(t, 60*time.Second, "configmap updated", func() bool {
		cm, err := kc.CoreV1().ConfigMaps(ns).Get(ctx, "web-config", metav1.GetOptions{})
		return err == nil && cm.Data["greeting"] == "bonjour"
	})

	// kubectl scale by another field manager: drift, healed back to 2 replicas.
	_, err = kc.AppsV1().Deployments(ns).Patch(ctx, "web", types.MergePatchType,
		[]byte(`{"spec":{"replicas":5}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "scale seen through the watch and healed", func() bool {
		dep, err := kc.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		return err == nil && dep.Spec.Replicas != nil && *dep.Spec.Replicas == 2 &&
			d.Metric(t, "shipwatch_drift_detected_total", map[string]string{"app": "kapp", "policy": "heal"}) >= 1
	})

	testKubeDriftAlert(t, d, kc, nsAlert)

	repo.Commit("drop secret", kubeManifests(ns, "bonjour", false))
	if code := d.Post(t, "/api/v1/apps/kapp/refresh", "t0k"); code != http.StatusAccepted {
		t.Fatalf("refresh = %d", code)
	}
	eventually(t, 60*time.Second, "secret pruned", func() bool {
		_, err := kc.CoreV1().Secrets(ns).Get(ctx, "db", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})

	// The secret's value is nowhere a user or a scraper can see.
	for where, text := range map[string]string{"logs": d.Logs(t), "metrics": string(d.Get(t, "/metrics")), "status": fmt.Sprint(status())} {
		if strings.Contains(text, kubeSecretValue) {
			t.Errorf("the Secret's value appears in the %s", where)
		}
	}
}

// testKubeDriftAlert scales the drift: alert app's Deployment the way `kubectl scale` does
// (field manager "kubectl", through the scale subresource) and expects the drift reported
// within seconds, naming the manager and the field, and left in place.
func testKubeDriftAlert(t *testing.T, d *testdaemon.Daemon, kc *k8s.Clientset, ns string) {
	ctx := t.Context()
	eventually(t, 120*time.Second, "alert app synced and healthy", func() bool {
		st := d.Status(t, "kalert")
		return st.Sync == reconciler.SyncSynced && st.Health == "Healthy"
	})
	_, err := kc.AppsV1().Deployments(ns).Patch(ctx, "web", types.MergePatchType,
		[]byte(`{"spec":{"replicas":4}}`), metav1.PatchOptions{FieldManager: "kubectl"}, "scale")
	if err != nil {
		t.Fatal(err)
	}
	const want = "kubectl changed .spec.replicas"
	eventually(t, 30*time.Second, "scale reported as drift, naming manager and field", func() bool {
		found := false
		for _, c := range d.Status(t, "kalert").Drift {
			found = found || (c.Ref.Kind == "Deployment" && strings.Contains(c.Reason, want))
		}
		return found &&
			d.Metric(t, "shipwatch_app_drifted_resources", map[string]string{"app": "kalert"}) >= 1 &&
			d.Metric(t, "shipwatch_drift_detected_total", map[string]string{"app": "kalert", "policy": "alert"}) >= 1
	})
	dep, err := kc.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 4 {
		t.Errorf("drift: alert changed the replicas back: %v", dep.Spec.Replicas)
	}

	// kubectl delete of a managed object: reported as missing, not recreated.
	if err := kc.CoreV1().ConfigMaps(ns).Delete(ctx, "web-config", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "delete reported as drift", func() bool {
		for _, c := range d.Status(t, "kalert").Drift {
			if c.Ref.Kind == "ConfigMap" && c.Ref.Name == "web-config" && c.Action == drivers.ActionCreate {
				return d.Metric(t, "shipwatch_app_drifted_resources", map[string]string{"app": "kalert"}) >= 2
			}
		}
		return false
	})
	if _, err := kc.CoreV1().ConfigMaps(ns).Get(ctx, "web-config", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("drift: alert recreated the deleted ConfigMap (err %v)", err)
	}
}
