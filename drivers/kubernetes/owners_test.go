package kubernetes

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// entry builds one managedFields entry; fields is FieldsV1 JSON.
func entry(manager, subresource, fields string) metav1.ManagedFieldsEntry {
	return metav1.ManagedFieldsEntry{
		Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "apps/v1",
		FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(fields), Subresource: subresource,
	}
}

const (
	ourSpec      = `{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:replicas":{},"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:image":{},"f:name":{}}}}}}}`
	ourNoReplica = `{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:name":{}}}}}}}`
)

func TestTakenFieldsNamesManagerAndField(t *testing.T) {
	live := obj("apps/v1", "Deployment", "ns", "web", nil)
	live.SetManagedFields([]metav1.ManagedFieldsEntry{
		entry(FieldManager, "", ourNoReplica),
		// kubectl edit changed the replicas and the image: the server moved both to it.
		entry("kubectl-edit", "", `{"f:spec":{"f:replicas":{},"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{"f:image":{}}}}}}}`),
		// Shares a label with shipwatch at the same value: not a conflict.
		entry("helm", "", `{"f:metadata":{"f:labels":{"f:app":{}}}}`),
		// Owns a field shipwatch does not set: not shipwatch's business.
		entry("hpa", "", `{"f:metadata":{"f:annotations":{"f:note":{}}}}`),
		// Status writers report; they never count.
		entry("kube-controller-manager", "status", `{"f:status":{"f:replicas":{}}}`),
	})
	merged := obj("apps/v1", "Deployment", "ns", "web", nil)
	merged.SetManagedFields([]metav1.ManagedFieldsEntry{
		entry(FieldManager, "", ourSpec),
		entry("helm", "", `{"f:metadata":{"f:labels":{"f:app":{}}}}`),
		entry("hpa", "", `{"f:metadata":{"f:annotations":{"f:note":{}}}}`),
		entry("kube-controller-manager", "status", `{"f:status":{"f:replicas":{}}}`),
	})
	got, err := takenFields(live, merged)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"kubectl-edit": {
		".spec.replicas",
		`.spec.template.spec.containers[name="web"].image`,
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("takenFields = %v, want %v", got, want)
	}
	reason := driftReason(got)
	wantReason := `differs from desired; kubectl-edit changed .spec.replicas, .spec.template.spec.containers[name="web"].image`
	if reason != wantReason {
		t.Errorf("driftReason = %q, want %q", reason, wantReason)
	}
}

func TestTakenFieldsScaleSubresourceCounts(t *testing.T) {
	// kubectl scale writes through /scale; that is a person changing spec, unlike /status.
	live := obj("apps/v1", "Deployment", "ns", "web", nil)
	live.SetManagedFields([]metav1.ManagedFieldsEntry{
		entry(FieldManager, "", ourNoReplica),
		entry("kubectl", "scale", `{"f:spec":{"f:replicas":{}}}`),
	})
	merged := obj("apps/v1", "Deployment", "ns", "web", nil)
	merged.SetManagedFields([]metav1.ManagedFieldsEntry{entry(FieldManager, "", ourSpec)})
	got, err := takenFields(live, merged)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string][]string{"kubectl": {".spec.replicas"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("takenFields = %v, want %v", got, want)
	}
}

func TestTakenFieldsRejectsBadManagedFields(t *testing.T) {
	live := obj("apps/v1", "Deployment", "ns", "web", nil)
	live.SetManagedFields([]metav1.ManagedFieldsEntry{entry("other", "", `{"f:spec":{"k:not-json":{}}}`)})
	merged := obj("apps/v1", "Deployment", "ns", "web", nil)
	if _, err := takenFields(live, merged); err == nil || !strings.Contains(err.Error(), `"other"`) {
		t.Fatalf("err = %v, want an error naming the manager", err)
	}
}

func TestDriftReasonWithoutOtherManagers(t *testing.T) {
	if got := driftReason(nil); got != "differs from desired" {
		t.Errorf("driftReason(nil) = %q", got)
	}
}

func TestDriftReasonBoundsFieldsAndSortsManagers(t *testing.T) {
	var many []string
	for i := range maxFieldsPerManager + 3 {
		many = append(many, fmt.Sprintf(".data.k%02d", i))
	}
	got := driftReason(map[string][]string{"zeta": many, "alpha": {".spec.x"}})
	if !strings.HasPrefix(got, "differs from desired; alpha changed .spec.x; zeta changed .data.k00") {
		t.Errorf("managers not sorted or fields lost: %q", got)
	}
	if !strings.HasSuffix(got, "and 3 more") || strings.Contains(got, fmt.Sprintf(".data.k%02d", maxFieldsPerManager)) {
		t.Errorf("fields not bounded at %d: %q", maxFieldsPerManager, got)
	}
}
