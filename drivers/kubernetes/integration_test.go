package kubernetes

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/manifests"
)

// Plain-text and base64 secret values the tests look for in every diff, reason and error.
const (
	secretV1 = "s3cr3t-value-one"
	secretV2 = "s3cr3t-value-two"
)

func suffix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func newDriver(t *testing.T, ns string) *Driver {
	t.Helper()
	d, err := New(t.Context(), Options{Config: needCluster(t), Namespace: ns, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// fixture describes the lifecycle test's app; the fields are what the steps change.
type fixture struct {
	ns, group  string
	cmValue    string
	secret     string
	noConfig   bool
	noService  bool
	replicas   int64
	widgetSize int64
}

func (f fixture) bundle() *manifests.Bundle {
	ns := obj("v1", "Namespace", "", f.ns, nil)
	crd := obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "widgets."+f.group, map[string]any{
		"spec": map[string]any{
			"group": f.group, "scope": "Namespaced",
			"names": map[string]any{"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
			"versions": []any{map[string]any{
				"name": "v1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{
					"type": "object",
					"properties": map[string]any{"spec": map[string]any{
						"type": "object", "properties": map[string]any{"size": map[string]any{"type": "integer"}},
					}},
				}},
			}},
		},
	})
	widget := obj(f.group+"/v1", "Widget", "", "w1", map[string]any{"spec": map[string]any{"size": f.widgetSize}})
	labels := map[string]any{"app": "web"}
	deploy := obj("apps/v1", "Deployment", "", "web", map[string]any{"spec": map[string]any{
		"replicas": f.replicas,
		"selector": map[string]any{"matchLabels": labels},
		"template": map[string]any{
			"metadata": map[string]any{"labels": labels},
			"spec": map[string]any{"containers": []any{map[string]any{
				"name": "web", "image": "registry.invalid/web:1",
				"env": []any{map[string]any{"name": "MODE", "value": "prod"}},
			}}},
		},
	}})
	svc := obj("v1", "Service", "", "web", map[string]any{"spec": map[string]any{
		"selector": labels,
		"ports":    []any{map[string]any{"port": int64(80), "targetPort": int64(8080), "protocol": "TCP"}},
	}})
	cm := obj("v1", "ConfigMap", "", "web-config", map[string]any{"data": map[string]any{"greeting": f.cmValue}})
	secret := obj("v1", "Secret", "", "web-creds", map[string]any{"stringData": map[string]any{"password": f.secret}})
	objects := []*unstructured.Unstructured{deploy, widget, secret, ns, crd}
	if !f.noService {
		objects = append(objects, svc)
	}
	if !f.noConfig {
		objects = append(objects, cm)
	}
	return &manifests.Bundle{Revision: "rev", Objects: objects}
}

func changesByRef(cs drivers.ChangeSet) map[string]drivers.Change {
	out := map[string]drivers.Change{}
	for _, c := range cs {
		out[c.Ref.String()] = c
	}
	return out
}

// assertNoSecret fails if a secret value (plain or base64) shows anywhere in the plan.
func assertNoSecret(t *testing.T, cs drivers.ChangeSet) {
	t.Helper()
	for _, v := range []string{secretV1, secretV2} {
		for _, form := range []string{v, base64.StdEncoding.EncodeToString([]byte(v))} {
			for _, c := range cs {
				if strings.Contains(c.Diff, form) || strings.Contains(c.Reason, form) {
					t.Errorf("%s leaks a secret value in its diff or reason:\n%s", c.Ref, c.Diff)
				}
			}
		}
	}
}

func plan(t *testing.T, d *Driver, app drivers.App, b *manifests.Bundle) *drivers.Plan {
	t.Helper()
	p, err := d.Plan(t.Context(), app, b)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	assertNoSecret(t, p.Changes)
	return p
}

func apply(t *testing.T, d *Driver, p *drivers.Plan, prune bool) drivers.ChangeSet {
	t.Helper()
	var starts, ends int
	done, err := d.Apply(t.Context(), p, drivers.ApplyOptions{Prune: prune, Progress: func(pr drivers.Progress) {
		if pr.Done {
			ends++
		} else {
			starts++
		}
	}})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	// Unchanged objects are not written, so they report no progress (as in the Docker driver).
	if n := len(p.Changes.Changed()); starts != n || ends != n || len(done) != n {
		t.Errorf("progress: %d starts, %d ends, %d results for %d changes", starts, ends, len(done), n)
	}
	assertNoSecret(t, done)
	return done
}

// wantActions checks every change's action; refs not listed must be unchanged.
func wantActions(t *testing.T, cs drivers.ChangeSet, want map[string]drivers.Action) {
	t.Helper()
	got := changesByRef(cs)
	for ref, c := range got {
		w, ok := want[ref]
		if !ok {
			w = drivers.ActionUnchanged
		}
		if c.Action != w {
			t.Errorf("%s: action %s, want %s (reason %q)\n%s", ref, c.Action, w, c.Reason, c.Diff)
		}
	}
	for ref := range want {
		if _, ok := got[ref]; !ok {
			t.Errorf("%s: no change in plan", ref)
		}
	}
}

func getObj(t *testing.T, d *Driver, gvk schema.GroupVersionKind, ns, name string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	err := d.client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, u)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// mustGet is getObj for objects that must exist.
func mustGet(t *testing.T, d *Driver, gvk schema.GroupVersionKind, ns, name string) *unstructured.Unstructured {
	t.Helper()
	u := getObj(t, d, gvk, ns, name)
	if u == nil {
		t.Fatalf("%s %s/%s not found", gvk.Kind, ns, name)
	}
	return u
}

var (
	gvkCM     = schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}
	gvkSecret = schema.GroupVersionKind{Version: "v1", Kind: "Secret"}
	gvkSvc    = schema.GroupVersionKind{Version: "v1", Kind: "Service"}
)

// versions records resourceVersions (generation for Deployments, whose status a controller
// may update) of the given refs.
func versions(t *testing.T, d *Driver, p *drivers.Plan) map[string]string {
	t.Helper()
	out := map[string]string{}
	pl := p.Payload.(*payload)
	for _, o := range pl.objects {
		live := getObj(t, d, o.GroupVersionKind(), o.GetNamespace(), o.GetName())
		if live == nil {
			continue
		}
		v := live.GetResourceVersion()
		if o.GetKind() == "Deployment" || o.GetKind() == "Namespace" || o.GetKind() == "CustomResourceDefinition" {
			v = fmt.Sprint(live.GetGeneration())
		}
		out[refOf(o).String()] = v
	}
	parent := mustGet(t, d, gvkSecret, pl.inventory.Namespace, ParentName(p.App.Name))
	out["parent"] = parent.GetResourceVersion()
	return out
}

func TestIntegrationLifecycle(t *testing.T) {
	needCluster(t)
	id := suffix(t)
	f := fixture{ns: "sw-" + id, group: "t" + id + ".shipwatch.dev", cmValue: "hello", secret: secretV1, replicas: 1, widgetSize: 1}
	d := newDriver(t, f.ns)
	app := drivers.App{Name: "web-" + id, Revision: "rev1"}
	t.Cleanup(func() { cleanupApp(t, d, app) })
	ref := func(kind, name string) string { return drivers.Ref{Kind: kind, Namespace: f.ns, Name: name}.String() }

	// First deploy: everything is created, cluster definitions first.
	p := plan(t, d, app, f.bundle())
	all := map[string]drivers.Action{
		"Namespace/" + f.ns: drivers.ActionCreate, "CustomResourceDefinition/widgets." + f.group: drivers.ActionCreate,
		ref("Widget", "w1"): drivers.ActionCreate, ref("Deployment", "web"): drivers.ActionCreate,
		ref("Service", "web"): drivers.ActionCreate, ref("ConfigMap", "web-config"): drivers.ActionCreate,
		ref("Secret", "web-creds"): drivers.ActionCreate,
	}
	wantActions(t, p.Changes, all)
	if secretDiff := changesByRef(p.Changes)[ref("Secret", "web-creds")].Diff; !strings.Contains(secretDiff, "password: '***'") {
		t.Errorf("secret create diff not masked as expected:\n%s", secretDiff)
	}
	done := apply(t, d, p, true)
	wantActions(t, done, all)
	if done[0].Ref.Kind != "CustomResourceDefinition" && done[0].Ref.Kind != "Namespace" {
		t.Errorf("first applied %s, want a cluster definition", done[0].Ref)
	}
	cm := mustGet(t, d, gvkCM, f.ns, "web-config")
	if cm.GetLabels()[LabelApp] != app.Name || cm.GetLabels()[LabelApplySetPartOf] != ApplySetID(ParentName(app.Name), f.ns, "Secret", "") {
		t.Errorf("configmap labels = %v", cm.GetLabels())
	}
	parent := mustGet(t, d, gvkSecret, f.ns, ParentName(app.Name))
	if got := parent.GetAnnotations()[AnnotationGroupKind]; got != "ConfigMap,CustomResourceDefinition.apiextensions.k8s.io,Deployment.apps,Namespace,Secret,Service,Widget."+f.group {
		t.Errorf("contains-group-kinds = %q", got)
	}

	testUpdates(t, d, app, &f, ref)

	t.Run("prune", func(t *testing.T) { testPrune(t, d, app, &f, ref) })
	t.Run("restart prunes from cluster inventory", func(t *testing.T) {
		fresh := newDriver(t, f.ns)
		f.noService = true
		p := plan(t, fresh, app, f.bundle())
		wantActions(t, p.Changes, map[string]drivers.Action{ref("Service", "web"): drivers.ActionDelete})
		apply(t, fresh, p, true)
		if getObj(t, d, gvkSvc, f.ns, "web") != nil {
			t.Error("service not pruned by a fresh driver")
		}
	})
	t.Run("drift by another field manager", func(t *testing.T) { testDrift(t, d, app, f, ref) })
	t.Run("health", func(t *testing.T) { testHealth(t, d, app, f) })
}

// testUpdates checks the passes after a first deploy: a no-op, a one-field change and a
// Secret change.
func testUpdates(t *testing.T, d *Driver, app drivers.App, f *fixture, ref func(string, string) string) {
	// Second pass: nothing to do, and nothing written.
	p := plan(t, d, app, f.bundle())
	if !p.InSync() {
		t.Errorf("second plan not in sync:\n%s", p)
	}
	before := versions(t, d, p)
	wantActions(t, apply(t, d, p, true), nil)
	if after := versions(t, d, p); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a no-op apply wrote:\nbefore %v\nafter  %v", before, after)
	}

	// One field changes: only that object updates.
	f.cmValue = "bonjour"
	p = plan(t, d, app, f.bundle())
	wantActions(t, p.Changes, map[string]drivers.Action{ref("ConfigMap", "web-config"): drivers.ActionUpdate})
	if diff := changesByRef(p.Changes)[ref("ConfigMap", "web-config")].Diff; !strings.Contains(diff, "-  greeting: hello") || !strings.Contains(diff, "+  greeting: bonjour") {
		t.Errorf("configmap diff:\n%s", diff)
	}
	before = versions(t, d, p)
	apply(t, d, p, true)
	after := versions(t, d, p)
	for k := range before {
		if changed := before[k] != after[k]; changed != (k == ref("ConfigMap", "web-config")) {
			t.Errorf("%s: version %s -> %s", k, before[k], after[k])
		}
	}

	// A Secret value changes: the diff says so without the value.
	f.secret = secretV2
	p = plan(t, d, app, f.bundle())
	wantActions(t, p.Changes, map[string]drivers.Action{ref("Secret", "web-creds"): drivers.ActionUpdate})
	if diff := changesByRef(p.Changes)[ref("Secret", "web-creds")].Diff; !strings.Contains(diff, "*** (after)") {
		t.Errorf("secret diff:\n%s", diff)
	}
	apply(t, d, p, true)
}

func testPrune(t *testing.T, d *Driver, app drivers.App, f *fixture, ref func(string, string) string) {
	// Look-alikes the app must not touch: same name prefix without our label, and one with
	// another app's label.
	for name, labels := range map[string]map[string]string{
		"web-config-extra": nil,
		"web-config-2":     {LabelApp: "someone-else"},
	} {
		u := obj("v1", "ConfigMap", f.ns, name, map[string]any{"data": map[string]any{"k": "v"}})
		u.SetLabels(labels)
		if err := d.client.Create(t.Context(), u); err != nil {
			t.Fatal(err)
		}
	}
	f.noConfig = true
	p := plan(t, d, app, f.bundle())
	wantActions(t, p.Changes, map[string]drivers.Action{ref("ConfigMap", "web-config"): drivers.ActionDelete})

	done := apply(t, d, p, false)
	if c := changesByRef(done)[ref("ConfigMap", "web-config")]; !c.Skipped {
		t.Errorf("prune disabled: delete not skipped: %+v", c)
	}
	if getObj(t, d, gvkCM, f.ns, "web-config") == nil {
		t.Fatal("prune disabled, yet the configmap is gone")
	}
	p = plan(t, d, app, f.bundle())
	wantActions(t, p.Changes, map[string]drivers.Action{ref("ConfigMap", "web-config"): drivers.ActionDelete})
	apply(t, d, p, true)
	if getObj(t, d, gvkCM, f.ns, "web-config") != nil {
		t.Error("configmap not pruned")
	}
	for _, name := range []string{"web-config-extra", "web-config-2"} {
		if getObj(t, d, gvkCM, f.ns, name) == nil {
			t.Errorf("look-alike %s was deleted", name)
		}
	}
	if p := plan(t, d, app, f.bundle()); !p.InSync() {
		t.Errorf("after prune, plan not in sync:\n%s", p)
	}
}

func testDrift(t *testing.T, d *Driver, app drivers.App, f fixture, ref func(string, string) string) {
	deploy := &unstructured.Unstructured{}
	deploy.SetGroupVersionKind(schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"})
	deploy.SetNamespace(f.ns)
	deploy.SetName("web")
	// Like `kubectl scale`: through the scale subresource, as field manager "kubectl".
	scale := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"replicas":3}}`))
	if err := d.client.SubResource("scale").Patch(t.Context(), deploy, scale,
		client.WithSubResourceBody(&unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "autoscaling/v1", "kind": "Scale"}}),
		client.FieldOwner("kubectl")); err != nil {
		t.Fatal(err)
	}
	// Like `kubectl edit` of the image.
	edit := client.RawPatch(types.StrategicMergePatchType,
		[]byte(`{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"registry.invalid/web:hotfix"}]}}}}`))
	if err := d.client.Patch(t.Context(), deploy, edit, client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatal(err)
	}
	// Plan trusts its watch cache for objects it found unchanged before, so a foreign change
	// shows once the watch has delivered it (milliseconds), not at the instant of the write.
	waitCached(t, d, app.Name, deploy, func(u *unstructured.Unstructured) bool {
		containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		return fieldIs(int64(3), "spec", "replicas")(u) && len(containers) == 1 &&
			containers[0].(map[string]any)["image"] == "registry.invalid/web:hotfix"
	})
	p := plan(t, d, app, f.bundle())
	wantActions(t, p.Changes, map[string]drivers.Action{ref("Deployment", "web"): drivers.ActionUpdate})
	c := changesByRef(p.Changes)[ref("Deployment", "web")]
	if !strings.Contains(c.Diff, "-  replicas: 3") || !strings.Contains(c.Diff, "+  replicas: 1") {
		t.Errorf("drift diff:\n%s", c.Diff)
	}
	// Which manager changed which field.
	for _, want := range []string{"kubectl changed .spec.replicas",
		`kubectl-edit changed .spec.template.spec.containers[name="web"].image`} {
		if !strings.Contains(c.Reason, want) {
			t.Errorf("drift reason %q does not say %q", c.Reason, want)
		}
	}
	apply(t, d, p, true)
	live := mustGet(t, d, deploy.GroupVersionKind(), f.ns, "web")
	if r, _, _ := unstructured.NestedInt64(live.Object, "spec", "replicas"); r != 1 {
		t.Errorf("replicas after heal = %d, want 1", r)
	}
	if p := plan(t, d, app, f.bundle()); !p.InSync() {
		t.Errorf("after heal, plan not in sync:\n%s", p)
	}
}

func testHealth(t *testing.T, d *Driver, app drivers.App, f fixture) {
	h, err := d.Health(t.Context(), app)
	if err != nil {
		t.Fatal(err)
	}
	byRef := map[string]drivers.HealthStatus{}
	for _, r := range h.Resources {
		byRef[r.Ref.String()] = r.Status
	}
	for _, r := range []string{"Secret/" + f.ns + "/web-creds", "Namespace/" + f.ns, "CustomResourceDefinition/widgets." + f.group} {
		if byRef[r] != drivers.HealthHealthy {
			t.Errorf("%s health %s, want Healthy (all: %v)", r, byRef[r], byRef)
		}
	}
	if len(h.Resources) != 5 {
		t.Errorf("health covers %d resources, want 5: %v", len(h.Resources), byRef)
	}
	// A member deleted behind our back is Missing, and so is the app.
	secret := mustGet(t, d, gvkSecret, f.ns, "web-creds")
	if err := d.client.Delete(t.Context(), secret); err != nil {
		t.Fatal(err)
	}
	h, err = d.Health(t.Context(), app)
	if err != nil {
		t.Fatal(err)
	}
	if h.Status != drivers.HealthMissing && h.Status != drivers.HealthDegraded {
		t.Errorf("app health with a deleted secret = %s, want Missing", h.Status)
	}
}

// cleanupApp plans an empty bundle and applies it with prune, as deleting an app does.
func cleanupApp(t *testing.T, d *Driver, app drivers.App) {
	ctx := context.WithoutCancel(t.Context())
	p, err := d.Plan(ctx, app, &manifests.Bundle{})
	if err != nil {
		t.Logf("cleanup plan: %v", err)
		return
	}
	if _, err := d.Apply(ctx, p, drivers.ApplyOptions{Prune: true}); err != nil {
		t.Logf("cleanup apply: %v", err)
	}
}

func TestIntegrationDeleteApp(t *testing.T) {
	needCluster(t)
	id := suffix(t)
	ns := "swd-" + id
	d := newDriver(t, "default")
	app := drivers.App{Name: "del-" + id}
	b := &manifests.Bundle{Objects: []*unstructured.Unstructured{
		obj("v1", "Namespace", "", ns, nil),
		obj("v1", "ConfigMap", ns, "a", map[string]any{"data": map[string]any{"k": "v"}}),
		obj("v1", "ConfigMap", "", "b", nil),
	}}
	apply(t, d, plan(t, d, app, b), true)
	h, err := d.Health(t.Context(), app)
	if err != nil || h.Status != drivers.HealthHealthy {
		t.Fatalf("health = %+v, %v", h, err)
	}
	p := plan(t, d, app, &manifests.Bundle{})
	want := map[string]drivers.Action{"Namespace/" + ns: drivers.ActionDelete, "ConfigMap/" + ns + "/a": drivers.ActionDelete, "ConfigMap/default/b": drivers.ActionDelete}
	wantActions(t, p.Changes, want)
	if last := p.Changes[len(p.Changes)-1].Ref; last.Kind != "Namespace" {
		t.Errorf("namespace not deleted last: %s", p)
	}
	apply(t, d, p, true)
	if getObj(t, d, gvkCM, "default", "b") != nil {
		t.Error("configmap b survived the app's deletion")
	}
	if getObj(t, d, gvkSecret, "default", ParentName(app.Name)) != nil {
		t.Error("inventory parent survived the app's deletion")
	}
	p = plan(t, d, app, &manifests.Bundle{})
	if !p.InSync() {
		t.Errorf("after delete: %s", p)
	}
	if _, err := d.Apply(t.Context(), p, drivers.ApplyOptions{Prune: true}); err != nil {
		t.Fatal(err)
	}
	if getObj(t, d, gvkSecret, "default", ParentName(app.Name)) != nil {
		t.Error("applying an empty plan created an inventory parent")
	}
	if h, err := d.Health(t.Context(), app); err != nil || h.Status != drivers.HealthMissing {
		t.Errorf("health after delete = %+v, %v", h, err)
	}
}

func TestIntegrationImmutableAndRecreate(t *testing.T) {
	needCluster(t)
	id := suffix(t)
	d := newDriver(t, "default")
	app := drivers.App{Name: "imm-" + id}
	t.Cleanup(func() { cleanupApp(t, d, app) })
	secret := func(value string, recreate bool) *manifests.Bundle {
		s := obj("v1", "Secret", "", "imm-"+id, map[string]any{"immutable": true, "stringData": map[string]any{"k": value}})
		if recreate {
			s.SetAnnotations(map[string]string{AnnotationRecreate: "true"})
		}
		return &manifests.Bundle{Objects: []*unstructured.Unstructured{s}}
	}
	apply(t, d, plan(t, d, app, secret(secretV1, false)), true)
	_, err := d.Plan(t.Context(), app, secret(secretV2, false))
	if !errors.Is(err, drivers.ErrInvalidSpec) || !strings.Contains(err.Error(), "data") {
		t.Fatalf("immutable change without annotation: err = %v, want ErrInvalidSpec naming the field", err)
	}
	for _, v := range []string{secretV1, secretV2, base64.StdEncoding.EncodeToString([]byte(secretV1))} {
		if strings.Contains(err.Error(), v) {
			t.Errorf("error leaks the secret: %v", err)
		}
	}
	old := mustGet(t, d, gvkSecret, "default", "imm-"+id)
	p := plan(t, d, app, secret(secretV2, true))
	wantActions(t, p.Changes, map[string]drivers.Action{"Secret/default/imm-" + id: drivers.ActionRecreate})
	done := apply(t, d, p, true)
	wantActions(t, done, map[string]drivers.Action{"Secret/default/imm-" + id: drivers.ActionRecreate})
	cur := getObj(t, d, gvkSecret, "default", "imm-"+id)
	if cur == nil || cur.GetUID() == old.GetUID() {
		t.Fatal("secret was not recreated")
	}
	if v, _, _ := unstructured.NestedString(cur.Object, "data", "k"); v != base64.StdEncoding.EncodeToString([]byte(secretV2)) {
		t.Error("recreated secret has the old value")
	}
}

func TestIntegrationForeignApplySet(t *testing.T) {
	needCluster(t)
	id := suffix(t)
	d := newDriver(t, "default")
	app := drivers.App{Name: "foreign-" + id}
	parent := obj("v1", "Secret", "default", ParentName(app.Name), nil)
	parent.SetLabels(map[string]string{LabelApplySetID: ApplySetID(ParentName(app.Name), "default", "Secret", "")})
	parent.SetAnnotations(map[string]string{AnnotationTooling: "kubectl/v1.36.3"})
	if err := d.client.Create(t.Context(), parent); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.client.Delete(context.WithoutCancel(t.Context()), parent) })
	b := &manifests.Bundle{Objects: []*unstructured.Unstructured{obj("v1", "ConfigMap", "", "x-"+id, nil)}}
	if _, err := d.Plan(t.Context(), app, b); !errors.Is(err, ErrForeignApplySet) {
		t.Errorf("plan over kubectl's applyset: err = %v, want ErrForeignApplySet", err)
	}
}

func TestIntegrationWatch(t *testing.T) {
	needCluster(t)
	id := suffix(t)
	d := newDriver(t, "default")
	app := drivers.App{Name: "watch-" + id}
	t.Cleanup(func() { cleanupApp(t, d, app) })
	cm := func(v string) *manifests.Bundle {
		return &manifests.Bundle{Objects: []*unstructured.Unstructured{obj("v1", "ConfigMap", "", "w-"+id, map[string]any{"data": map[string]any{"k": v}})}}
	}
	// Watch starts before the app exists: the parent informer must pick up the new kind.
	events, err := d.Watch(t.Context(), app)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, d, plan(t, d, app, cm("a")), true)
	want := drivers.Ref{Kind: "ConfigMap", Namespace: "default", Name: "w-" + id}
	// The new kind's informer starts asynchronously; an edit made during its initial list is
	// not an event, so edit again until one is reported.
	edit := time.NewTicker(2 * time.Second)
	defer edit.Stop()
	deadline := time.After(30 * time.Second)
	for i := 0; ; i++ {
		select {
		case ev := <-events:
			if ev.Ref == want && ev.Reason == "MODIFIED" {
				return
			}
		case <-edit.C:
			live := mustGet(t, d, gvkCM, "default", "w-"+id)
			patch := client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"data":{"k":"edited-%d"}}`, i))
			if err := d.client.Patch(t.Context(), live, patch, client.FieldOwner("kubectl-edit")); err != nil {
				t.Fatal(err)
			}
		case <-deadline:
			t.Fatal("no MODIFIED event for the edited configmap within 30s")
		}
	}
}

// TestIntegrationDeploymentHealth needs the controllers and a (kwok) node, as testenv.sh
// runs them: a new Deployment is Progressing, then Healthy once its pod is ready.
func TestIntegrationDeploymentHealth(t *testing.T) {
	needCluster(t)
	d := newDriver(t, "default")
	nodes := &unstructured.UnstructuredList{}
	nodes.SetGroupVersionKind(schema.GroupVersionKind{Version: "v1", Kind: "NodeList"})
	if err := d.client.List(t.Context(), nodes); err != nil || len(nodes.Items) == 0 {
		t.Skipf("no nodes (a cluster without kwok): %v", err)
	}
	id := suffix(t)
	app := drivers.App{Name: "health-" + id}
	t.Cleanup(func() { cleanupApp(t, d, app) })
	f := fixture{replicas: 1}
	deploy := f.bundle().Objects[0]
	deploy.SetName("h-" + id)
	apply(t, d, plan(t, d, app, &manifests.Bundle{Objects: []*unstructured.Unstructured{deploy}}), true)
	seen := map[drivers.HealthStatus]bool{}
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		h, err := d.Health(t.Context(), app)
		if err != nil {
			t.Fatal(err)
		}
		seen[h.Status] = true
		if h.Status == drivers.HealthHealthy {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("deployment never Healthy; statuses seen: %v", seen)
}
