package kubernetes

import (
	"errors"
	"strings"
	"testing"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/shipwatch/shipwatch/drivers"
)

func TestApplySetID(t *testing.T) {
	// Expected values were computed outside Go, from the KEP's definition:
	//   printf '<name>.<namespace>.<kind>.<group>' | openssl dgst -sha256 -binary | base64 | tr '+/' '-_' | tr -d '='
	// The first is also the id in kubectl's own applyset tests.
	cases := []struct{ name, ns, kind, group, want string }{
		{"my-set", "test", "Secret", "", "applyset-0eFHV8ySqp7XoShsGvyWFQD3s96yqwHmzc4e0HR1dsY-v1"},
		{"shipwatch-web", "default", "Secret", "", "applyset-n6LstFDhpSu7PareFt5COKGSEJREZxWT_nlbByRSzfQ-v1"},
		{"set", "ns", "Widget", "example.com", "applyset-sxVVXaxTgaAwO1fUiRG2gmG42c75QYlyboOe18wBxrA-v1"},
	}
	for _, c := range cases {
		if got := ApplySetID(c.name, c.ns, c.kind, c.group); got != c.want {
			t.Errorf("ApplySetID(%s, %s, %s, %s) = %s, want %s", c.name, c.ns, c.kind, c.group, got, c.want)
		}
	}
}

func obj(apiVersion, kind, ns, name string, extra map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": apiVersion, "kind": kind,
		"metadata": map[string]any{"name": name},
	}}
	if ns != "" {
		u.SetNamespace(ns)
	}
	for k, v := range extra {
		u.Object[k] = v
	}
	return u
}

func TestRenderDiffMasksSecrets(t *testing.T) {
	live := obj("v1", "Secret", "ns", "creds", map[string]any{
		"data": map[string]any{"same": "c2FtZS12YWx1ZQ==", "changed": "b2xkLXZhbHVl", "removed": "Z29uZS12YWx1ZQ=="},
	})
	live.SetResourceVersion("42")
	live.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: "kubectl"}})
	desired := obj("v1", "Secret", "ns", "creds", map[string]any{
		"data":       map[string]any{"same": "c2FtZS12YWx1ZQ==", "changed": "bmV3LXZhbHVl", "added": "YWRkZWQtdmFsdWU="},
		"stringData": map[string]any{"plain": "hunter2-plaintext"},
	})
	diff, err := renderDiff("Secret/ns/creds", live, desired)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"c2FtZS12YWx1ZQ==", "b2xkLXZhbHVl", "Z29uZS12YWx1ZQ==", "bmV3LXZhbHVl", "YWRkZWQtdmFsdWU=", "hunter2"} {
		if strings.Contains(diff, secret) {
			t.Errorf("diff leaks secret value %q:\n%s", secret, diff)
		}
	}
	for _, want := range []string{"-  changed: '*** (before)'", "+  changed: '*** (after)'", "-  removed: '***'", "+  added: '***'", "+  plain: '***'"} {
		if !strings.Contains(diff, want) {
			t.Errorf("diff lacks %q:\n%s", want, diff)
		}
	}
	if strings.Contains(diff, "-  same") || strings.Contains(diff, "+  same") {
		t.Errorf("an unchanged key shows in the diff:\n%s", diff)
	}
	if strings.Contains(diff, "resourceVersion") || strings.Contains(diff, "managedFields") {
		t.Errorf("server-owned fields in diff:\n%s", diff)
	}
	if live.Object["data"].(map[string]any)["changed"] != "b2xkLXZhbHVl" {
		t.Error("renderDiff modified its input")
	}
}

func TestRenderDiffPlainAndNoop(t *testing.T) {
	a := obj("v1", "ConfigMap", "ns", "cfg", map[string]any{"data": map[string]any{"k": "v1"}})
	b := obj("v1", "ConfigMap", "ns", "cfg", map[string]any{"data": map[string]any{"k": "v2"}})
	a.SetUID("u-1")
	a.SetGeneration(3)
	a.Object["status"] = map[string]any{"x": "y"}
	diff, err := renderDiff("ConfigMap/ns/cfg", a, b)
	if err != nil {
		t.Fatal(err)
	}
	want := "--- live/ConfigMap/ns/cfg\n+++ desired/ConfigMap/ns/cfg\n@@ -1,6 +1,6 @@\n apiVersion: v1\n data:\n-  k: v1\n+  k: v2\n kind: ConfigMap\n metadata:\n   name: cfg\n"
	if diff != want {
		t.Errorf("diff:\n%s\nwant:\n%s", diff, want)
	}
	same, err := renderDiff("x", a, a)
	if err != nil || same != "" {
		t.Errorf("identical objects: diff %q, err %v", same, err)
	}
}

// testMapper knows a few built-in kinds, as discovery would report them.
func testMapper() meta.RESTMapper {
	m := meta.NewDefaultRESTMapper(nil)
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, meta.RESTScopeNamespace)
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "Secret"}, meta.RESTScopeNamespace)
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}, meta.RESTScopeRoot)
	m.Add(schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, meta.RESTScopeNamespace)
	m.Add(schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"}, meta.RESTScopeRoot)
	return m
}

func TestPrepareLabelsNamespacesOrder(t *testing.T) {
	d := &Driver{mapper: testMapper(), namespace: "apps", version: "test"}
	inv, err := d.newInventory("web")
	if err != nil {
		t.Fatal(err)
	}
	crd := obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "widgets.example.com", map[string]any{
		"spec": map[string]any{"group": "example.com", "scope": "Namespaced", "names": map[string]any{"kind": "Widget"}},
	})
	in := []*unstructured.Unstructured{
		obj("apps/v1", "Deployment", "", "web", nil),
		obj("example.com/v1", "Widget", "", "w", nil),
		obj("v1", "ConfigMap", "other", "cfg", nil),
		obj("v1", "Namespace", "ignored", "other", nil),
		crd,
	}
	in[0].SetLabels(map[string]string{"tier": "front"})
	out, err := d.prepare("web", inv, in)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range out {
		got = append(got, refOf(o).String())
		if o.GetLabels()[LabelApp] != "web" || o.GetLabels()[LabelApplySetPartOf] != inv.ID {
			t.Errorf("%s labels = %v", refOf(o), o.GetLabels())
		}
	}
	want := []string{"CustomResourceDefinition/widgets.example.com", "Namespace/other",
		"ConfigMap/other/cfg", "Deployment/apps/web", "Widget/apps/w"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("prepared order/namespaces:\n got %v\nwant %v", got, want)
	}
	if out[3].GetLabels()["tier"] != "front" {
		t.Error("user label lost")
	}
	if in[0].GetNamespace() != "" || len(in[0].GetLabels()) != 1 {
		t.Error("prepare modified the bundle's objects")
	}

	dup := []*unstructured.Unstructured{obj("v1", "ConfigMap", "", "a", nil), obj("v1", "ConfigMap", "apps", "a", nil)}
	if _, err := d.prepare("web", inv, dup); !errors.Is(err, drivers.ErrInvalidSpec) {
		t.Errorf("duplicate: err = %v, want ErrInvalidSpec", err)
	}
	unknown := []*unstructured.Unstructured{obj("nope.io/v1", "Gadget", "", "g", nil)}
	if _, err := d.prepare("web", inv, unknown); !errors.Is(err, drivers.ErrInvalidSpec) {
		t.Errorf("unknown kind: err = %v, want ErrInvalidSpec", err)
	}
	parent := []*unstructured.Unstructured{obj("v1", "Secret", "apps", ParentName("web"), nil)}
	if _, err := d.prepare("web", inv, parent); !errors.Is(err, drivers.ErrInvalidSpec) {
		t.Errorf("parent as desired: err = %v, want ErrInvalidSpec", err)
	}
	if _, err := d.newInventory("Bad Name"); !errors.Is(err, drivers.ErrInvalidSpec) {
		t.Errorf("bad app name: err = %v", err)
	}
}

func TestParentObject(t *testing.T) {
	d := &Driver{namespace: "apps", version: "1.2.3"}
	inv, err := d.newInventory("web")
	if err != nil {
		t.Fatal(err)
	}
	members := []member{
		{Group: "apps", Version: "v1", Kind: "Deployment", Namespace: "apps", Name: "web"},
		{Version: "v1", Kind: "ConfigMap", Namespace: "zeta", Name: "b"},
		{Version: "v1", Kind: "ConfigMap", Namespace: "alpha", Name: "a"},
		{Version: "v1", Kind: "Namespace", Name: "zeta"},
		{Group: "apps", Version: "v1", Kind: "Deployment", Namespace: "apps", Name: "web"},
	}
	p, err := d.parentObject(inv, members, "0123456789abcdef0123456789abcdef01234567")
	if err != nil {
		t.Fatal(err)
	}
	ann := p.GetAnnotations()
	if got := ann[AnnotationRevision]; got != "0123456789abcdef0123456789abcdef01234567" {
		t.Errorf("revision = %q", got)
	}
	if got := ann[AnnotationGroupKind]; got != "ConfigMap,Deployment.apps,Namespace" {
		t.Errorf("group kinds = %q", got)
	}
	if got := ann[AnnotationNamespace]; got != "alpha,zeta" {
		t.Errorf("additional namespaces = %q", got)
	}
	if got := ann[AnnotationTooling]; got != "shipwatch/1.2.3" {
		t.Errorf("tooling = %q", got)
	}
	if p.GetLabels()[LabelApplySetID] != ApplySetID("shipwatch-web", "apps", "Secret", "") {
		t.Errorf("id label = %q", p.GetLabels()[LabelApplySetID])
	}
	if err := checkParent(p, inv.ID); err != nil {
		t.Errorf("own parent refused: %v", err)
	}
	raw, _, _ := unstructured.NestedString(p.Object, "data", inventoryKey)
	back, err := decodeMembers(raw)
	if err != nil || len(back) != 4 || back[0].Kind != "ConfigMap" || back[0].Namespace != "alpha" {
		t.Errorf("members round trip = %+v, %v", back, err)
	}

	foreign := p.DeepCopy()
	foreign.SetAnnotations(map[string]string{AnnotationTooling: "kubectl/v1.36.3"})
	if err := checkParent(foreign, inv.ID); !errors.Is(err, ErrForeignApplySet) || !errors.Is(err, drivers.ErrInvalidSpec) {
		t.Errorf("kubectl's applyset: err = %v, want ErrForeignApplySet", err)
	}
	other := p.DeepCopy()
	other.SetLabels(map[string]string{LabelApplySetID: "applyset-x-v1"})
	if err := checkParent(other, inv.ID); !errors.Is(err, ErrForeignApplySet) {
		t.Errorf("wrong id: err = %v, want ErrForeignApplySet", err)
	}
}

func TestHealthOf(t *testing.T) {
	cases := map[status.Status]drivers.HealthStatus{
		status.CurrentStatus:     drivers.HealthHealthy,
		status.InProgressStatus:  drivers.HealthProgressing,
		status.TerminatingStatus: drivers.HealthProgressing,
		status.FailedStatus:      drivers.HealthDegraded,
		status.NotFoundStatus:    drivers.HealthMissing,
		status.UnknownStatus:     drivers.HealthUnknown,
	}
	for in, want := range cases {
		if got := healthOf(in); got != want {
			t.Errorf("healthOf(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestClassifyImmutable(t *testing.T) {
	gk := schema.GroupKind{Kind: "Secret"}
	err := apierrors.NewInvalid(gk, "creds", field.ErrorList{
		field.Invalid(field.NewPath("data"), "topsecretvalue", "field is immutable when `immutable` is set"),
	})
	fields, immutable := rejectedFields(err)
	if !immutable || len(fields) != 1 || fields[0] != "data" {
		t.Errorf("rejectedFields = %v, %v", fields, immutable)
	}
	got := classify(obj("v1", "Secret", "ns", "creds", nil), err)
	if !errors.Is(got, drivers.ErrInvalidSpec) {
		t.Errorf("classify = %v, want ErrInvalidSpec", got)
	}
	if strings.Contains(got.Error(), "topsecretvalue") {
		t.Errorf("secret value in error: %v", got)
	}
	cm := classify(obj("v1", "ConfigMap", "ns", "c", nil), apierrors.NewInvalid(schema.GroupKind{Kind: "ConfigMap"}, "c",
		field.ErrorList{field.Invalid(field.NewPath("spec", "selector"), "x", "field is immutable")}))
	if !errors.Is(cm, drivers.ErrInvalidSpec) || !strings.Contains(cm.Error(), "spec.selector") || !strings.Contains(cm.Error(), AnnotationRecreate) {
		t.Errorf("classify immutable = %v", cm)
	}
	if e := classify(nil, apierrors.NewServiceUnavailable("busy")); errors.Is(e, drivers.ErrInvalidSpec) {
		t.Errorf("transient error classed invalid: %v", e)
	}
}

func TestRenderDiffCreateHasNoPhantomLines(t *testing.T) {
	diff, err := renderDiff("ConfigMap/ns/c", nil, obj("v1", "ConfigMap", "ns", "c", nil))
	if err != nil {
		t.Fatal(err)
	}
	want := "--- live/ConfigMap/ns/c\n+++ desired/ConfigMap/ns/c\n@@ -0,0 +1,5 @@\n+apiVersion: v1\n+kind: ConfigMap\n+metadata:\n+  name: c\n+  namespace: ns\n"
	if diff != want {
		t.Errorf("create diff:\n%q\nwant:\n%q", diff, want)
	}
}
