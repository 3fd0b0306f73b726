package kubernetes

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/fluxcd/cli-utils/pkg/object"
	"github.com/fluxcd/pkg/ssa"
	"github.com/fluxcd/pkg/ssa/utils"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/shipwatch/shipwatch/drivers"
)

// How long Apply waits for CRDs to be Established and for a recreated object to be gone.
const (
	waitInterval = 500 * time.Millisecond
	waitTimeout  = 2 * time.Minute
)

// Apply carries out a plan: cluster definitions (CRDs, Namespaces, ClusterRoles) first, then,
// once the CRDs are Established, everything else, each with one server-side apply (objects
// the plan found unchanged are not written), then the prune, then the final inventory.
// Before anything is created the inventory records the union of old and new members, so a
// crash part-way leaves every object findable for the next prune.
func (d *Driver) Apply(ctx context.Context, plan *drivers.Plan, opts drivers.ApplyOptions) (drivers.ChangeSet, error) {
	p, ok := plan.Payload.(*payload)
	if !ok || p == nil {
		return nil, fmt.Errorf("app %s: apply: plan was not made by the kubernetes driver", plan.App.Name)
	}
	run := &applyRun{d: d, app: plan.App, p: p, opts: opts}
	// Whatever Apply wrote, a memoised "unchanged" for it no longer stands.
	defer d.cache.forget(plan.App.Name, p.touched())
	done, err := run.do(ctx)
	if err != nil {
		return done, fmt.Errorf("app %s: apply: %w", plan.App.Name, err)
	}
	return done, nil
}

// applyRun is the state of one Apply call.
type applyRun struct {
	d    *Driver
	app  drivers.App
	p    *payload
	opts drivers.ApplyOptions
	done drivers.ChangeSet
}

func (r *applyRun) do(ctx context.Context) (drivers.ChangeSet, error) {
	var defs, rest []*unstructured.Unstructured
	for _, o := range r.p.objects {
		if utils.IsClusterDefinition(o) {
			defs = append(defs, o)
		} else {
			rest = append(rest, o)
		}
	}
	union := slices.Clone(r.p.inventory.Members)
	for _, o := range r.p.objects {
		union = append(union, memberOf(o))
	}
	// The parent's namespace may be one the app itself creates: then it is written after the
	// cluster definitions.
	written, err := r.writeInventory(ctx, union, inventoryWrite{tolerateMissingNamespace: true})
	if err != nil {
		return r.done, err
	}
	changedDefs, err := r.applyAll(ctx, defs)
	if err != nil {
		return r.done, err
	}
	if len(changedDefs) > 0 {
		if err := r.d.manager.WaitForSetWithContext(ctx, changedDefs, ssa.WaitOptions{Interval: waitInterval, Timeout: waitTimeout}); err != nil {
			return r.done, fmt.Errorf("wait for cluster definitions: %w", err)
		}
	}
	if !written {
		if _, err := r.writeInventory(ctx, union, inventoryWrite{}); err != nil {
			return r.done, err
		}
	}
	if _, err := r.applyAll(ctx, rest); err != nil {
		return r.done, err
	}
	kept, err := r.prune(ctx)
	if err != nil {
		return r.done, err
	}
	final := kept
	for _, o := range r.p.objects {
		final = append(final, memberOf(o))
	}
	if _, err := r.writeInventory(ctx, final, inventoryWrite{complete: true}); err != nil {
		return r.done, err
	}
	return r.done, nil
}

// inventoryWrite says which inventory write of an apply this is.
type inventoryWrite struct {
	// complete marks the final write: it records the plan's revision as applied. Earlier
	// writes keep the revision that was there.
	complete bool
	// tolerateMissingNamespace reports a parent namespace that does not exist yet as
	// (false, nil) instead of an error: the app may create it.
	tolerateMissingNamespace bool
}

// writeInventory records members (and, when complete, the revision) unless the cluster
// already holds exactly them.
func (r *applyRun) writeInventory(ctx context.Context, members []member, w inventoryWrite) (bool, error) {
	inv := r.p.inventory
	if len(members) == 0 {
		// An app with nothing left keeps no parent: deleting an app leaves no trace.
		return true, r.d.deleteInventory(ctx, inv)
	}
	revision := inv.Revision
	if w.complete {
		revision = r.app.Revision
	}
	if inv.Exists && inv.Tooling == toolName+"/"+r.d.version && sameMembers(inv.Members, members) && inv.Revision == revision {
		return true, nil
	}
	err := r.d.writeInventory(ctx, inv, members, revision)
	if err != nil && w.tolerateMissingNamespace && apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

func sameMembers(a, b []member) bool {
	keys := func(ms []member) []string {
		out := make([]string, 0, len(ms))
		for _, m := range ms {
			out = append(out, m.key())
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(keys(a), keys(b))
}

// applyAll applies objects in order and returns the ones it created or changed.
func (r *applyRun) applyAll(ctx context.Context, objects []*unstructured.Unstructured) (object.ObjMetadataSet, error) {
	var changed object.ObjMetadataSet
	for _, o := range objects {
		c, err := r.applyOne(ctx, o)
		if err != nil {
			return changed, err
		}
		if c.Action != drivers.ActionUnchanged {
			changed = append(changed, object.UnstructuredToObjMetadata(o))
		}
	}
	return changed, nil
}

// applyOne writes one object as planned. The plan's dry-run already validated it and showed
// what it changes, so an unchanged object costs no request and a changed one one apply.
// Something that changed in between is caught by the next plan: server-side apply converges
// from whatever is live.
func (r *applyRun) applyOne(ctx context.Context, obj *unstructured.Unstructured) (drivers.Change, error) {
	planned, ok := r.p.planned[memberOf(obj).key()]
	if !ok {
		planned = drivers.Change{Ref: refOf(obj), Action: drivers.ActionUpdate}
	}
	if planned.Action == drivers.ActionUnchanged {
		return planned, nil
	}
	r.progress(drivers.Progress{Change: planned})
	if planned.Action == drivers.ActionRecreate {
		if err := r.deleteAndWait(ctx, obj); err != nil {
			return r.fail(planned, err)
		}
	}
	if _, err := r.d.serverApply(ctx, obj, write, r.p.force[memberOf(obj).key()]); err != nil {
		return r.fail(planned, classify(obj, err))
	}
	r.d.log.InfoContext(ctx, "applied", "app", r.app.Name, "revision", r.app.Revision,
		"resource", planned.Ref.String(), "action", string(planned.Action))
	r.done = append(r.done, planned)
	r.progress(drivers.Progress{Change: planned, Done: true})
	return planned, nil
}

func (r *applyRun) fail(c drivers.Change, err error) (drivers.Change, error) {
	err = fmt.Errorf("%s %s: %w", c.Action, c.Ref, err)
	r.progress(drivers.Progress{Change: c, Done: true, Err: err})
	return c, err
}

func (r *applyRun) progress(p drivers.Progress) {
	if r.opts.Progress != nil {
		r.opts.Progress(p)
	}
}

// deleteAndWait removes an object ahead of its recreation and waits until the name is free,
// since the API server keeps a terminating object (finalizers) under the same name.
func (r *applyRun) deleteAndWait(ctx context.Context, obj *unstructured.Unstructured) error {
	m := memberOf(obj)
	live, err := r.d.get(ctx, m)
	if err != nil || live == nil {
		return err
	}
	if owner := live.GetLabels()[LabelApp]; owner != "" && owner != r.app.Name {
		return fmt.Errorf("%s belongs to app %q: %w", m.ref(), owner, drivers.ErrInvalidSpec)
	}
	uid := live.GetUID()
	if err := r.d.client.Delete(ctx, live, client.PropagationPolicy(metav1.DeletePropagationBackground),
		client.Preconditions{UID: &uid}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete for recreate: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	err = wait.PollUntilContextCancel(ctx, waitInterval, true, func(ctx context.Context) (bool, error) {
		cur, err := r.d.get(ctx, m)
		return cur == nil || cur.GetUID() != uid, err
	})
	if err != nil {
		return fmt.Errorf("wait for deletion before recreate: %w", err)
	}
	return nil
}

// prune deletes the planned deletes (or reports them skipped) and returns the members that
// must stay in the inventory: those skipped and those that could not be checked.
func (r *applyRun) prune(ctx context.Context) ([]member, error) {
	var kept []member
	for _, m := range r.p.prune {
		c := drivers.Change{Ref: m.ref(), Action: drivers.ActionDelete, Reason: "no longer desired"}
		r.progress(drivers.Progress{Change: c})
		if !r.opts.Prune {
			c.Skipped = true
			kept = append(kept, m)
			r.done = append(r.done, c)
			r.progress(drivers.Progress{Change: c, Done: true})
			continue
		}
		deleted, err := r.deleteMember(ctx, m)
		if err != nil {
			kept = append(kept, m)
			_, err = r.fail(c, err)
			return append(kept, r.remaining(m)...), err
		}
		if !deleted {
			c.Skipped = true
			c.Reason = "no longer labelled for this app"
		}
		r.done = append(r.done, c)
		r.progress(drivers.Progress{Change: c, Done: true})
	}
	return kept, nil
}

// remaining lists the planned deletes after m, which a failed prune leaves untouched.
func (r *applyRun) remaining(m member) []member {
	i := slices.IndexFunc(r.p.prune, func(x member) bool { return x.key() == m.key() })
	return slices.Clone(r.p.prune[i+1:])
}

// deleteMember deletes m if it still carries this app's label; the UID precondition makes
// sure the object checked is the object deleted.
func (r *applyRun) deleteMember(ctx context.Context, m member) (bool, error) {
	live, err := r.d.get(ctx, m)
	if err != nil {
		return false, err
	}
	if live == nil {
		return true, nil
	}
	if live.GetLabels()[LabelApp] != r.app.Name {
		return false, nil
	}
	uid := live.GetUID()
	err = r.d.client.Delete(ctx, live, client.PropagationPolicy(metav1.DeletePropagationBackground),
		client.Preconditions{UID: &uid})
	if err != nil && !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("delete: %w", err)
	}
	r.d.log.InfoContext(ctx, "pruned", "app", r.app.Name, "resource", m.ref().String(), "action", "delete")
	return true, nil
}
