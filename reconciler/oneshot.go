package reconciler

import (
	"context"
	"errors"
	"fmt"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/internal/state"
)

// PlanOptions tunes Plan.
type PlanOptions struct {
	// Worktree, when set, loads the app from this local directory (a checkout of a pull
	// request, say) instead of the configured ref; the revision is reported as "worktree".
	Worktree string
}

// Plan computes what a sync of app would change, without changing anything and without
// touching the app's status: the engine of `shipwatch diff`.
//
// It waits for a pass of the app in flight: a plan between a pass's plan and its apply
// would read live state half-changed, and the drivers' observations are not meant to be
// interleaved.
func (r *Reconciler) Plan(ctx context.Context, name string, opts PlanOptions) (*drivers.Plan, error) {
	st, err := r.app(name)
	if err != nil {
		return nil, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	rev, dir := "worktree", opts.Worktree
	if dir == "" {
		head, err := st.spec.Source.Resolve(ctx, st.spec.Ref)
		if err != nil {
			return nil, r.stageErr(StageFetch, "", fmt.Errorf("resolve %s: %w", st.spec.Ref, err))
		}
		// A pinned app syncs its pin, so that is what a diff shows.
		rev, _ = pickTarget(head, st.record().Pin)
		var release func()
		if dir, release, err = st.spec.Source.Checkout(ctx, st.spec.Ref, rev); err != nil {
			return nil, r.stageErr(StageFetch, rev, fmt.Errorf("checkout %s: %w", short(rev), err))
		}
		defer release()
	}
	bundle, err := st.spec.Load(ctx, dir, rev)
	if err != nil {
		return nil, r.stageErr(StageRender, rev, err)
	}
	plan, err := st.spec.Driver.Plan(ctx, r.driverApp(st, rev), bundle)
	if err != nil {
		return nil, r.stageErr(StagePlan, rev, err)
	}
	return plan, nil
}

// ErrSuspended is returned by Sync for an app with suspend: true.
var ErrSuspended = errors.New("app is suspended (suspend: true); unsuspend it in the config to sync")

// SyncOptions tunes Sync.
type SyncOptions struct {
	// Progress receives each resource change as it starts and finishes.
	Progress func(drivers.Progress)
	// Actor is who asked, for history.
	Actor state.Actor
}

// Sync runs one full pass of app now: resolve, load, plan, apply whatever differs (also
// under drift: alert and at a stalled revision, since a human asked), and wait for health.
// A pinned app is synced at its pin. It returns the app's status after the pass and the
// pass's error.
func (r *Reconciler) Sync(ctx context.Context, name string, opts SyncOptions) (Status, error) {
	st, err := r.app(name)
	if err != nil {
		return Status{}, err
	}
	if st.spec.Suspend {
		return st.snapshot(), fmt.Errorf("app %s: %w", name, ErrSuspended)
	}
	err = r.runPass(ctx, st, passRequest{
		Request: Request{Trigger: state.TriggerManual, Actor: opts.Actor},
		resolve: true, force: true, progress: opts.Progress,
	})
	return r.withWarnings(st.snapshot()), err
}
