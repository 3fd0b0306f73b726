package reconciler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/manifests"
)

// ErrNotPlanned is returned by LastPlan for an app the daemon has not planned yet.
var ErrNotPlanned = errors.New("app has not been planned yet")

// LastPlan is the last plan the daemon made of an app, as its passes made it: what a sync
// would change as of At. It costs nothing to read: no Git request, no Engine request.
type LastPlan struct {
	// Plan holds the app, the revision planned and the changes, with masked diffs; its
	// Payload is always nil.
	Plan *drivers.Plan
	// At is when the plan was made, or when a successful apply settled it.
	At time.Time
	// Applied is set when the plan was applied successfully since it was made: its changes
	// were carried out and only what an apply leaves (unmanaged resources, deletes with
	// pruning off) is still listed.
	Applied bool
}

// LastPlan returns a copy of the last plan made for app. It never plans: a read API can
// serve it to anyone without letting them make the daemon call Git or the Engine.
func (r *Reconciler) LastPlan(name string) (LastPlan, error) {
	st, err := r.app(name)
	if err != nil {
		return LastPlan{}, err
	}
	rec, ok := st.spec.Driver.(*planRecorder)
	if !ok {
		return LastPlan{}, fmt.Errorf("app %s: %w", name, ErrNotPlanned)
	}
	lp, ok := rec.last()
	if !ok {
		return LastPlan{}, fmt.Errorf("app %s: %w", name, ErrNotPlanned)
	}
	return lp, nil
}

// planRecorder is the app's driver with a memory of its last plan. New wraps every app's
// driver in one, so every plan a pass makes is kept without the pass knowing.
type planRecorder struct {
	drivers.Driver
	now func() time.Time

	mu   sync.Mutex
	plan LastPlan
	have bool
}

// recordPlans wraps d; a driver already wrapped is returned as it is.
func recordPlans(d drivers.Driver, now func() time.Time) drivers.Driver {
	if _, ok := d.(*planRecorder); ok {
		return d
	}
	return &planRecorder{Driver: d, now: now}
}

// Plan plans with the driver and keeps a copy of the result without its payload, so the
// memory kept per app is the change set, not the desired state.
func (p *planRecorder) Plan(ctx context.Context, app drivers.App, desired *manifests.Bundle) (*drivers.Plan, error) {
	plan, err := p.Driver.Plan(ctx, app, desired)
	if err != nil || plan == nil {
		return plan, err
	}
	kept := &drivers.Plan{App: plan.App, Changes: slices.Clone(plan.Changes), Live: plan.Live}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.plan, p.have = LastPlan{Plan: kept, At: p.now()}, true
	return plan, nil
}

// Apply applies with the driver. When it succeeds for the revision last planned, the kept
// plan is settled: its changes were carried out, so they are listed unchanged, except
// what an apply leaves (unmanaged resources, deletes with pruning off).
func (p *planRecorder) Apply(ctx context.Context, plan *drivers.Plan, opts drivers.ApplyOptions) (drivers.ChangeSet, error) {
	cs, err := p.Driver.Apply(ctx, plan, opts)
	if err != nil || plan == nil {
		return cs, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.have || p.plan.Plan.App != plan.App {
		return cs, nil
	}
	left := make(drivers.ChangeSet, 0, len(plan.Changes))
	for _, c := range plan.Changes {
		kept := c.Unmanaged || c.Action == drivers.ActionUnchanged || (c.Action == drivers.ActionDelete && !opts.Prune)
		if !kept {
			c = drivers.Change{Ref: c.Ref, Action: drivers.ActionUnchanged}
		}
		left = append(left, c)
	}
	settled := &drivers.Plan{App: plan.App, Changes: left, Live: p.plan.Plan.Live}
	p.plan = LastPlan{Plan: settled, At: p.now(), Applied: true}
	return cs, nil
}

func (p *planRecorder) last() (LastPlan, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.have {
		return LastPlan{}, false
	}
	out := p.plan
	plan := *out.Plan
	plan.Changes = slices.Clone(plan.Changes)
	out.Plan = &plan
	return out, true
}

// Images forwards to the wrapped driver when it reports images.
func (p *planRecorder) Images(ctx context.Context, app drivers.App) ([]drivers.Image, error) {
	rep, ok := p.Driver.(drivers.ImageReporter)
	if !ok {
		return nil, nil
	}
	return rep.Images(ctx, app)
}
