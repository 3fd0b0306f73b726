package kubernetes

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/shipwatch/shipwatch/drivers"
)

// ApplySet (KEP-3659) keys, as kubectl spells them, so kubectl and other tools can read the
// inventory: `kubectl get all -l applyset.kubernetes.io/part-of=<id>`.
const (
	LabelApplySetID     = "applyset.kubernetes.io/id"
	LabelApplySetPartOf = "applyset.kubernetes.io/part-of"
	AnnotationTooling   = "applyset.kubernetes.io/tooling"
	AnnotationGroupKind = "applyset.kubernetes.io/contains-group-kinds"
	AnnotationNamespace = "applyset.kubernetes.io/additional-namespaces"
	// inventoryKey holds the exact member list in the parent Secret's data: listing every
	// group-kind by label would also find objects a crash left half-applied, but costs a
	// LIST per kind and namespace on every plan.
	inventoryKey = "shipwatch.dev-inventory.json"
	toolName     = "shipwatch"
	// AnnotationRevision on the parent is the revision whose apply last completed: written
	// in the same request as the final member list, never before, so that a restarted
	// daemon or a new leader reads from the cluster what runs (drivers.LiveRevision).
	AnnotationRevision = "shipwatch.dev/revision"
)

// ErrForeignApplySet is wrapped when an app's inventory parent exists but belongs to another
// tool (or is not an ApplySet parent at all): shipwatch refuses to take it over. Such errors
// also wrap drivers.ErrInvalidSpec: retrying cannot help until a person resolves the clash.
var ErrForeignApplySet = errors.New("applyset parent belongs to another tool")

// ApplySetID computes the ApplySet id of a parent object exactly as kubectl does:
// "applyset-" + base64url-unpadded(sha256("<name>.<namespace>.<kind>.<group>")) + "-v1".
func ApplySetID(name, namespace, kind, group string) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{name, namespace, kind, group}, ".")))
	return "applyset-" + base64.RawURLEncoding.EncodeToString(sum[:]) + "-v1"
}

// ParentName is the name of the Secret that holds an app's inventory.
func ParentName(app string) string { return "shipwatch-" + app }

// member is one object recorded in an inventory. Version is kept so the object can be read
// back without discovery guessing; identity (key) ignores it.
type member struct {
	Group     string `json:"group,omitempty"`
	Version   string `json:"version"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

func memberOf(u *unstructured.Unstructured) member {
	gvk := u.GroupVersionKind()
	return member{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}
}

func (m member) gvk() schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: m.Group, Version: m.Version, Kind: m.Kind}
}

func (m member) gk() schema.GroupKind { return schema.GroupKind{Group: m.Group, Kind: m.Kind} }

func (m member) key() string { return m.Group + "/" + m.Kind + "/" + m.Namespace + "/" + m.Name }

func (m member) ref() drivers.Ref {
	return drivers.Ref{Kind: m.Kind, Namespace: m.Namespace, Name: m.Name}
}

// object returns an empty object addressed like m, for GET and DELETE.
func (m member) object() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(m.gvk())
	u.SetNamespace(m.Namespace)
	u.SetName(m.Name)
	return u
}

func compareMembers(a, b member) int {
	return cmp.Or(cmp.Compare(a.Group, b.Group), cmp.Compare(a.Kind, b.Kind),
		cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

// inventory is an app's ApplySet as read from (or to be written to) the cluster.
type inventory struct {
	App       string
	Namespace string
	ID        string
	Members   []member
	// Exists is false when no parent Secret was found.
	Exists bool
	// Tooling is the parent's tooling annotation as read.
	Tooling string
	// Revision is the parent's revision annotation: the last completely applied revision.
	Revision string
}

func (d *Driver) newInventory(app string) (*inventory, error) {
	name := ParentName(app)
	if errs := validation.IsValidLabelValue(app); len(errs) > 0 {
		return nil, fmt.Errorf("app name %q is not a valid label value: %s: %w", app, strings.Join(errs, "; "), drivers.ErrInvalidSpec)
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return nil, fmt.Errorf("inventory name %q: %s: %w", name, strings.Join(errs, "; "), drivers.ErrInvalidSpec)
	}
	return &inventory{App: app, Namespace: d.namespace, ID: ApplySetID(name, d.namespace, "Secret", "")}, nil
}

// readInventory loads the app's ApplySet parent. A missing parent is an empty inventory; a
// parent owned by another tool is ErrForeignApplySet.
func (d *Driver) readInventory(ctx context.Context, app string) (*inventory, error) {
	inv, err := d.newInventory(app)
	if err != nil {
		return nil, err
	}
	parent := &unstructured.Unstructured{}
	parent.SetGroupVersionKind(schema.GroupVersionKind{Version: "v1", Kind: "Secret"})
	key := client.ObjectKey{Namespace: inv.Namespace, Name: ParentName(app)}
	if err := d.client.Get(ctx, key, parent); err != nil {
		if apierrors.IsNotFound(err) {
			return inv, nil
		}
		return nil, fmt.Errorf("read inventory %s: %w", key, err)
	}
	if err := checkParent(parent, inv.ID); err != nil {
		return nil, fmt.Errorf("inventory %s: %w", key, err)
	}
	inv.Exists = true
	inv.Tooling = parent.GetAnnotations()[AnnotationTooling]
	inv.Revision = parent.GetAnnotations()[AnnotationRevision]
	raw, _, _ := unstructured.NestedString(parent.Object, "data", inventoryKey)
	if raw == "" {
		return inv, nil
	}
	members, err := decodeMembers(raw)
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %w", key, err)
	}
	inv.Members = members
	return inv, nil
}

// checkParent refuses a parent that another tool manages, per the ApplySet rule that a tool
// must not change an ApplySet whose tooling annotation names another tool.
func checkParent(parent *unstructured.Unstructured, id string) error {
	tooling, ok := parent.GetAnnotations()[AnnotationTooling]
	if !ok {
		return fmt.Errorf("no %s annotation: %w: %w", AnnotationTooling, ErrForeignApplySet, drivers.ErrInvalidSpec)
	}
	if tool, _, _ := strings.Cut(tooling, "/"); tool != toolName {
		return fmt.Errorf("tooling is %q: %w: %w", tooling, ErrForeignApplySet, drivers.ErrInvalidSpec)
	}
	if got := parent.GetLabels()[LabelApplySetID]; got != id {
		return fmt.Errorf("label %s is %q, want %q: %w: %w", LabelApplySetID, got, id, ErrForeignApplySet, drivers.ErrInvalidSpec)
	}
	return nil
}

func decodeMembers(b64 string) ([]member, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("decode member list: %w", err)
	}
	var members []member
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil, fmt.Errorf("decode member list: %w", err)
	}
	return members, nil
}

// parentObject renders the ApplySet parent Secret that records members and revision.
func (d *Driver) parentObject(inv *inventory, members []member, revision string) (*unstructured.Unstructured, error) {
	members = slices.Clone(members)
	slices.SortFunc(members, compareMembers)
	members = slices.CompactFunc(members, func(a, b member) bool { return a.key() == b.key() })
	raw, err := json.Marshal(members)
	if err != nil {
		return nil, fmt.Errorf("encode member list: %w", err)
	}
	var kinds, namespaces []string
	for _, m := range members {
		kinds = append(kinds, m.gk().String())
		if m.Namespace != "" && m.Namespace != inv.Namespace {
			namespaces = append(namespaces, m.Namespace)
		}
	}
	slices.Sort(kinds)
	slices.Sort(namespaces)
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(schema.GroupVersionKind{Version: "v1", Kind: "Secret"})
	u.SetNamespace(inv.Namespace)
	u.SetName(ParentName(inv.App))
	u.SetLabels(map[string]string{LabelApplySetID: inv.ID, LabelApp: inv.App})
	annotations := map[string]string{
		AnnotationTooling:   toolName + "/" + d.version,
		AnnotationGroupKind: strings.Join(slices.Compact(kinds), ","),
		AnnotationNamespace: strings.Join(slices.Compact(namespaces), ","),
	}
	if revision != "" {
		annotations[AnnotationRevision] = revision
	}
	u.SetAnnotations(annotations)
	u.Object["type"] = "Opaque"
	u.Object["data"] = map[string]any{inventoryKey: base64.StdEncoding.EncodeToString(raw)}
	return u, nil
}

// writeInventory records members and revision in the app's parent Secret with server-side
// apply.
func (d *Driver) writeInventory(ctx context.Context, inv *inventory, members []member, revision string) error {
	parent, err := d.parentObject(inv, members, revision)
	if err != nil {
		return err
	}
	if err := d.client.Apply(ctx, client.ApplyConfigurationFromUnstructured(parent), client.ForceOwnership, client.FieldOwner(FieldManager)); err != nil {
		return fmt.Errorf("write inventory %s/%s: %w", inv.Namespace, parent.GetName(), err)
	}
	inv.Exists = true
	inv.Tooling = toolName + "/" + d.version
	inv.Members = members
	inv.Revision = revision
	return nil
}

// deleteInventory removes the app's parent Secret if it exists.
func (d *Driver) deleteInventory(ctx context.Context, inv *inventory) error {
	if !inv.Exists {
		return nil
	}
	parent := &unstructured.Unstructured{}
	parent.SetGroupVersionKind(schema.GroupVersionKind{Version: "v1", Kind: "Secret"})
	parent.SetNamespace(inv.Namespace)
	parent.SetName(ParentName(inv.App))
	if err := d.client.Delete(ctx, parent); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete inventory %s/%s: %w", inv.Namespace, parent.GetName(), err)
	}
	inv.Exists, inv.Members, inv.Revision = false, nil, ""
	return nil
}
