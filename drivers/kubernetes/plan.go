package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/fluxcd/pkg/ssa"
	ssaerrors "github.com/fluxcd/pkg/ssa/errors"
	"github.com/fluxcd/pkg/ssa/utils"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/manifests"
)

// payload is what Apply needs from Plan.
type payload struct {
	inventory *inventory
	// objects are the prepared desired objects in apply order.
	objects []*unstructured.Unstructured
	// planned holds each object's planned change by member key.
	planned map[string]drivers.Change
	// prune lists inventory members to delete, in delete order (reverse apply order).
	prune []member
	// force holds, by member key, whether Apply takes conflicting fields: objects the app
	// applied before, or every object under forceConflicts (see conflict.go).
	force map[string]bool
}

// Plan compares the bundle's objects with the cluster through server-side dry-run applies and
// plans deletes for inventory members no longer desired. It writes nothing. An object found
// unchanged before is not dry-run again while the watch cache shows the same live
// resourceVersion and the desired object is the same (see objectCache).
func (d *Driver) Plan(ctx context.Context, app drivers.App, bundle *manifests.Bundle) (*drivers.Plan, error) {
	inv, err := d.readInventory(ctx, app.Name)
	if err != nil {
		return nil, fmt.Errorf("app %s: %w", app.Name, err)
	}
	var desired []*unstructured.Unstructured
	if !bundle.Empty() {
		desired = bundle.Objects
	}
	objects, err := d.prepare(app.Name, inv, desired)
	if err != nil {
		return nil, fmt.Errorf("app %s: %w", app.Name, err)
	}
	p := &payload{inventory: inv, objects: objects, planned: map[string]drivers.Change{}, force: map[string]bool{}}
	plan := &drivers.Plan{App: app, Payload: p, Live: drivers.LiveRevision{Revision: inv.Revision, Complete: true}}
	if err := d.planObjects(ctx, app.Name, p, plan); err != nil {
		return nil, fmt.Errorf("app %s: %w", app.Name, err)
	}
	deletes, err := d.planPrune(ctx, app.Name, inv, objects)
	if err != nil {
		return nil, fmt.Errorf("app %s: %w", app.Name, err)
	}
	for _, del := range deletes {
		p.prune = append(p.prune, del.member)
		plan.Changes = append(plan.Changes, del.change)
	}
	return plan, nil
}

// planObjects plans every desired object into p and plan. Field conflicts are collected so
// one error names all of them; any other error ends the plan at once.
func (d *Driver) planObjects(ctx context.Context, app string, p *payload, plan *drivers.Plan) error {
	listed := map[string]bool{}
	for _, m := range p.inventory.Members {
		listed[m.key()] = true
	}
	scopes := bundleScopes(p.objects)
	var found conflicts
	for _, obj := range p.objects {
		key := memberOf(obj).key()
		seen := d.cache.observe(ctx, app, obj)
		c, memoised := d.cache.reuse(seen)
		if !memoised {
			var force bool
			var err error
			c, force, err = d.planObject(ctx, app, listed[key], obj, scopes, seen.live)
			if ce, ok := errors.AsType[*conflictError](err); ok {
				found = append(found, ce)
				continue
			}
			if err != nil {
				return fmt.Errorf("plan %s: %w", refOf(obj), err)
			}
			p.force[key] = force
			d.cache.remember(seen, c)
		}
		p.planned[key] = c
		plan.Changes = append(plan.Changes, c)
	}
	if len(found) > 0 {
		return found
	}
	return nil
}

func refOf(u *unstructured.Unstructured) drivers.Ref {
	return drivers.Ref{Kind: u.GetKind(), Namespace: u.GetNamespace(), Name: u.GetName()}
}

// bundleInfo is what the bundle itself says about kinds and namespaces, for objects whose
// CRD or Namespace the cluster does not have yet.
type bundleInfo struct {
	// crdScope maps a group-kind defined by a CRD in the bundle to "Namespaced" or "Cluster".
	crdScope map[schema.GroupKind]string
	// namespaces the bundle creates.
	namespaces map[string]bool
}

func bundleScopes(objects []*unstructured.Unstructured) bundleInfo {
	info := bundleInfo{crdScope: map[schema.GroupKind]string{}, namespaces: map[string]bool{}}
	for _, o := range objects {
		gvk := o.GroupVersionKind()
		switch {
		case gvk.Kind == "Namespace" && gvk.Group == "":
			info.namespaces[o.GetName()] = true
		case gvk.Kind == "CustomResourceDefinition" && gvk.Group == "apiextensions.k8s.io":
			group, _, _ := unstructured.NestedString(o.Object, "spec", "group")
			kind, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
			scope, _, _ := unstructured.NestedString(o.Object, "spec", "scope")
			info.crdScope[schema.GroupKind{Group: group, Kind: kind}] = scope
		}
	}
	return info
}

// prepare copies the desired objects, defaults namespaces, adds the ownership labels, rejects
// duplicates and sorts them in apply order (ssa's: CRDs and Namespaces first).
func (d *Driver) prepare(app string, inv *inventory, desired []*unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	copies := make([]*unstructured.Unstructured, 0, len(desired))
	for _, o := range desired {
		copies = append(copies, o.DeepCopy())
	}
	info := bundleScopes(copies)
	seen := map[string]bool{}
	for _, o := range copies {
		gvk := o.GroupVersionKind()
		if gvk.Kind == "" || gvk.Version == "" || o.GetName() == "" {
			return nil, fmt.Errorf("object %q of kind %q: apiVersion, kind and metadata.name are required: %w",
				o.GetName(), o.GetKind(), drivers.ErrInvalidSpec)
		}
		namespaced, err := d.namespaced(gvk, info)
		if err != nil {
			return nil, err
		}
		switch {
		case namespaced && o.GetNamespace() == "":
			o.SetNamespace(d.namespace)
		case !namespaced:
			o.SetNamespace("")
		}
		m := memberOf(o)
		if seen[m.key()] {
			return nil, fmt.Errorf("%s appears twice: %w", refOf(o), drivers.ErrInvalidSpec)
		}
		seen[m.key()] = true
		if m.Group == "" && m.Kind == "Secret" && m.Namespace == inv.Namespace && m.Name == ParentName(app) {
			return nil, fmt.Errorf("%s is the app's inventory and cannot be desired: %w", refOf(o), drivers.ErrInvalidSpec)
		}
		labels := o.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[LabelApp] = app
		labels[LabelApplySetPartOf] = inv.ID
		o.SetLabels(labels)
	}
	sort.Stable(ssa.SortableUnstructureds(copies))
	return copies, nil
}

// namespaced says whether objects of gvk live in a namespace, asking the bundle's CRDs first
// (they are what is about to be applied), then the cluster.
func (d *Driver) namespaced(gvk schema.GroupVersionKind, info bundleInfo) (bool, error) {
	if scope, ok := info.crdScope[gvk.GroupKind()]; ok {
		return scope != "Cluster", nil
	}
	mapping, err := d.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		if meta.IsNoMatchError(err) {
			return false, fmt.Errorf("kind %s: not served by the cluster nor defined by a CRD in the app: %w", gvk, drivers.ErrInvalidSpec)
		}
		return false, fmt.Errorf("kind %s: %w", gvk, err)
	}
	return mapping.Scope.Name() == meta.RESTScopeNameNamespace, nil
}

// planObject dry-runs one object and turns the result into a change, and says whether Apply
// writes it with force (see conflict.go). listed says whether the app's inventory holds it.
// cached is the live object from the watch cache (nil when the cache cannot say); it saves
// the GET whenever the dry-run shows the cache is current.
func (d *Driver) planObject(ctx context.Context, app string, listed bool, obj *unstructured.Unstructured, info bundleInfo, cached *unstructured.Unstructured) (drivers.Change, bool, error) {
	ref := refOf(obj)
	name := ref.String()
	gvk := obj.GroupVersionKind()
	if _, err := d.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
		if _, fromBundle := info.crdScope[gvk.GroupKind()]; fromBundle && meta.IsNoMatchError(err) {
			c, err := createChange(name, ref, obj, "new; its CRD is created first")
			return c, false, err
		}
	}
	// Without a conflict force changes nothing, so the first dry-run is forced only when the
	// app says so; a conflict is then either drift (forced below) or reported.
	merged, err := d.serverApply(ctx, obj, dryRun, d.forces(app))
	conflict := err != nil && isFieldConflict(err)
	if conflict {
		merged, err = d.serverApply(ctx, obj, dryRun, true)
	}
	if err != nil {
		if apierrors.IsNotFound(err) && info.namespaces[obj.GetNamespace()] {
			c, err := createChange(name, ref, obj, "new; its namespace is created first")
			return c, false, err
		}
		c, err := d.planFailed(ctx, ref, obj, err)
		return c, false, err
	}
	if merged.GetResourceVersion() == "" {
		c, err := createChange(name, ref, obj, "not in the cluster")
		return c, false, err
	}
	// A dry-run leaves the resourceVersion as stored, so an equal one proves the cached copy
	// is the object the server merged into.
	live := cached
	if live == nil || live.GetResourceVersion() != merged.GetResourceVersion() {
		if live, err = d.get(ctx, memberOf(obj)); err != nil {
			return drivers.Change{}, false, err
		}
		if live == nil {
			c, err := createChange(name, ref, obj, "not in the cluster")
			return c, false, err
		}
	}
	if owner := live.GetLabels()[LabelApp]; owner != "" && owner != app {
		return drivers.Change{}, false, fmt.Errorf("%s belongs to app %q: %w", name, owner, drivers.ErrInvalidSpec)
	}
	c, err := d.liveChange(app, listed, conflict, live, merged)
	return c, d.forces(app) || appliedBefore(app, listed, live), err
}

// liveChange compares an existing object with the dry-run's result. conflict says the
// dry-run without force hit fields of other managers (merged is then the forced result):
// on an object the app applied before that is drift, on any other a conflict unless the
// app forces conflicts.
func (d *Driver) liveChange(app string, listed, conflict bool, live, merged *unstructured.Unstructured) (drivers.Change, error) {
	ref := refOf(merged)
	ours := appliedBefore(app, listed, live)
	taken, err := takenFields(live, merged)
	if err != nil {
		return drivers.Change{}, fmt.Errorf("%s: %w", ref, err)
	}
	if conflict && !ours {
		return drivers.Change{}, &conflictError{ref: ref, owners: taken}
	}
	diff, err := renderDiff(ref.String(), live, merged)
	if err != nil || diff == "" {
		return drivers.Change{Ref: ref, Action: drivers.ActionUnchanged}, err
	}
	reason := driftReason(taken)
	if !ours {
		reason = takeoverReason(taken)
	}
	return drivers.Change{Ref: ref, Action: drivers.ActionUpdate, Reason: reason, Diff: diff}, nil
}

// applyMode says whether serverApply writes.
type applyMode int

const (
	dryRun applyMode = iota
	write
)

// serverApply server-side applies obj as shipwatch and returns the object the server
// answered with. With force it takes conflicting fields from other managers (healing
// drift); without, such fields are a conflict error. A dry-run answers what the apply would
// make of the live object without storing it.
func (d *Driver) serverApply(ctx context.Context, obj *unstructured.Unstructured, mode applyMode, force bool) (*unstructured.Unstructured, error) {
	out := obj.DeepCopy()
	// API servers from 1.31 on reject a CRD whose conversion caBundle does not parse; ssa
	// drops it the same way, so a bundle that works with Flux works here.
	utils.RemoveCABundleFromCRD(out)
	opts := []client.ApplyOption{client.FieldOwner(FieldManager)}
	if force {
		opts = append(opts, client.ForceOwnership)
	}
	if mode == dryRun {
		opts = append(opts, client.DryRunAll)
	}
	if err := d.client.Apply(ctx, client.ApplyConfigurationFromUnstructured(out), opts...); err != nil {
		return nil, err
	}
	return out, nil
}

func createChange(name string, ref drivers.Ref, obj *unstructured.Unstructured, reason string) (drivers.Change, error) {
	diff, err := renderDiff(name, nil, obj)
	if err != nil {
		return drivers.Change{}, err
	}
	return drivers.Change{Ref: ref, Action: drivers.ActionCreate, Reason: reason, Diff: diff}, nil
}

// planFailed turns a failed dry-run into a recreate (an immutable field changed on an object
// that allows it) or an error that names the rejected fields.
func (d *Driver) planFailed(ctx context.Context, ref drivers.Ref, obj *unstructured.Unstructured, err error) (drivers.Change, error) {
	fields, immutable := rejectedFields(err)
	if immutable && obj.GetAnnotations()[AnnotationRecreate] == "true" {
		live, gerr := d.get(ctx, memberOf(obj))
		if gerr != nil {
			return drivers.Change{}, gerr
		}
		diff, derr := renderDiff(ref.String(), live, obj)
		if derr != nil {
			return drivers.Change{}, derr
		}
		reason := "immutable field changed: " + strings.Join(fields, ", ")
		return drivers.Change{Ref: ref, Action: drivers.ActionRecreate, Reason: reason, Diff: diff}, nil
	}
	return drivers.Change{}, classify(obj, err)
}

// rejectedFields lists the fields an API error names, and whether any is immutable.
func rejectedFields(err error) (fields []string, immutable bool) {
	var status apierrors.APIStatus
	if !errors.As(err, &status) || status.Status().Details == nil {
		return nil, false
	}
	for _, c := range status.Status().Details.Causes {
		if c.Field != "" {
			fields = append(fields, c.Field)
		}
		if strings.Contains(c.Message, "immutable") {
			immutable = true
		}
	}
	slices.Sort(fields)
	return slices.Compact(fields), immutable
}

// classify wraps errors caused by the object itself in ErrInvalidSpec; a field conflict is a
// conflictError (ErrFieldConflict, also an invalid spec). For Secrets the API
// server's message may quote values, so only the rejected field names are kept.
func classify(obj *unstructured.Unstructured, err error) error {
	if isFieldConflict(err) {
		// An object applied without force (new at plan time, or not the app's) met fields
		// of another manager: the fields and managers are named, values never are.
		return &conflictError{ref: refOf(obj), owners: conflictCauses(err)}
	}
	invalid := apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || meta.IsNoMatchError(err) ||
		isAdmissionDenial(err)
	if isSecret(obj) {
		fields, immutable := rejectedFields(err)
		what := "rejected"
		if immutable {
			what = "immutable field changed"
		}
		err = fmt.Errorf("secret %s/%s %s (%s, fields: %s)", obj.GetNamespace(), obj.GetName(), what,
			apierrors.ReasonForError(err), strings.Join(fields, ", "))
	} else if fields, immutable := rejectedFields(err); immutable {
		err = fmt.Errorf("immutable field changed (%s; annotate %s: \"true\" to allow a recreate): %w",
			strings.Join(fields, ", "), AnnotationRecreate, err)
	}
	if invalid {
		return fmt.Errorf("%w: %w", drivers.ErrInvalidSpec, err)
	}
	return err
}

// isAdmissionDenial recognises a refusal of the object by the API server: a validating
// webhook, an admission policy or RBAC, all reported as Forbidden. The status carries no
// field that tells them apart (only the message does, and messages are not an API), so all
// count as a problem of the desired state; the reconciler still re-plans it every interval.
func isAdmissionDenial(err error) bool {
	var dryRun *ssaerrors.DryRunErr
	if errors.As(err, &dryRun) {
		err = dryRun.Unwrap()
	}
	return apierrors.IsForbidden(err)
}

// get reads the live object for m; nil when it does not exist.
func (d *Driver) get(ctx context.Context, m member) (*unstructured.Unstructured, error) {
	u := m.object()
	if err := d.client.Get(ctx, client.ObjectKeyFromObject(u), u); err != nil {
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("get %s: %w", m.ref(), err)
	}
	return u, nil
}

// pruneChange is a planned delete.
type pruneChange struct {
	member member
	change drivers.Change
}

// planPrune plans the deletion of inventory members that are no longer desired, in reverse
// apply order. Objects that are gone, or no longer carry this app's label, are left alone.
func (d *Driver) planPrune(ctx context.Context, app string, inv *inventory, desired []*unstructured.Unstructured) ([]pruneChange, error) {
	want := map[string]bool{}
	for _, o := range desired {
		want[memberOf(o).key()] = true
	}
	var stale []*unstructured.Unstructured
	for _, m := range inv.Members {
		if !want[m.key()] {
			stale = append(stale, m.object())
		}
	}
	sort.Stable(sort.Reverse(ssa.SortableUnstructureds(stale)))
	var out []pruneChange
	for _, s := range stale {
		m := memberOf(s)
		live, err := d.get(ctx, m)
		if err != nil {
			return nil, err
		}
		if live == nil {
			continue
		}
		if owner := live.GetLabels()[LabelApp]; owner != app {
			d.log.InfoContext(ctx, "inventory member not labelled for app; not pruning",
				"app", app, "resource", m.ref().String())
			continue
		}
		diff, err := renderDiff(m.ref().String(), live, nil)
		if err != nil {
			return nil, err
		}
		out = append(out, pruneChange{member: m, change: drivers.Change{
			Ref: m.ref(), Action: drivers.ActionDelete, Reason: "no longer desired", Diff: diff,
		}})
	}
	return out, nil
}
