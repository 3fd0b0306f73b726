package faults

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/shipwatch/shipwatch/drivers/kubernetes"
	"github.com/shipwatch/shipwatch/internal/testdaemon"
	"github.com/shipwatch/shipwatch/internal/testgit"
	"github.com/shipwatch/shipwatch/reconciler"
)

// foreignManager is the field manager of the other tool that created the ConfigMaps.
const foreignManager = "foreign-tool"

// conflictFiles is an app under dir: the ConfigMap the other tool created, with mode set,
// and one of the app's own.
func conflictFiles(dir, ns, shared, mode string) map[string]string {
	return map[string]string{
		dir + "/shared.yaml": fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, namespace: %s}\ndata: {mode: %q}\n", shared, ns, mode),
		dir + "/own.yaml":    fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s-own, namespace: %s}\ndata: {mode: %q}\n", dir, ns, mode),
	}
}

// TestKubeForeignFieldManagerConflict runs two apps whose manifests set .data.mode of a
// ConfigMap another tool created (field manager foreign-tool) to another value. The app
// without forceConflicts must report the conflict, naming the manager and the field, and
// take nothing (the other tool's value and ownership stay, and none of the app's objects
// is created) until Git agrees with the other tool; the app with forceConflicts: true takes
// the field and converges.
func TestKubeForeignFieldManagerConflict(t *testing.T) {
	began := time.Now()
	k := kubeCluster(t, false)
	ctx := t.Context()
	ns := uniqueName(t, "swconflict-")
	if _, err := k.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = k.client.CoreV1().Namespaces().Delete(context.WithoutCancel(t.Context()), ns, metav1.DeleteOptions{})
	})
	for _, name := range []string{"shared-a", "shared-b"} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"mode": "theirs"}}
		if _, err := k.client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{FieldManager: foreignManager}); err != nil {
			t.Fatal(err)
		}
	}
	files := conflictFiles("guarded", ns, "shared-a", "ours")
	for name, content := range conflictFiles("forced", ns, "shared-b", "ours") {
		files[name] = content
	}
	repo := testgit.New(t)
	repo.Commit("both apps want mode ours", files)
	addr := testdaemon.FreeAddr(t)
	cfg := writeKubeConfig(t, repo.Dir, addr, k.kubeconfig, 2*time.Second,
		kubeApp{name: "guarded", path: "guarded", namespace: ns},
		kubeApp{name: "forced", path: "forced", namespace: ns, forceConflicts: true})
	d := startDaemon(t, cfg, addr)

	o := Outcome{Fault: "foreign field manager owns a field", Injected: 2, Runs: 2}
	if guardedHolds(t, k, d, ns) {
		o.Converged++
	}
	if forcedTakes(t, k, d, ns) {
		o.Converged++
	}
	// The guarded app stays stalled on the conflict, pass after pass, and takes nothing.
	o.Lost += conflictTaken(t, k, d, ns)
	// Git agreeing with the other tool resolves it: the field is shared, nothing forced.
	commit := repo.Commit("guarded agrees", conflictFiles("guarded", ns, "shared-a", "theirs"))
	if !within(t, 200*time.Millisecond, 2*time.Minute, func() bool {
		st := d.Status(t, "guarded")
		return st.AppliedRevision == commit && st.Sync == reconciler.SyncSynced && st.LastError == nil
	}) {
		t.Errorf("guarded app not synced once Git agrees: %s", brief(d.Status(t, "guarded")))
	}
	if owners := fieldOwners(t, k, ns, "shared-a", ".data.mode"); !slices.Equal(owners, []string{foreignManager, kubernetes.FieldManager}) {
		t.Errorf("shared-a .data.mode owners = %v, want shared by %s and shipwatch", owners, foreignManager)
	}
	o.Notes = append(o.Notes, fmt.Sprintf("duration=%s", time.Since(began).Round(time.Second)))
	record(t, o)
}

// guardedHolds expects the app without forceConflicts to report the conflict and write
// nothing.
func guardedHolds(t *testing.T, k *kubeEnv, d *testdaemon.Daemon, ns string) bool {
	t.Helper()
	want := fmt.Sprintf("ConfigMap/%s/shared-a: %s owns .data.mode", ns, foreignManager)
	reported := within(t, 200*time.Millisecond, 2*time.Minute, func() bool {
		e := d.Status(t, "guarded").LastError
		return e != nil && e.Stage == reconciler.StagePlan && e.Class == reconciler.ClassStalled &&
			strings.Contains(e.Message, want) && strings.Contains(e.Message, "forceConflicts")
	})
	if !reported {
		t.Errorf("conflict not reported as %q: %s", want, brief(d.Status(t, "guarded")))
		return false
	}
	if st := d.Status(t, "guarded"); st.Sync == reconciler.SyncSynced || st.AppliedRevision != "" {
		t.Errorf("guarded app applied despite the conflict: %s", brief(st))
		return false
	}
	return conflictTaken(t, k, d, ns) == 0
}

// forcedTakes expects the app with forceConflicts to take .data.mode and converge.
func forcedTakes(t *testing.T, k *kubeEnv, d *testdaemon.Daemon, ns string) bool {
	t.Helper()
	synced := within(t, 200*time.Millisecond, 2*time.Minute, func() bool {
		st := d.Status(t, "forced")
		return st.AppliedRevision != "" && st.Sync == reconciler.SyncSynced && st.Health == "Healthy" && st.LastError == nil
	})
	if !synced {
		t.Errorf("forced app not synced: %s", brief(d.Status(t, "forced")))
		return false
	}
	ok := true
	cm, err := k.client.CoreV1().ConfigMaps(ns).Get(t.Context(), "shared-b", metav1.GetOptions{})
	if err != nil || cm.Data["mode"] != "ours" {
		t.Errorf("forceConflicts did not take .data.mode of shared-b: %v %v", cm.Data, err)
		ok = false
	}
	if owners := fieldOwners(t, k, ns, "shared-b", ".data.mode"); !slices.Equal(owners, []string{kubernetes.FieldManager}) {
		t.Errorf("shared-b .data.mode owners = %v, want shipwatch alone", owners)
		ok = false
	}
	var reason string
	for _, c := range d.Status(t, "forced").LastChanges {
		if c.Ref.Name == "shared-b" {
			reason = c.Reason
		}
	}
	if want := "takes .data.mode from " + foreignManager; !strings.Contains(reason, want) {
		t.Errorf("the forced takeover is not explained: reason %q, want %q", reason, want)
		ok = false
	}
	return ok
}

// conflictTaken waits for the guarded app's next two passes (each plans it again, and
// stalls on the conflict) and counts what it took from the other tool or wrote anyway:
// shared-a's value or ownership, or its own ConfigMap.
func conflictTaken(t *testing.T, k *kubeEnv, d *testdaemon.Daemon, ns string) int {
	t.Helper()
	stalled := map[string]string{"app": "guarded", "result": "stalled"}
	passes := d.Metric(t, "shipwatch_reconcile_total", stalled)
	if !within(t, 200*time.Millisecond, 30*time.Second, func() bool {
		return d.Metric(t, "shipwatch_reconcile_total", stalled) >= passes+2
	}) {
		t.Errorf("the guarded app is not planned again while it conflicts: %s", brief(d.Status(t, "guarded")))
	}
	taken := 0
	cm, err := k.client.CoreV1().ConfigMaps(ns).Get(t.Context(), "shared-a", metav1.GetOptions{})
	if err != nil || cm.Data["mode"] != "theirs" || len(cm.Labels) != 0 {
		t.Errorf("shared-a changed by the guarded app: data %v labels %v (%v)", cm.Data, cm.Labels, err)
		taken++
	}
	if owners := fieldOwners(t, k, ns, "shared-a", ".data.mode"); !slices.Equal(owners, []string{foreignManager}) {
		t.Errorf("shared-a .data.mode owners = %v, want %s alone", owners, foreignManager)
		taken++
	}
	if _, err := k.client.CoreV1().ConfigMaps(ns).Get(t.Context(), "guarded-own", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the guarded app created guarded-own despite the conflict (err %v)", err)
		taken++
	}
	return taken
}

// fieldOwners lists, sorted, the managers that own field of ConfigMap name.
func fieldOwners(t *testing.T, k *kubeEnv, ns, name, field string) []string {
	t.Helper()
	cm, err := k.client.CoreV1().ConfigMaps(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range cm.ManagedFields {
		set := &fieldpath.Set{}
		if mf.FieldsV1 == nil || set.FromJSON(mf.FieldsV1.GetRawReader()) != nil {
			continue
		}
		set.Leaves().Iterate(func(p fieldpath.Path) {
			if p.String() == field {
				out = append(out, mf.Manager)
			}
		})
	}
	slices.Sort(out)
	return out
}
