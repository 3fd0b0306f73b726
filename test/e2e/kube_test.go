package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
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

	repo := newRepo(t, kubeManifests(ns, "hello", true))
	addr := freeAddr(t)
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
`, filepath.Join(dir, "state"), addr, tokenFile, repo.dir, kubeconfig, ns)
	if err := os.WriteFile(cfgFile, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfgFile, addr)
	status := func() reconciler.Status {
		var st reconciler.Status
		resp, err := http.Get("http://" + addr + "/api/v1/apps/kapp")
		if err == nil {
			defer resp.Body.Close()
			_ = json.NewDecoder(resp.Body).Decode(&st)
		}
		return st
	}
	ctx := t.Context()
	eventually(t, 120*time.Second, "first apply synced and healthy", func() bool {
		st := status()
		return st.Sync == reconciler.SyncSynced && st.Health == "Healthy"
	})
	if _, err := kc.CoreV1().Secrets(ns).Get(ctx, "db", metav1.GetOptions{}); err != nil {
		t.Fatalf("secret not applied: %v", err)
	}

	repo.commit("greet", kubeManifests(ns, "bonjour", true))
	if code := d.post("/api/v1/apps/kapp/refresh", "t0k"); code != http.StatusAccepted {
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
			d.metric("shipwatch_drift_detected_total", map[string]string{"app": "kapp", "policy": "heal"}) >= 1
	})

	repo.commit("drop secret", kubeManifests(ns, "bonjour", false))
	if code := d.post("/api/v1/apps/kapp/refresh", "t0k"); code != http.StatusAccepted {
		t.Fatalf("refresh = %d", code)
	}
	eventually(t, 60*time.Second, "secret pruned", func() bool {
		_, err := kc.CoreV1().Secrets(ns).Get(ctx, "db", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})

	// The secret's value is nowhere a user or a scraper can see.
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metricsText, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for where, text := range map[string]string{"logs": d.logs.String(), "metrics": string(metricsText), "status": fmt.Sprint(status())} {
		if strings.Contains(text, kubeSecretValue) {
			t.Errorf("the Secret's value appears in the %s", where)
		}
	}
}
