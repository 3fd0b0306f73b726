package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/shipwatch/shipwatch/drivers/kubernetes"
	"github.com/shipwatch/shipwatch/internal/testdaemon"
	"github.com/shipwatch/shipwatch/internal/testgit"
	"github.com/shipwatch/shipwatch/reconciler"
)

// The app of the API server fault: 200 objects, all of kinds that are Current as soon as
// they exist (no controller needed), each carrying its generation so a stale one shows.
const (
	bigConfigMaps      = 160
	bigSecrets         = 30
	bigServiceAccounts = 9 // + 1 Namespace = 200 objects
	bigObjects         = 1 + bigConfigMaps + bigSecrets + bigServiceAccounts
	// bigRenamed ConfigMaps get new names in the last run: created and pruned mid-apply. The
	// prune of 60 lasts about a second, long enough to be cut in its middle.
	bigRenamed = 60
	// genKey is the annotation, and genData the data key, that hold an object's generation.
	genKey  = "fault.shipwatch.dev/gen"
	genData = "gen"
	// apiserverDown is how long the API server stays stopped before it is started again;
	// its own start (about 12-15 s here) adds to the outage the daemon sees.
	apiserverDown = 4 * time.Second
	// inventoryKey is where the ApplySet parent Secret lists its members (drivers/kubernetes).
	inventoryKey = "shipwatch.dev-inventory.json"
)

// bigApp is the app's desired state at one generation.
type bigApp struct {
	ns     string
	gen    int
	rename bool
}

func (a bigApp) configMapName(i int) string {
	if a.rename && i >= bigConfigMaps-bigRenamed {
		return fmt.Sprintf("cmx-%03d", i)
	}
	return fmt.Sprintf("cm-%03d", i)
}

func (a bigApp) value() string { return fmt.Sprintf("gen-%d", a.gen) }

// files renders the app as four multi-document YAML files under app/.
func (a bigApp) files() map[string]string {
	meta := func(name string) string {
		return fmt.Sprintf("metadata: {name: %s, namespace: %s, annotations: {%s: %q}}\n", name, a.ns, genKey, a.value())
	}
	// A kilobyte per ConfigMap makes the apply long enough to be cut at a chosen point.
	blob := strings.Repeat(a.value()+" ", 1024/len(a.value()+" "))
	var cms, secrets, sas strings.Builder
	for i := range bigConfigMaps {
		fmt.Fprintf(&cms, "---\napiVersion: v1\nkind: ConfigMap\n%sdata: {%s: %q, blob: %q}\n", meta(a.configMapName(i)), genData, a.value(), blob)
	}
	for i := range bigSecrets {
		fmt.Fprintf(&secrets, "---\napiVersion: v1\nkind: Secret\n%sstringData: {%s: %q}\n", meta(fmt.Sprintf("secret-%03d", i)), genData, a.value())
	}
	for i := range bigServiceAccounts {
		fmt.Fprintf(&sas, "---\napiVersion: v1\nkind: ServiceAccount\n%s", meta(fmt.Sprintf("sa-%03d", i)))
	}
	ns := fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s, annotations: {%s: %q}}\n", a.ns, genKey, a.value())
	return map[string]string{
		"app/namespace.yaml": ns, "app/configmaps.yaml": cms.String(),
		"app/secrets.yaml": secrets.String(), "app/serviceaccounts.yaml": sas.String(),
	}
}

// want maps "Kind/name" of every desired object to its generation.
func (a bigApp) want() map[string]string {
	out := map[string]string{"Namespace/" + a.ns: a.value()}
	for i := range bigConfigMaps {
		out["ConfigMap/"+a.configMapName(i)] = a.value()
	}
	for i := range bigSecrets {
		out[fmt.Sprintf("Secret/secret-%03d", i)] = a.value()
	}
	for i := range bigServiceAccounts {
		out[fmt.Sprintf("ServiceAccount/sa-%03d", i)] = a.value()
	}
	return out
}

// apiserverRun is one run of the fault: a new generation, cut once cut(total) of the apply's
// total changes are done.
type apiserverRun struct {
	rename bool
	cut    func(total int) int
}

// TestKubeAPIServerRestartMidApply kills the kube-apiserver (SIGKILL: a crash; etcd keeps
// the data) while the daemon applies a 200-object app, keeps it down, starts it again on
// the same port, and expects the app to converge with nothing lost and nothing extra: all
// 200 objects at the new generation, the ApplySet inventory listing exactly them with the
// commit as its revision, and status Synced and Healthy. Three runs cut a first apply (all
// creates), an update of everything, and an update that renames 20 ConfigMaps late in the
// apply, in its prune.
func TestKubeAPIServerRestartMidApply(t *testing.T) {
	began := time.Now()
	k := kubeCluster(t, true)
	ns, app := uniqueName(t, "swfault-"), "kbig"
	t.Cleanup(func() {
		_ = k.client.CoreV1().Namespaces().Delete(context.WithoutCancel(t.Context()), ns, metav1.DeleteOptions{})
	})
	runs := []apiserverRun{
		{cut: func(n int) int { return n / 4 }},                                       // creates
		{cut: func(n int) int { return n * 55 / 100 }},                                // updates
		{rename: true, cut: func(n int) int { return n - bigRenamed + bigRenamed/4 }}, // the prune
	}
	repo := testgit.New(t)
	addr := testdaemon.FreeAddr(t)
	cfg := writeKubeConfig(t, repo.Dir, addr, k.kubeconfig, 2*time.Second, kubeApp{name: app, path: "app", namespace: ns})
	o := Outcome{Fault: "kube-apiserver killed and restarted mid-apply of 200 objects", Runs: len(runs)}
	var d *testdaemon.Daemon
	for i, run := range runs {
		a := bigApp{ns: ns, gen: i + 1, rename: run.rename}
		commit := repo.Commit(a.value(), a.files())
		if d == nil {
			d = startDaemon(t, cfg, addr)
		}
		res := runAPIServerFault(t, k, d, app, a, commit, run.cut)
		o.Injected += res.injected
		o.Lost += res.lost
		if res.converged && res.lost == 0 && res.extra == 0 {
			o.Converged++
		}
		o.Notes = append(o.Notes, res.note)
	}
	o.Notes = append(o.Notes, fmt.Sprintf("duration=%s", time.Since(began).Round(time.Second)))
	record(t, o)
}

// faultResult is what one run saw.
type faultResult struct {
	injected    int
	converged   bool
	lost, extra int
	note        string
}

// runAPIServerFault kills the API server once cut(total) changes of the apply of commit are
// done, starts it again after apiserverDown and checks the app converges.
func runAPIServerFault(t *testing.T, k *kubeEnv, d *testdaemon.Daemon, app string, a bigApp, commit string, cut func(int) int) faultResult {
	t.Helper()
	var res faultResult
	var at reconciler.Operation
	// Poll fast: an apply of 200 objects lasts seconds, and the cut must land inside it.
	found := within(t, 20*time.Millisecond, 3*time.Minute, func() bool {
		st := d.Status(t, app)
		if op := st.Operation; op != nil && op.Revision == commit && op.Total > 0 && op.Done >= cut(op.Total) {
			at = *op
			return true
		}
		if st.AppliedRevision == commit {
			t.Fatalf("gen %d: the apply finished before %d changes were done; no fault injected", a.gen, cut(bigObjects))
		}
		return false
	})
	if !found {
		t.Fatalf("gen %d: no apply of %s in progress within 3m: %s", a.gen, commit, brief(d.Status(t, app)))
	}
	k.killAPIServer(t)
	stopped := time.Now()
	res.injected = 1
	t.Logf("gen %d: API server killed at %d/%d changes", a.gen, at.Done, at.Total)
	// The cut apply must fail (a retried error), and the outage last apiserverDown. A pass
	// that succeeds instead means the kill came after the apply: the fault missed.
	reported := within(t, 100*time.Millisecond, 30*time.Second, func() bool {
		st := d.Status(t, app)
		return st.LastError != nil && st.LastError.Class == reconciler.ClassRetry && time.Since(stopped) >= apiserverDown
	})
	if !reported {
		t.Errorf("gen %d: no failed apply during the outage (the kill came after the apply?): %s", a.gen, brief(d.Status(t, app)))
	}
	restart := k.testenv(t, "start-apiserver")
	back := time.Now()
	res.converged = within(t, 200*time.Millisecond, 3*time.Minute, func() bool {
		st := d.Status(t, app)
		return st.AppliedRevision == commit && st.Sync == reconciler.SyncSynced && st.Health == "Healthy" &&
			st.Operation == nil && st.LastError == nil
	})
	if !res.converged {
		t.Errorf("gen %d: not converged 3m after the API server came back: %s", a.gen, brief(d.Status(t, app)))
	}
	res.lost, res.extra = verifyBigApp(t, k, app, a, commit)
	res.note = fmt.Sprintf("gen%d: cut=%d/%d down=%s converged=%s",
		a.gen, at.Done, at.Total, back.Sub(stopped).Round(100*time.Millisecond), time.Since(back).Round(100*time.Millisecond))
	t.Logf("gen %d: restart took %s; %s", a.gen, restart.Round(100*time.Millisecond), res.note)
	return res
}

// brief is the part of a status a failure message needs (not the diffs of 200 changes).
func brief(st reconciler.Status) string {
	return fmt.Sprintf("applied=%s sync=%s health=%s operation=%+v lastError=%+v",
		st.AppliedRevision, st.Sync, st.Health, st.Operation, st.LastError)
}

// verifyBigApp compares the cluster with a: every desired object present at its generation
// (else lost), no other object of the ApplySet (else extra), and the same for the inventory,
// whose revision must be commit.
func verifyBigApp(t *testing.T, k *kubeEnv, app string, a bigApp, commit string) (lost, extra int) {
	t.Helper()
	got := liveBigApp(t, k, app, a.ns)
	want := a.want()
	for key, gen := range want {
		if got[key] != gen {
			lost++
			t.Errorf("gen %d: %s is %q, want %q", a.gen, key, got[key], gen)
		}
	}
	for key := range got {
		if _, ok := want[key]; !ok {
			extra++
			t.Errorf("gen %d: %s is left over in the ApplySet", a.gen, key)
		}
	}
	parent, err := k.client.CoreV1().Secrets(a.ns).Get(t.Context(), kubernetes.ParentName(app), metav1.GetOptions{})
	if err != nil {
		t.Errorf("gen %d: inventory: %v", a.gen, err)
		return lost + len(want), extra
	}
	if rev := parent.Annotations[kubernetes.AnnotationRevision]; rev != commit {
		t.Errorf("gen %d: inventory revision %q, want %s", a.gen, rev, commit)
	}
	var members []struct{ Kind, Name string }
	if err := json.Unmarshal(parent.Data[inventoryKey], &members); err != nil {
		t.Errorf("gen %d: inventory: %v", a.gen, err)
	}
	listed := map[string]bool{}
	for _, m := range members {
		key := m.Kind + "/" + m.Name
		if listed[key] || want[key] == "" {
			extra++
			t.Errorf("gen %d: inventory lists %s twice or without desiring it", a.gen, key)
		}
		listed[key] = true
	}
	for key := range want {
		if !listed[key] {
			lost++
			t.Errorf("gen %d: inventory does not list %s", a.gen, key)
		}
	}
	if len(members) != bigObjects {
		t.Errorf("gen %d: inventory lists %d members, want %d", a.gen, len(members), bigObjects)
	}
	return lost, extra
}

// liveBigApp maps "Kind/name" of every object of the app's ApplySet to its generation.
func liveBigApp(t *testing.T, k *kubeEnv, app, ns string) map[string]string {
	t.Helper()
	ctx := t.Context()
	id := kubernetes.ApplySetID(kubernetes.ParentName(app), ns, "Secret", "")
	sel := metav1.ListOptions{LabelSelector: kubernetes.LabelApplySetPartOf + "=" + id}
	got := map[string]string{}
	cms, err := k.client.CoreV1().ConfigMaps(ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range cms.Items {
		got["ConfigMap/"+cm.Name] = cm.Data[genData]
	}
	secrets, err := k.client.CoreV1().Secrets(ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		got["Secret/"+s.Name] = string(s.Data[genData])
	}
	sas, err := k.client.CoreV1().ServiceAccounts(ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, sa := range sas.Items {
		got["ServiceAccount/"+sa.Name] = sa.Annotations[genKey]
	}
	n, err := k.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels[kubernetes.LabelApplySetPartOf] == id {
		got["Namespace/"+ns] = n.Annotations[genKey]
	}
	return got
}
