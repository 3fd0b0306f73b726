package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/shipwatch/shipwatch/internal/server"
	"github.com/shipwatch/shipwatch/internal/testdaemon"
	"github.com/shipwatch/shipwatch/internal/testgit"
	"github.com/shipwatch/shipwatch/reconciler"
)

// The promotion test's settings. staging's gate must stay closed for as long as one CLI call
// takes after dev turns healthy, and is otherwise as short as that allows; prod's waits for an
// approval, so its healthyFor only needs to be more than nothing.
const (
	kpToken          = "promo-api-t0k"
	kpGitToken       = "promo-git-t0k"
	kpStagingGate    = 15 * time.Second
	kpProdGate       = 2 * time.Second
	kpAutoTick       = 5 * time.Second // promotion.autoTick: how often the daemon looks at gates
	kpRollout        = 2 * time.Minute
	kpImageRepo      = "registry.example/shop"
	kpPromotionsName = "shipwatch_promotions_total"
)

// kpStages are the stages in promotion order.
var kpStages = []string{"dev", "staging", "prod"}

// kpEnv is the promotion test's world: the cluster, one namespace per stage, the Git
// repository served over smart HTTP behind a token, and the daemon.
type kpEnv struct {
	kc      *k8s.Clientset
	ns      map[string]string // stage -> namespace
	repo    *testgit.Repo
	c0      string // the first commit: every stage at 1.0
	cfgFile string
	apiFile string // the API token's file, for the CLI
	listen  string
	d       *testdaemon.Daemon
}

// newKPEnv makes the namespaces, the repository (shaped like examples/promotion/kubernetes/shop,
// every stage at tag 1.0), serves it over HTTP and starts the daemon on it.
func newKPEnv(t *testing.T) *kpEnv {
	t.Helper()
	kubeconfig := kubeCluster(t)
	restCfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	e := &kpEnv{kc: k8s.NewForConfigOrDie(restCfg), ns: map[string]string{}, repo: testgit.New(t)}
	prefix := "swpromo-" + strings.ToLower(rand.Text()[:8])
	files := map[string]string{
		"shop/base/kustomization.yaml": "resources: [deployment.yaml]\n",
		"shop/base/deployment.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: {name: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec:
      containers: [{name: shop, image: shop, ports: [{containerPort: 8080}]}]
`,
	}
	for _, s := range kpStages {
		ns := prefix + "-" + s
		e.ns[s] = ns
		e.createNamespace(t, ns)
		files["shop/envs/"+s+"/kustomization.yaml"] = fmt.Sprintf("resources: [../../base]\nnamespace: %s\ncomponents: [images]\n", ns)
		files[kpImagesFile(s)] = kpImages("1.0")
	}
	e.c0 = e.repo.Commit("three stages of shop", files)
	url := testgit.StartHTTP(t, e.repo.Dir, testgit.HTTPAuth{Token: kpGitToken})
	e.writeConfig(t, kubeconfig, url)
	e.d = startDaemon(t, e.cfgFile, e.listen)
	return e
}

// createNamespace makes a stage's namespace (it holds the stage's inventory, so it exists
// before shipwatch deploys) and deletes it when the test ends.
func (e *kpEnv) createNamespace(t *testing.T, ns string) {
	t.Helper()
	obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	if _, err := e.kc.CoreV1().Namespaces().Create(t.Context(), obj, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", ns, err)
	}
	t.Cleanup(func() {
		_ = e.kc.CoreV1().Namespaces().Delete(context.WithoutCancel(t.Context()), ns, metav1.DeleteOptions{})
	})
}

func kpImagesFile(stage string) string { return "shop/envs/" + stage + "/images/kustomization.yaml" }

// kpImages is a stage's images Component, the promoted file.
func kpImages(tag string) string {
	return fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
images:
  - name: shop
    newName: %s
    newTag: %q
`, kpImageRepo, tag)
}

// writeConfig writes the daemon's config: the repo over HTTP with a token (promotions push
// with it), polled once an hour so that only refreshes and promotions move a stage.
func (e *kpEnv) writeConfig(t *testing.T, kubeconfig, url string) {
	t.Helper()
	dir := t.TempDir()
	e.apiFile = filepath.Join(dir, "api-token")
	gitFile := filepath.Join(dir, "git-token")
	for f, v := range map[string]string{e.apiFile: kpToken, gitFile: kpGitToken} {
		if err := os.WriteFile(f, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.listen = testdaemon.FreeAddr(t)
	doc := fmt.Sprintf(`stateDir: %q
listen: %q
api: {tokenFile: %q}
repos:
  - {name: deploy, url: %q, interval: 1h, auth: {tokenFile: %q}}
apps:
  - name: shop
    repo: deploy
    driver: kubernetes
    kubernetes: {kubeconfig: %q}
    healthTimeout: 2m
    environments:
      - {name: dev, path: shop/envs/dev, ref: main, kubernetes: {namespace: %s}}
      - {name: staging, path: shop/envs/staging, kubernetes: {namespace: %s},
         promoteFrom: dev, gate: {healthyFor: %s}, autoPromote: true}
      - {name: prod, path: shop/envs/prod, kubernetes: {namespace: %s},
         promoteFrom: staging, gate: {healthyFor: %s, approval: true}}
    promotion: {files: [images/kustomization.yaml], mode: push}
`, filepath.Join(dir, "state"), e.listen, e.apiFile, url, gitFile, kubeconfig,
		e.ns["dev"], e.ns["staging"], kpStagingGate, e.ns["prod"], kpProdGate)
	e.cfgFile = filepath.Join(dir, "shipwatch.yaml")
	if err := os.WriteFile(e.cfgFile, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
}

// cli runs a shipwatch verb against the daemon.
func (e *kpEnv) cli(t *testing.T, args ...string) (int, string) {
	t.Helper()
	return runCLI(t, append(args, "--config", e.cfgFile, "--token-file", e.apiFile)...)
}

// image is the image a stage's Deployment runs; "" while it cannot be read or has not
// rolled out completely and Available.
func (e *kpEnv) image(t *testing.T, stage string) string {
	dep, err := e.kc.AppsV1().Deployments(e.ns[stage]).Get(t.Context(), "shop", metav1.GetOptions{})
	if err != nil || !deploymentAvailable(dep) {
		return ""
	}
	return dep.Spec.Template.Spec.Containers[0].Image
}

// mustImage is the image a stage's Deployment is set to, rolled out or not.
func (e *kpEnv) mustImage(t *testing.T, stage string) string {
	t.Helper()
	dep, err := e.kc.AppsV1().Deployments(e.ns[stage]).Get(t.Context(), "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get %s's deployment: %v", stage, err)
	}
	return dep.Spec.Template.Spec.Containers[0].Image
}

// waitStage waits until stage is Synced and Healthy at rev, not busy, with its Deployment
// rolled out at tag and Available.
func (e *kpEnv) waitStage(t *testing.T, stage, rev, tag string) {
	t.Helper()
	var st reconciler.Status
	want := kpImageRepo + ":" + tag
	defer func() {
		if t.Failed() {
			t.Logf("shop@%s last seen: applied %s sync %s health %s reason %q pin %+v error %+v; image %q",
				stage, st.AppliedRevision, st.Sync, st.Health, st.Reason, st.Pin, st.LastError, e.image(t, stage))
		}
	}()
	what := fmt.Sprintf("shop@%s synced and healthy at %s running %s", stage, kpShort(rev), want)
	eventually(t, kpRollout, what, func() bool {
		st = e.d.Status(t, "shop@"+stage)
		return st.AppliedRevision == rev && st.Sync == reconciler.SyncSynced &&
			st.Health == "Healthy" && st.Operation == nil && e.image(t, stage) == want
	})
}

// refresh asks the daemon for a pass of a stage.
func (e *kpEnv) refresh(t *testing.T, stage string) {
	t.Helper()
	if code := e.d.Post(t, "/api/v1/apps/shop@"+stage+"/refresh", kpToken); code/100 != 2 {
		t.Fatalf("refresh shop@%s = %d", stage, code)
	}
}

// promoted is shipwatch_promotions_total{app=shop,env,result=promoted}.
func (e *kpEnv) promoted(t *testing.T, env string) float64 {
	return e.d.Metric(t, kpPromotionsName, map[string]string{"app": "shop", "env": env, "result": "promoted"})
}

// kpCommit is a commit on main.
type kpCommit struct{ sha, body string }

// promotions lists the commits on main whose subject starts with prefix, newest first.
func (e *kpEnv) promotions(t *testing.T, prefix string) []kpCommit {
	t.Helper()
	var out []kpCommit
	for _, sha := range strings.Fields(e.repo.Git("log", "--format=%H", "main")) {
		body := e.repo.Git("log", "-1", "--format=%B", sha)
		if strings.HasPrefix(body, prefix) {
			out = append(out, kpCommit{sha: sha, body: body})
		}
	}
	return out
}

// stageStatus reads a stage's status with its promotion report.
func (e *kpEnv) stageStatus(t *testing.T, stage string) server.AppStatus {
	t.Helper()
	var st server.AppStatus
	if err := json.Unmarshal(e.d.Get(t, "/api/v1/apps/shop@"+stage), &st); err != nil {
		t.Fatalf("decode shop@%s's status: %v", stage, err)
	}
	return st
}

func kpShort(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// TestKubePromotion runs shop through dev, staging and prod on the test cluster, from a
// repository served over smart HTTP behind a token, where promotions are pushed.
func TestKubePromotion(t *testing.T) {
	e := newKPEnv(t)
	for _, s := range kpStages {
		e.waitStage(t, s, e.c0, "1.0")
	}

	// A commit to dev's images reaches every stage (they all follow main) and changes dev only.
	c1 := e.repo.Commit("dev: shop 1.1", map[string]string{kpImagesFile("dev"): kpImages("1.1")})
	for _, s := range kpStages {
		e.refresh(t, s)
	}
	e.waitStage(t, "staging", c1, "1.0")
	e.waitStage(t, "prod", c1, "1.0")
	e.waitStage(t, "dev", c1, "1.1")
	kpGateClosed(t, e, c1)
	p1 := kpAutoPromoted(t, e, c1)
	kpApproval(t, e, p1)
	kpRollbackStopsAuto(t, e, c1)
}

// kpGateClosed expects `promote --to staging` refused while dev has been healthy at c1 for
// less than the gate asks, saying so.
func kpGateClosed(t *testing.T, e *kpEnv, c1 string) {
	t.Helper()
	code, out := e.cli(t, "promote", "shop", "--to", "staging")
	want := fmt.Sprintf("gate closed: shop@dev has been healthy at %s for", kpShort(c1))
	if code != 1 || !strings.Contains(out, want) || !strings.Contains(out, "of the 15s required") {
		t.Fatalf("promote --to staging right after dev's deploy: exit %d, want 1 saying %q ... of the 15s required:\n%s", code, want, out)
	}
	if n := e.promoted(t, "staging"); n != 0 {
		t.Errorf("promoted{env=staging} = %v after a refused promotion, want 0", n)
	}
}

// kpAutoPromoted waits for the daemon's own promotion of c1 into staging when the gate opens
// and checks the commit and what staging runs; it returns the promotion commit.
func kpAutoPromoted(t *testing.T, e *kpEnv, c1 string) string {
	t.Helper()
	subject := fmt.Sprintf("promote shop to staging: dev at %s", kpShort(c1))
	var commits []kpCommit
	eventually(t, kpStagingGate+kpRollout, "the automatic promotion of "+kpShort(c1)+" into staging", func() bool {
		commits = e.promotions(t, subject)
		return len(commits) > 0 && e.promoted(t, "staging") >= 1
	})
	p1 := commits[0]
	for _, line := range []string{
		"Source: shop@dev running " + c1,
		"Files: images/kustomization.yaml",
		// kwok sets no imageID, so the Kubernetes driver reports the reference, without digest.
		fmt.Sprintf("Images:\n  Deployment/%s/shop: %s:1.1 (no registry digest)", e.ns["dev"], kpImageRepo),
		"Gate: shop@dev healthy at " + kpShort(c1) + " for ",
	} {
		if !strings.Contains(p1.body, line) {
			t.Errorf("promotion commit message lacks %q:\n%s", line, p1.body)
		}
	}
	if changed := e.repo.Git("show", "--format=", "--name-only", p1.sha); changed != kpImagesFile("staging") {
		t.Errorf("the promotion commit changed %q, want only %s", changed, kpImagesFile("staging"))
	}
	if got, want := e.repo.Git("show", p1.sha+":"+kpImagesFile("staging")), e.repo.Git("show", c1+":"+kpImagesFile("dev")); got != want {
		t.Errorf("staging's promoted file:\n%s\nwant dev's at %s:\n%s", got, kpShort(c1), want)
	}
	e.waitStage(t, "staging", p1.sha, "1.1")
	if dev, stg := e.mustImage(t, "dev"), e.mustImage(t, "staging"); dev != stg {
		t.Errorf("staging runs %s, dev %s", stg, dev)
	}
	if img := e.mustImage(t, "prod"); img != kpImageRepo+":1.0" {
		t.Errorf("the promotion into staging reached prod: %s", img)
	}
	return p1.sha
}

// kpApproval expects prod's gate to wait for an approval of what staging runs (p1), then
// `approve` and `promote --to prod` to deploy it to prod.
func kpApproval(t *testing.T, e *kpEnv, p1 string) {
	t.Helper()
	var code int
	var out string
	defer func() {
		if t.Failed() {
			t.Logf("last CLI call: exit %d:\n%s", code, out)
		}
	}()
	// The answer names the stage, the revision and the approval it waits for.
	eventually(t, kpRollout, "promote --to prod refused for want of an approval", func() bool {
		code, out = e.cli(t, "promote", "shop", "--to", "prod")
		if code != 1 {
			t.Fatalf("promote --to prod before an approval: exit %d, want 1:\n%s", code, out)
		}
		return strings.Contains(out, "gate closed: shop@staging ") && strings.Contains(out, kpShort(p1)) &&
			strings.Contains(out, "waits for an approval")
	})
	if img := e.mustImage(t, "prod"); img != kpImageRepo+":1.0" {
		t.Errorf("prod runs %s before an approval, want 1.0", img)
	}
	code, out = e.cli(t, "approve", "shop@prod", kpShort(p1))
	if code != 0 || !strings.Contains(out, "approved "+p1+" for shop@prod") {
		t.Fatalf("approve shop@prod %s: exit %d:\n%s", kpShort(p1), code, out)
	}
	code, out = e.cli(t, "promote", "shop", "--to", "prod")
	if code != 0 || !strings.Contains(out, "shop@staging -> shop@prod: promoted") {
		t.Fatalf("promote --to prod after the approval: exit %d, want 0, promoted:\n%s", code, out)
	}
	subject := fmt.Sprintf("promote shop to prod: staging at %s", kpShort(p1))
	commits := e.promotions(t, subject)
	if len(commits) != 1 || !strings.Contains(commits[0].body, "approved by api") {
		t.Fatalf("commits %q on main: %d, want 1 whose gate names the approval: %+v", subject, len(commits), commits)
	}
	e.waitStage(t, "prod", commits[0].sha, "1.1")
	if n := e.promoted(t, "prod"); n != 1 {
		t.Errorf("promoted{env=prod} = %v, want 1", n)
	}
}

// kpGateFor matches how long the gate's answer says the source has been healthy.
var kpGateFor = regexp.MustCompile(`shop@dev healthy at \w+ for (\S+) \(`)

// kpRollbackStopsAuto rolls staging back, then lets dev run a new revision past staging's
// gate: nothing is promoted into staging while it is pinned; after unpin the new revision is.
// c1's promotion was the only one all along.
func kpRollbackStopsAuto(t *testing.T, e *kpEnv, c1 string) {
	t.Helper()
	code, out := e.cli(t, "rollback", "shop@staging")
	if code != 0 {
		t.Fatalf("rollback shop@staging: exit %d:\n%s", code, out)
	}
	pinned := e.waitStageOutOfSync(t, "staging", "1.0")
	c3 := e.repo.Commit("dev: shop 1.2", map[string]string{kpImagesFile("dev"): kpImages("1.2")})
	e.refresh(t, "dev")
	e.waitStage(t, "dev", c3, "1.2")
	// Two of the daemon's looks at the gates after it opened, and some.
	soak := kpStagingGate + 2*kpAutoTick + time.Second
	// The pin closes staging's gate; its answer still says how long dev has been healthy.
	eventually(t, soak+kpRollout, "dev past staging's gate for two automatic looks", func() bool {
		g := gateOf(e.stageStatus(t, "staging"))
		if !strings.Contains(g, "closed: shop@staging is pinned at") {
			return false
		}
		m := kpGateFor.FindStringSubmatch(g)
		if m == nil {
			return false
		}
		d, err := time.ParseDuration(m[1])
		return err == nil && d >= soak
	})
	if st := e.d.Status(t, "shop@staging"); st.Pin == nil || st.Pin.Revision != pinned.Pin.Revision {
		t.Fatalf("staging's pin moved: %+v, want at %s", st.Pin, kpShort(pinned.Pin.Revision))
	}
	if img := e.mustImage(t, "staging"); img != kpImageRepo+":1.0" {
		t.Errorf("staging, pinned by a rollback, runs %s", img)
	}
	if n := e.promoted(t, "staging"); n != 1 {
		t.Errorf("promoted{env=staging} = %v while staging is pinned, want 1", n)
	}
	if cs := e.promotions(t, "promote shop to staging:"); len(cs) != 1 {
		t.Errorf("%d promotion commits into staging while it is pinned, want 1", len(cs))
	}

	code, out = e.cli(t, "unpin", "shop@staging")
	if code != 0 {
		t.Fatalf("unpin shop@staging: exit %d:\n%s", code, out)
	}
	subject := fmt.Sprintf("promote shop to staging: dev at %s", kpShort(c3))
	var p3 []kpCommit
	eventually(t, kpRollout, "the automatic promotion of "+kpShort(c3)+" after unpin", func() bool {
		p3 = e.promotions(t, subject)
		return len(p3) == 1
	})
	e.waitStage(t, "staging", p3[0].sha, "1.2")
	if n := e.promoted(t, "staging"); n != 2 {
		t.Errorf("promoted{env=staging} = %v after unpin, want 2 (c1's and c3's)", n)
	}
	if cs := e.promotions(t, fmt.Sprintf("promote shop to staging: dev at %s", kpShort(c1))); len(cs) != 1 {
		t.Errorf("%d promotion commits of %s into staging, want 1", len(cs), kpShort(c1))
	}
}

// gateOf is a stage's gate answer now; "" without a promotion report.
func gateOf(st server.AppStatus) string {
	if st.Promotion == nil {
		return ""
	}
	return st.Promotion.Gate
}

// waitStageOutOfSync waits until a rolled-back stage is pinned, not busy, and runs tag.
func (e *kpEnv) waitStageOutOfSync(t *testing.T, stage, tag string) reconciler.Status {
	t.Helper()
	var st reconciler.Status
	eventually(t, kpRollout, "shop@"+stage+" rolled back to "+tag+" and pinned", func() bool {
		st = e.d.Status(t, "shop@"+stage)
		return st.Pin != nil && st.Operation == nil && st.Health == "Healthy" && e.image(t, stage) == kpImageRepo+":"+tag
	})
	return st
}
