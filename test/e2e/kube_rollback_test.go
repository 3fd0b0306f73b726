package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	kubedriver "github.com/shipwatch/shipwatch/drivers/kubernetes"
	"github.com/shipwatch/shipwatch/internal/server"
	"github.com/shipwatch/shipwatch/internal/state"
	"github.com/shipwatch/shipwatch/internal/testdaemon"
	"github.com/shipwatch/shipwatch/internal/testgit"
	"github.com/shipwatch/shipwatch/reconciler"
)

// rbToken is the API token of every daemon in this file.
const rbToken = "rollback-t0k"

// How long things may take. On test/k8s/testenv.sh's cluster a Deployment rolls out in about
// a second (kwok makes pods Ready at once); the waits allow for a loaded machine. The
// automatic rollback test waits out autoRollbackHealthTimeout once, for the revision that
// fails, so it is short; apps that never fail get a long one.
const (
	rbRollout                 = 2 * time.Minute
	rbHealthTimeout           = "2m"
	autoRollbackHealthTimeout = 20 * time.Second
)

// rbEnv is one test's cluster client, namespace and Git repository.
type rbEnv struct {
	kubeconfig string
	kc         *k8s.Clientset
	ns         string
	repo       *testgit.Repo
}

// newRBEnv connects to the test cluster and reserves a namespace of the test's own,
// deleted when the test ends.
func newRBEnv(t *testing.T) *rbEnv {
	t.Helper()
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
	return &rbEnv{kubeconfig: kubeconfig, kc: kc, ns: ns, repo: testgit.New(t)}
}

// rbRev is what one commit of the app holds: the Deployment's image, the ConfigMap's
// greeting and, for an unhealthy revision, a node selector no node matches.
type rbRev struct {
	image, greeting string
	unschedulable   bool
}

// commit commits the app's manifests for rev and returns the commit's SHA.
func (e *rbEnv) commit(t *testing.T, rev rbRev) string {
	t.Helper()
	selector := ""
	if rev.unschedulable {
		selector = "\n      nodeSelector: {shipwatch.dev/no-such-node: \"true\"}"
	}
	return e.repo.Commit(rev.greeting, map[string]string{
		"app/ns.yaml": fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", e.ns),
		"app/config.yaml": fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web-config, namespace: %s}\ndata: {greeting: %q}\n",
			e.ns, rev.greeting),
		"app/deploy.yaml": fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: %s}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:%s
      containers: [{name: web, image: %q}]
`, e.ns, selector, rev.image),
	})
}

// rbDaemon is the config of a daemon deploying the one app of a rbEnv.
type rbDaemon struct {
	app, drift, onFailure, healthTimeout string
	// stateDir is the daemon's state dir; two daemons given the same one share history.
	stateDir string
	addr     string
	// extra is top-level YAML appended verbatim (notify).
	extra string
}

// write writes the config file: the repo is polled once an hour, so commits are picked up
// through the API's refresh.
func (c rbDaemon) write(t *testing.T, e *rbEnv) string {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(rbToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := fmt.Sprintf(`stateDir: %q
listen: %q
api: {tokenFile: %q}
repos: [{name: deploy, url: %q, interval: 1h}]
apps:
  - name: %s
    repo: deploy
    path: app
    driver: kubernetes
    kubernetes: {kubeconfig: %q, namespace: %s}
    drift: %s
    onFailure: %s
    healthTimeout: %s
%s`, c.stateDir, c.addr, tokenFile, e.repo.Dir, c.app, e.kubeconfig, e.ns, c.drift, c.onFailure, c.healthTimeout, c.extra)
	p := filepath.Join(dir, "shipwatch.yaml")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// deployment reads the app's Deployment.
func (e *rbEnv) deployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	dep, err := e.kc.AppsV1().Deployments(e.ns).Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get deployment: %v", err)
	}
	return dep
}

// currentDeployment reads the app's Deployment for a poll: nil while it cannot be read.
func (e *rbEnv) currentDeployment(t *testing.T) *appsv1.Deployment {
	dep, err := e.kc.AppsV1().Deployments(e.ns).Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return dep
}

// currentGreeting reads the app's ConfigMap's greeting for a poll: "" while it cannot be read.
func (e *rbEnv) currentGreeting(t *testing.T) string {
	cm, err := e.kc.CoreV1().ConfigMaps(e.ns).Get(t.Context(), "web-config", metav1.GetOptions{})
	if err != nil {
		return ""
	}
	return cm.Data["greeting"]
}

// greeting reads the app's ConfigMap's greeting.
func (e *rbEnv) greeting(t *testing.T) string {
	t.Helper()
	cm, err := e.kc.CoreV1().ConfigMaps(e.ns).Get(t.Context(), "web-config", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get configmap: %v", err)
	}
	return cm.Data["greeting"]
}

// parentRevision is the revision the app's ApplySet parent Secret records as applied.
func (e *rbEnv) parentRevision(t *testing.T, app string) string {
	t.Helper()
	s, err := e.kc.CoreV1().Secrets(e.ns).Get(t.Context(), kubedriver.ParentName(app), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get the applyset parent: %v", err)
	}
	return s.Annotations[kubedriver.AnnotationRevision]
}

// deploymentAvailable reports whether the Deployment has rolled out completely and is Available.
func deploymentAvailable(dep *appsv1.Deployment) bool {
	want := deploymentReplicas(dep)
	st := dep.Status
	if st.ObservedGeneration < dep.Generation || st.UpdatedReplicas != want || st.AvailableReplicas != want || st.Replicas != want {
		return false
	}
	for _, c := range dep.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// deploymentReplicas is the Deployment's desired replica count (1 when unset, as the API defaults it).
func deploymentReplicas(dep *appsv1.Deployment) int32 {
	if dep.Spec.Replicas == nil {
		return 1
	}
	return *dep.Spec.Replicas
}

// rbWaitDeployed waits until the daemon reports rev applied, synced and healthy, unpinned,
// and the cluster runs it, rolled out and Available.
func rbWaitDeployed(t *testing.T, d *testdaemon.Daemon, e *rbEnv, app, sha string, rev rbRev) {
	t.Helper()
	var st reconciler.Status
	var dep *appsv1.Deployment
	defer func() { // runs when the poll gives up, too
		if t.Failed() && dep != nil {
			t.Logf("last seen: applied %s sync %s health %s reason %q pin %+v error %+v; deployment status %+v",
				st.AppliedRevision, st.Sync, st.Health, st.Reason, st.Pin, st.LastError, dep.Status)
		}
	}()
	eventually(t, rbRollout, fmt.Sprintf("%s at %s: image %s, greeting %q, synced, healthy", app, rbShort(sha), rev.image, rev.greeting), func() bool {
		st, dep = d.Status(t, app), e.currentDeployment(t)
		if dep == nil || st.AppliedRevision != sha || st.Sync != reconciler.SyncSynced || st.Health != "Healthy" || st.Pin != nil || st.Operation != nil {
			return false
		}
		return dep.Spec.Template.Spec.Containers[0].Image == rev.image && deploymentAvailable(dep) && e.currentGreeting(t) == rev.greeting
	})
	if got := e.parentRevision(t, app); got != sha {
		t.Errorf("applyset parent records revision %q, want %s", got, sha)
	}
}

// rbAssertRunning fails the test unless the cluster holds rev's Deployment image and greeting.
func rbAssertRunning(t *testing.T, e *rbEnv, rev rbRev, when string) {
	t.Helper()
	dep := e.deployment(t)
	if img := dep.Spec.Template.Spec.Containers[0].Image; img != rev.image {
		t.Errorf("%s: deployment image %s, want %s", when, img, rev.image)
	}
	if g := e.greeting(t); g != rev.greeting {
		t.Errorf("%s: configmap greeting %q, want %q", when, g, rev.greeting)
	}
}

// rbPost calls a mutating endpoint with the token and decodes its SyncResponse.
func rbPost(t *testing.T, d *testdaemon.Daemon, path string) (int, server.SyncResponse) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+d.Addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+rbToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out server.SyncResponse
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("POST %s = %d, body not a SyncResponse: %v\n%s", path, resp.StatusCode, err, body)
	}
	return resp.StatusCode, out
}

// rbRefresh queues a pass of app.
func rbRefresh(t *testing.T, d *testdaemon.Daemon, app string) {
	t.Helper()
	if code := d.Post(t, "/api/v1/apps/"+app+"/refresh", rbToken); code != http.StatusAccepted {
		t.Fatalf("refresh %s = %d", app, code)
	}
}

// rbSettledAt refreshes app until a pass has resolved head, then waits for a pass that
// finished after that was seen, so that the decision of a pass that knew head has been
// carried out, and returns the status then.
func rbSettledAt(t *testing.T, d *testdaemon.Daemon, app, head string) reconciler.Status {
	t.Helper()
	rbRefresh(t, d, app)
	eventually(t, 60*time.Second, "a pass resolved "+rbShort(head), func() bool { return d.Status(t, app).DesiredRevision == head })
	seen := time.Now()
	rbRefresh(t, d, app)
	var st reconciler.Status
	eventually(t, 120*time.Second, "a pass at "+rbShort(head)+" finished", func() bool {
		st = d.Status(t, app)
		return st.LastReconcile.After(seen) && st.Operation == nil
	})
	return st
}

// rbHistory reads the app's history, newest first.
func rbHistory(t *testing.T, d *testdaemon.Daemon, app string) []state.Entry {
	t.Helper()
	var h server.HistoryResponse
	if err := json.Unmarshal(d.Get(t, "/api/v1/apps/"+app+"/history"), &h); err != nil {
		t.Fatalf("decode history: %v", err)
	}
	return h.Entries
}

func rbShort(rev string) string { return rev[:12] }

var (
	rbV1 = rbRev{image: "example.invalid/web:v1", greeting: "one"}
	rbV2 = rbRev{image: "example.invalid/web:v2", greeting: "two"}
	rbV3 = rbRev{image: "example.invalid/web:v3", greeting: "three"}
	rbV4 = rbRev{image: "example.invalid/web:v4", greeting: "four"}
)

// TestKubeRollbackPinsAcrossRestart rolls a Kubernetes app back through the API, keeps it
// pinned while commits arrive and across a daemon restart, and follows the ref again after
// unpin.
func TestKubeRollbackPinsAcrossRestart(t *testing.T) {
	e := newRBEnv(t)
	const app = "rb"
	cfg := rbDaemon{app: app, drift: "heal", onFailure: "none", healthTimeout: rbHealthTimeout,
		stateDir: filepath.Join(t.TempDir(), "state"), addr: testdaemon.FreeAddr(t)}
	cfgFile := cfg.write(t, e)
	c1 := e.commit(t, rbV1)
	d := startDaemon(t, cfgFile, cfg.addr)
	rbWaitDeployed(t, d, e, app, c1, rbV1)
	c2 := e.commit(t, rbV2)
	rbRefresh(t, d, app)
	rbWaitDeployed(t, d, e, app, c2, rbV2)

	code, out := rbPost(t, d, "/api/v1/apps/"+app+"/rollback")
	if code != http.StatusOK || out.Error != "" {
		t.Fatalf("rollback = %d %q", code, out.Error)
	}
	rbAssertPinned(t, out.Status, c1, "the rollback's answer")
	if out.Status.AppliedRevision != c1 || out.Status.Health != "Healthy" {
		t.Errorf("after rollback: applied %s health %s, want %s Healthy", out.Status.AppliedRevision, out.Status.Health, rbShort(c1))
	}
	rbAssertRunning(t, e, rbV1, "after rollback")
	if got := d.Metric(t, "shipwatch_rollbacks_total", map[string]string{"app": app, "reason": "manual"}); got != 1 {
		t.Errorf("shipwatch_rollbacks_total{reason=manual} = %v, want 1", got)
	}

	e.commit(t, rbV3)
	c4 := e.commit(t, rbV4)
	st := rbSettledAt(t, d, app, c4)
	rbAssertHeld(t, e, st, app, c1, rbV1, "new commits while pinned")

	if err := d.Stop(os.Interrupt, 40*time.Second); err != nil {
		t.Fatalf("stop the daemon: %v", err)
	}
	d = startDaemon(t, cfgFile, cfg.addr)
	eventually(t, 120*time.Second, "the restarted daemon's first pass", func() bool {
		st = d.Status(t, app)
		return !st.LastReconcile.IsZero() && st.Operation == nil
	})
	if st.DesiredRevision != c4 {
		t.Errorf("restarted: desired %s, want %s", st.DesiredRevision, rbShort(c4))
	}
	rbAssertHeld(t, e, st, app, c1, rbV1, "after a restart")

	code, out = rbPost(t, d, "/api/v1/apps/"+app+"/unpin")
	if code != http.StatusOK || out.Error != "" || out.Status.Pin != nil {
		t.Fatalf("unpin = %d %q, pin %+v", code, out.Error, out.Status.Pin)
	}
	rbWaitDeployed(t, d, e, app, c4, rbV4)
	if st := d.Status(t, app); st.Reason != "" {
		t.Errorf("after unpin: reason %q, want none", st.Reason)
	}
}

// rbAssertPinned checks that st shows a rollback's pin at rev.
func rbAssertPinned(t *testing.T, st reconciler.Status, rev, when string) {
	t.Helper()
	if st.Pin == nil || st.Pin.Revision != rev || st.Pin.Reason != state.PinRollback {
		t.Errorf("%s: pin %+v, want a rollback pin at %s", when, st.Pin, rbShort(rev))
	}
}

// rbAssertHeld checks that a pinned app stays at rev, OutOfSync with the pin's reason, in
// status and in the cluster.
func rbAssertHeld(t *testing.T, e *rbEnv, st reconciler.Status, app, rev string, want rbRev, when string) {
	t.Helper()
	rbAssertPinned(t, st, rev, when)
	reason := "pinned at " + rbShort(rev) + " by rollback"
	if st.Sync != reconciler.SyncOutOfSync || !strings.Contains(st.Reason, reason) {
		t.Errorf("%s: sync %s reason %q, want OutOfSync with %q", when, st.Sync, st.Reason, reason)
	}
	if st.AppliedRevision != rev || st.LastError != nil {
		t.Errorf("%s: applied %s, last error %+v; want %s and no error", when, st.AppliedRevision, st.LastError, rbShort(rev))
	}
	rbAssertRunning(t, e, want, when)
	if got := e.parentRevision(t, app); got != rev {
		t.Errorf("%s: applyset parent records revision %q, want %s", when, got, rev)
	}
}

// TestKubeAutoRollback deploys a revision that never becomes healthy to an app with
// onFailure: rollback and expects the last healthy revision back, counted, notified, in
// history and pinned until a newer commit.
func TestKubeAutoRollback(t *testing.T) {
	e := newRBEnv(t)
	rc := &receiver{t: t, secret: []byte("rollback-hmac-key")}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	dir := t.TempDir()
	urlFile, keyFile := filepath.Join(dir, "url"), filepath.Join(dir, "key")
	for f, content := range map[string]string{urlFile: srv.URL + "/hook\n", keyFile: string(rc.secret)} {
		if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const app = "autorb"
	cfg := rbDaemon{app: app, drift: "heal", onFailure: "rollback", healthTimeout: autoRollbackHealthTimeout.String(),
		stateDir: filepath.Join(dir, "state"), addr: testdaemon.FreeAddr(t),
		extra: fmt.Sprintf("notify:\n  - name: ops\n    type: webhook\n    urlFile: %s\n    secretFile: %s\n", urlFile, keyFile)}
	c1 := e.commit(t, rbV1)
	d := startDaemon(t, cfg.write(t, e), cfg.addr)
	rbWaitDeployed(t, d, e, app, c1, rbV1)

	bad := rbV2
	bad.unschedulable = true
	c2 := e.commit(t, bad)
	rbRefresh(t, d, app)
	unhealthy := map[string]string{"app": app, "reason": "unhealthy"}
	eventually(t, autoRollbackHealthTimeout+rbRollout, "an automatic rollback after the health timeout, notified", func() bool {
		st := d.Status(t, app)
		return d.Metric(t, "shipwatch_rollbacks_total", unhealthy) >= 1 && rc.got("rollback") &&
			st.Pin != nil && st.Operation == nil
	})
	eventually(t, rbRollout, "commit 1's Deployment back and Available", func() bool {
		dep := e.currentDeployment(t)
		return dep != nil && len(dep.Spec.Template.Spec.NodeSelector) == 0 && deploymentAvailable(dep)
	})
	rbAssertRunning(t, e, rbV1, "after the automatic rollback")
	if got := e.parentRevision(t, app); got != c1 {
		t.Errorf("applyset parent records revision %q, want %s", got, c1)
	}
	rbAssertAutoPinned(t, d.Status(t, app), c1, c2)
	rbAssertNotified(t, rc, app, c1, c2)
	rbAssertHistory(t, rbHistory(t, d, app), c1, c2)

	// A newer, healthy commit lifts the pin and is deployed; nothing is rolled back again.
	c3 := e.commit(t, rbV3)
	rbRefresh(t, d, app)
	rbWaitDeployed(t, d, e, app, c3, rbV3)
	if got := d.Metric(t, "shipwatch_rollbacks_total", unhealthy); got != 1 {
		t.Errorf("shipwatch_rollbacks_total{reason=unhealthy} = %v, want 1", got)
	}
}

// rbAssertAutoPinned checks the status after an automatic rollback from failed to good.
func rbAssertAutoPinned(t *testing.T, st reconciler.Status, good, failed string) {
	t.Helper()
	if p := st.Pin; p == nil || p.Revision != good || p.Reason != state.PinAutoRollback || p.FailedRevision != failed {
		t.Errorf("pin %+v, want auto-rollback at %s after %s", st.Pin, rbShort(good), rbShort(failed))
	}
	want := fmt.Sprintf("pinned at %s by auto-rollback after %s failed", rbShort(good), rbShort(failed))
	if st.Sync != reconciler.SyncOutOfSync || !strings.Contains(st.Reason, want) || st.AppliedRevision != good {
		t.Errorf("sync %s reason %q applied %s; want OutOfSync, %q, %s", st.Sync, st.Reason, st.AppliedRevision, want, rbShort(good))
	}
}

// rbAssertNotified checks that the receiver got a rollback event naming the app and
// the revision rolled back to.
func rbAssertNotified(t *testing.T, rc *receiver, app, good, failed string) {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.bad > 0 {
		t.Errorf("%d deliveries had a wrong signature", rc.bad)
	}
	for _, body := range rc.bodies {
		var ev struct{ Type, App, Revision, Message string }
		if json.Unmarshal([]byte(body), &ev) == nil && ev.Type == "rollback" {
			if ev.App != app || ev.Revision != good || !strings.Contains(ev.Message, rbShort(failed)) {
				t.Errorf("rollback event %s, want app %s, revision %s, a message naming %s", body, app, good, rbShort(failed))
			}
			return
		}
	}
	t.Errorf("no rollback event among %d deliveries", len(rc.bodies))
}

// rbAssertHistory checks that history holds the failed attempt of failed and, after
// it, the rollback to good.
func rbAssertHistory(t *testing.T, entries []state.Entry, good, failed string) {
	t.Helper()
	failedAt := slices.IndexFunc(entries, func(e state.Entry) bool {
		return e.Revision == failed && e.Result == state.ResultFailed && e.Stage == string(reconciler.StageHealth)
	})
	rollbackAt := slices.IndexFunc(entries, func(e state.Entry) bool {
		return e.Trigger == state.TriggerRollback && e.Revision == good && e.Result == state.ResultSucceeded
	})
	if failedAt < 0 || rollbackAt < 0 || rollbackAt > failedAt {
		t.Fatalf("history (newest first) lacks a failed HealthFailed entry for %s followed by a succeeded rollback to %s:\n%+v",
			rbShort(failed), rbShort(good), entries)
	}
	rb := entries[rollbackAt]
	if rb.Actor != state.ActorDaemon || rb.RevisionBefore != failed || rb.Health != "Healthy" {
		t.Errorf("rollback entry: actor %s, before %s, health %s; want daemon, %s, Healthy", rb.Actor, rb.RevisionBefore, rb.Health, rbShort(failed))
	}
}

// TestKubeNewLeaderDecidesFromCluster starts a second daemon with an empty state dir on an
// app a first one deployed and someone then changed by hand: the ApplySet's revision tells
// it the commit already runs, so under drift: alert it reports the change and leaves it.
func TestKubeNewLeaderDecidesFromCluster(t *testing.T) {
	e := newRBEnv(t)
	const app = "leader"
	cfg := rbDaemon{app: app, drift: "alert", onFailure: "none", healthTimeout: rbHealthTimeout,
		stateDir: filepath.Join(t.TempDir(), "state"), addr: testdaemon.FreeAddr(t)}
	c1 := e.commit(t, rbV1)
	first := startDaemon(t, cfg.write(t, e), cfg.addr)
	rbWaitDeployed(t, first, e, app, c1, rbV1)
	if err := first.Stop(os.Interrupt, 40*time.Second); err != nil {
		t.Fatalf("stop the first daemon: %v", err)
	}

	ctx := t.Context()
	if _, err := e.kc.AppsV1().Deployments(e.ns).Patch(ctx, "web", types.MergePatchType,
		[]byte(`{"spec":{"replicas":5}}`), metav1.PatchOptions{FieldManager: "kubectl"}, "scale"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.kc.CoreV1().ConfigMaps(e.ns).Patch(ctx, "web-config", types.MergePatchType,
		[]byte(`{"data":{"greeting":"by hand"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}

	cfg.stateDir = filepath.Join(t.TempDir(), "other-state")
	cfg.addr = testdaemon.FreeAddr(t)
	d := startDaemon(t, cfg.write(t, e), cfg.addr)
	var st reconciler.Status
	eventually(t, 120*time.Second, "the new daemon's first pass", func() bool {
		st = d.Status(t, app)
		return !st.LastReconcile.IsZero() && st.Operation == nil
	})
	rbAssertDrift(t, st, c1)
	// One more pass, asked for: still only reported.
	st = rbSettledAt(t, d, app, c1)
	rbAssertDrift(t, st, c1)

	if n := deploymentReplicas(e.deployment(t)); n != 5 {
		t.Errorf("the new daemon healed the scale: replicas %d, want 5", n)
	}
	if g := e.greeting(t); g != "by hand" {
		t.Errorf("the new daemon healed the configmap: greeting %q, want %q", g, "by hand")
	}
	if got := e.parentRevision(t, app); got != c1 {
		t.Errorf("applyset parent records revision %q, want %s", got, c1)
	}
	if h := rbHistory(t, d, app); len(h) != 0 {
		t.Errorf("the new daemon recorded sync attempts, want none: %+v", h)
	}
}

// rbAssertDrift checks that st reports the hand-made changes to the Deployment and
// the ConfigMap as drift at rev, OutOfSync.
func rbAssertDrift(t *testing.T, st reconciler.Status, rev string) {
	t.Helper()
	var kinds, reasons []string
	for _, c := range st.Drift {
		kinds = append(kinds, c.Ref.Kind)
		reasons = append(reasons, c.Reason)
		if c.Ref.Kind == "Deployment" && !strings.Contains(c.Reason, "kubectl changed .spec.replicas") {
			t.Errorf("deployment drift reason %q does not name kubectl and .spec.replicas", c.Reason)
		}
	}
	slices.Sort(kinds)
	if !slices.Equal(kinds, []string{"ConfigMap", "Deployment"}) || st.Sync != reconciler.SyncOutOfSync {
		t.Errorf("drift %v sync %s reason %q, want ConfigMap and Deployment, OutOfSync (drift reasons %q, applied %q, last changes %d)",
			kinds, st.Sync, st.Reason, reasons, st.AppliedRevision, len(st.LastChanges))
	}
	if st.DesiredRevision != rev || st.LastError != nil {
		t.Errorf("desired %s last error %+v, want %s and no error", st.DesiredRevision, st.LastError, rbShort(rev))
	}
}
