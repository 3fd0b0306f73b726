package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/manifests"
)

// The field manager of the "someone else" in these tests, and the values each side wants.
const (
	foreignManager = "foreign-tool"
	theirs         = "theirs"
	ours           = "ours"
)

var gvkDeploy = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}

func TestConflictCausesNameManagerAndField(t *testing.T) {
	err := apierrors.NewApplyConflict([]metav1.StatusCause{
		{Type: metav1.CauseTypeFieldManagerConflict, Message: `conflict with "kubectl" with subresource "scale" using autoscaling/v1 at 2026-01-01T00:00:00Z`, Field: ".spec.replicas"},
		{Type: metav1.CauseTypeFieldManagerConflict, Message: `conflict with "foreign-tool" using v1`, Field: ".data.b"},
		{Type: metav1.CauseTypeFieldManagerConflict, Message: `conflict with "foreign-tool" using v1`, Field: ".data.a"},
		{Type: metav1.CauseTypeFieldManagerConflict, Message: `unparsable`, Field: ".data.c"},
	}, "Apply failed with 4 conflicts")
	if !isFieldConflict(err) {
		t.Fatal("an apply conflict is not recognised")
	}
	got := fmt.Sprint(conflictCauses(err))
	if want := "map[another manager:[.data.c] foreign-tool:[.data.a .data.b] kubectl:[.spec.replicas]]"; got != want {
		t.Errorf("causes = %s, want %s", got, want)
	}
	stale := apierrors.NewConflict(schema.GroupResource{Resource: "configmaps"}, "x", errors.New("the object has been modified"))
	if isFieldConflict(stale) {
		t.Error("a resourceVersion conflict counted as a field conflict")
	}
	wrapped := classify(obj("v1", "Secret", "ns", "creds", nil), fmt.Errorf("apply: %w", err))
	if !errors.Is(wrapped, ErrFieldConflict) || !errors.Is(wrapped, drivers.ErrInvalidSpec) {
		t.Errorf("classify(conflict) = %v, want ErrFieldConflict and ErrInvalidSpec", wrapped)
	}
	if !strings.Contains(wrapped.Error(), "Secret/ns/creds: another manager owns .data.c; foreign-tool owns .data.a, .data.b") {
		t.Errorf("classify(conflict) = %v", wrapped)
	}
}

func TestConflictsListBoundedAndWrap(t *testing.T) {
	var cs conflicts
	for i := range maxConflictsShown + 2 {
		cs = append(cs, &conflictError{ref: drivers.Ref{Kind: "ConfigMap", Namespace: "ns", Name: fmt.Sprint("c", i)},
			owners: map[string][]string{foreignManager: {".data.k"}}})
	}
	var err error = cs
	if !errors.Is(err, ErrFieldConflict) || !errors.Is(err, drivers.ErrInvalidSpec) {
		t.Fatalf("conflicts do not wrap ErrFieldConflict and ErrInvalidSpec: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"ConfigMap/ns/c0: foreign-tool owns .data.k", "and 2 more objects", "forceConflicts: true"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "c6") {
		t.Errorf("more than %d objects listed: %s", maxConflictsShown, msg)
	}
}

func TestAppliedBefore(t *testing.T) {
	live := func(label string, managers ...metav1.ManagedFieldsEntry) *unstructured.Unstructured {
		u := obj("v1", "ConfigMap", "ns", "c", nil)
		if label != "" {
			u.SetLabels(map[string]string{LabelApp: label})
		}
		u.SetManagedFields(managers)
		return u
	}
	applied := metav1.ManagedFieldsEntry{Manager: FieldManager, Operation: metav1.ManagedFieldsOperationApply}
	updated := metav1.ManagedFieldsEntry{Manager: FieldManager, Operation: metav1.ManagedFieldsOperationUpdate}
	for _, c := range []struct {
		name   string
		live   *unstructured.Unstructured
		listed bool
		want   bool
	}{
		{"labelled, listed", live("app"), true, true},
		{"labelled, shipwatch applied it, inventory lost", live("app", applied), false, true},
		{"labelled, neither listed nor applied", live("app", updated), false, false},
		{"listed but someone else's object took the name", live("", applied), true, false},
		{"another app's", live("other", applied), true, false},
		{"gone", nil, true, false},
	} {
		if got := appliedBefore("app", c.listed, c.live); got != c.want {
			t.Errorf("%s: appliedBefore = %t, want %t", c.name, got, c.want)
		}
	}
}

// foreignConfigMap creates a ConfigMap the way another tool would: no shipwatch label, its
// own field manager owning .data.mode.
func foreignConfigMap(t *testing.T, d *Driver, ns, name string) {
	t.Helper()
	u := obj("v1", "ConfigMap", ns, name, map[string]any{"data": map[string]any{"mode": theirs}})
	if err := d.client.Create(t.Context(), u, client.FieldOwner(foreignManager)); err != nil {
		t.Fatal(err)
	}
}

func modeConfigMap(ns, name, mode string) *unstructured.Unstructured {
	return obj("v1", "ConfigMap", ns, name, map[string]any{"data": map[string]any{"mode": mode}})
}

func deployment(ns, name string, replicas int64) *unstructured.Unstructured {
	labels := map[string]any{"app": name}
	return obj("apps/v1", "Deployment", ns, name, map[string]any{"spec": map[string]any{
		"replicas": replicas,
		"selector": map[string]any{"matchLabels": labels},
		"template": map[string]any{
			"metadata": map[string]any{"labels": labels},
			"spec":     map[string]any{"containers": []any{map[string]any{"name": "web", "image": "registry.invalid/web:1"}}},
		},
	}})
}

// owners maps each manager of u (outside status) to the leaf fields it owns.
func owners(t *testing.T, u *unstructured.Unstructured) map[string][]string {
	t.Helper()
	all, err := foreignOrOwn(u, func(string) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for m, s := range all {
		s.Leaves().Iterate(func(p fieldpath.Path) { out[m] = append(out[m], p.String()) })
	}
	return out
}

func owns(t *testing.T, u *unstructured.Unstructured, manager, field string) bool {
	t.Helper()
	for _, f := range owners(t, u)[manager] {
		if f == field {
			return true
		}
	}
	return false
}

func TestIntegrationConflictReportedNotTaken(t *testing.T) {
	needCluster(t)
	id := suffix(t)
	d := newDriver(t, "default")
	app := drivers.App{Name: "conflict-" + id, Revision: "rev1"}
	t.Cleanup(func() { cleanupApp(t, d, app) })
	cm, dep, fresh := "cf-"+id, "hpa-"+id, "fresh-"+id
	foreignConfigMap(t, d, "default", cm)
	// A Deployment someone else created, whose .spec.replicas an autoscaler then owns (it
	// scales through the scale subresource, as the HPA controller does).
	if err := d.client.Create(t.Context(), deployment("default", dep, 1), client.FieldOwner(foreignManager)); err != nil {
		t.Fatal(err)
	}
	scale := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"replicas":3}}`))
	if err := d.client.SubResource("scale").Patch(t.Context(), deployment("default", dep, 0), scale,
		client.WithSubResourceBody(&unstructured.Unstructured{Object: map[string]any{"apiVersion": "autoscaling/v1", "kind": "Scale"}}),
		client.FieldOwner("horizontal-pod-autoscaler")); err != nil {
		t.Fatal(err)
	}
	b := &manifests.Bundle{Objects: []*unstructured.Unstructured{
		modeConfigMap("", cm, ours), deployment("", dep, 1), modeConfigMap("", fresh, ours),
	}}
	_, err := d.Plan(t.Context(), app, b)
	if !errors.Is(err, ErrFieldConflict) || !errors.Is(err, drivers.ErrInvalidSpec) {
		t.Fatalf("plan over foreign fields: err = %v, want ErrFieldConflict and ErrInvalidSpec", err)
	}
	for _, want := range []string{
		"ConfigMap/default/" + cm + ": foreign-tool owns .data.mode",
		"Deployment/default/" + dep + ": horizontal-pod-autoscaler owns .spec.replicas",
		"apps[].kubernetes.forceConflicts: true",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("conflict error does not say %q:\n%v", want, err)
		}
	}
	// Nothing was taken, and nothing of the app was written.
	live := mustGet(t, d, gvkCM, "default", cm)
	if v, _, _ := unstructured.NestedString(live.Object, "data", "mode"); v != theirs || !owns(t, live, foreignManager, ".data.mode") {
		t.Errorf("foreign configmap changed: mode %q, owners %v", v, owners(t, live))
	}
	if len(live.GetLabels()) != 0 {
		t.Errorf("foreign configmap labelled: %v", live.GetLabels())
	}
	if r, _, _ := unstructured.NestedInt64(mustGet(t, d, gvkDeploy, "default", dep).Object, "spec", "replicas"); r != 3 {
		t.Errorf("the autoscaler's replicas were taken: %d", r)
	}
	if getObj(t, d, gvkCM, "default", fresh) != nil || getObj(t, d, gvkSecret, "default", ParentName(app.Name)) != nil {
		t.Error("a plan that failed on conflicts still wrote part of the app")
	}
	// A desired value equal to theirs is no conflict: the field is shared, the object adopted.
	b.Objects[0] = modeConfigMap("", cm, theirs)
	b.Objects[1] = deployment("", dep, 3)
	p := plan(t, d, app, b)
	c := changesByRef(p.Changes)["ConfigMap/default/"+cm]
	if c.Action != drivers.ActionUpdate || c.Reason != "differs from desired; adopted" {
		t.Errorf("adoption without conflict: %s %q", c.Action, c.Reason)
	}
	apply(t, d, p, true)
	live = mustGet(t, d, gvkCM, "default", cm)
	if !owns(t, live, foreignManager, ".data.mode") || !owns(t, live, FieldManager, ".data.mode") {
		t.Errorf("an equal value is not shared: %v", owners(t, live))
	}
}

func TestIntegrationForceConflictsTakesFields(t *testing.T) {
	cfg := needCluster(t)
	id := suffix(t)
	app := drivers.App{Name: "force-" + id, Revision: "rev1"}
	// Apps of one cluster share a driver: the setting is the app's, not the driver's.
	forced := func(name string) bool { return name == app.Name }
	d, err := New(t.Context(), Options{Config: cfg, Namespace: "default", Version: "test", ForceConflicts: forced})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	t.Cleanup(func() { cleanupApp(t, d, app) })
	cm := "cf-" + id
	foreignConfigMap(t, d, "default", cm)
	b := &manifests.Bundle{Objects: []*unstructured.Unstructured{modeConfigMap("", cm, ours)}}
	if _, err := d.Plan(t.Context(), drivers.App{Name: "other-" + id}, b); !errors.Is(err, ErrFieldConflict) {
		t.Errorf("another app of the same driver took the field: err = %v", err)
	}
	p := plan(t, d, app, b)
	c := changesByRef(p.Changes)["ConfigMap/default/"+cm]
	if want := "differs from desired; adopted with forceConflicts: takes .data.mode from foreign-tool"; c.Action != drivers.ActionUpdate || c.Reason != want {
		t.Errorf("plan: %s %q, want update %q", c.Action, c.Reason, want)
	}
	apply(t, d, p, true)
	live := mustGet(t, d, gvkCM, "default", cm)
	if v, _, _ := unstructured.NestedString(live.Object, "data", "mode"); v != ours {
		t.Errorf("mode = %q after a forced apply, want %q", v, ours)
	}
	if !owns(t, live, FieldManager, ".data.mode") || owns(t, live, foreignManager, ".data.mode") {
		t.Errorf("field not taken: %v", owners(t, live))
	}
	if p := plan(t, d, app, b); !p.InSync() {
		t.Errorf("after the takeover, plan not in sync:\n%s", p)
	}
	// Once applied, the object is the app's: a driver without forceConflicts heals it.
	plain := newDriver(t, "default")
	t.Cleanup(func() { _ = plain.Close() })
	editMode(t, plain, app.Name, cm, "edited")
	assertHealed(t, plain, app, b, cm)
}

// editMode changes .data.mode the way `kubectl edit` does and waits until the driver's
// watch cache has seen it.
func editMode(t *testing.T, d *Driver, app, name, mode string) {
	t.Helper()
	u := modeConfigMap("default", name, "")
	patch := client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"data":{"mode":%q}}`, mode))
	if err := d.client.Patch(t.Context(), u, patch, client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatal(err)
	}
	u.SetGroupVersionKind(gvkCM)
	waitCached(t, d, app, u, fieldIs(mode, "data", "mode"))
}

// assertHealed plans drift on cm, expects it named as kubectl-edit's and healed by apply.
func assertHealed(t *testing.T, d *Driver, app drivers.App, b *manifests.Bundle, cm string) {
	t.Helper()
	p := plan(t, d, app, b)
	c := changesByRef(p.Changes)["ConfigMap/default/"+cm]
	if want := "differs from desired; kubectl-edit changed .data.mode"; c.Action != drivers.ActionUpdate || c.Reason != want {
		t.Fatalf("drift plan: %s %q, want update %q", c.Action, c.Reason, want)
	}
	apply(t, d, p, true)
	live := mustGet(t, d, gvkCM, "default", cm)
	if v, _, _ := unstructured.NestedString(live.Object, "data", "mode"); v != ours || !owns(t, live, FieldManager, ".data.mode") {
		t.Errorf("drift not healed: mode %q, owners %v", v, owners(t, live))
	}
}

func TestIntegrationDriftOnAppliedObjectHealed(t *testing.T) {
	needCluster(t)
	id := suffix(t)
	d := newDriver(t, "default")
	app := drivers.App{Name: "heal-" + id, Revision: "rev1"}
	t.Cleanup(func() { cleanupApp(t, d, app) })
	cm := "own-" + id
	b := &manifests.Bundle{Objects: []*unstructured.Unstructured{modeConfigMap("", cm, ours)}}
	apply(t, d, plan(t, d, app, b), true)

	editMode(t, d, app.Name, cm, "edited")
	assertHealed(t, d, app, b, cm)

	// The inventory Secret deleted by hand: the label and shipwatch's managed fields still
	// say whose the object is, so the drift is still healed.
	parent := mustGet(t, d, gvkSecret, "default", ParentName(app.Name))
	if err := d.client.Delete(t.Context(), parent); err != nil {
		t.Fatal(err)
	}
	editMode(t, d, app.Name, cm, "edited-again")
	assertHealed(t, d, app, b, cm)

	// The inventory lists a name the app never got to apply (an apply interrupted after it
	// recorded its new members), and someone else created an object of that name: it is not
	// the app's, so its field is a conflict, not drift.
	late := "late-" + id
	inv, err := d.readInventory(t.Context(), app.Name)
	if err != nil {
		t.Fatal(err)
	}
	members := append(inv.Members, memberOf(modeConfigMap("default", late, "")))
	if err := d.writeInventory(t.Context(), inv, members, inv.Revision); err != nil {
		t.Fatal(err)
	}
	foreignConfigMap(t, d, "default", late)
	t.Cleanup(func() {
		_ = d.client.Delete(context.WithoutCancel(t.Context()), modeConfigMap("default", late, ""))
	})
	b.Objects = append(b.Objects, modeConfigMap("", late, ours))
	if _, err := d.Plan(t.Context(), app, b); !errors.Is(err, ErrFieldConflict) ||
		!strings.Contains(err.Error(), "ConfigMap/default/"+late+": foreign-tool owns .data.mode") {
		t.Errorf("listed but foreign object: err = %v, want a conflict naming foreign-tool and .data.mode", err)
	}
}
