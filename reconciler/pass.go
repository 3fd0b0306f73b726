package reconciler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/manifests"
)

// passRequest says what started a pass and how far it may go.
type passRequest struct {
	reason string
	// resolve asks Git for the ref's revision; false reuses the last one (event-triggered
	// passes: a container died, Git did not change).
	resolve bool
	// force applies even under drift: alert and at a stalled revision (a human asked).
	force    bool
	progress func(drivers.Progress)
	// stopping is closed when the daemon is shutting down: the pass finishes its apply but
	// does not wait for health.
	stopping <-chan struct{}
}

// runPass runs one pass with per-app single flight and the worker limit, and records its
// outcome in status and metrics.
func (r *Reconciler) runPass(ctx context.Context, st *appState, req passRequest) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	select {
	case r.workers <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-r.workers }()

	start := r.opts.Now()
	err := r.pass(ctx, st, req)
	elapsed := r.opts.Now().Sub(start)
	r.m.ReconcileDuration.WithLabelValues(st.spec.Name).Observe(elapsed.Seconds())

	result := "success"
	var se *StageError
	switch {
	case errors.As(err, &se) && se.Class == ClassStalled:
		result = "stalled"
	case err != nil:
		result = "error"
	}
	r.m.ReconcileTotal.WithLabelValues(st.spec.Name, result).Inc()
	r.m.LastReconcileTime.WithLabelValues(st.spec.Name).Set(float64(r.opts.Now().Unix()))
	switch {
	case err != nil && ctx.Err() == nil && !st.failing:
		st.failing = true
		r.emit(st, EventSyncFailed, st.snapshot().DesiredRevision, err.Error(), nil)
	case err == nil:
		st.failing = false
	}
	st.update(func(s *Status) {
		s.LastReconcile = r.opts.Now()
		if err == nil {
			s.LastError = nil
			return
		}
		es := &ErrorStatus{Message: err.Error(), Time: r.opts.Now(), Class: ClassRetry}
		if se != nil {
			es.Stage, es.Class, es.Message = se.Stage, se.Class, se.Err.Error()
		}
		s.LastError = es
	})
	if err != nil && ctx.Err() == nil {
		r.log.Error("reconcile failed", "app", st.spec.Name, "revision", short(st.snapshot().DesiredRevision), "err", err)
	}
	r.m.SetSync(st.spec.Name, st.snapshot().Sync)
	r.m.SetHealth(st.spec.Name, st.snapshot().Health)
	return err
}

func (r *Reconciler) pass(ctx context.Context, st *appState, req passRequest) error {
	rev, bundle, stalled, err := r.desired(ctx, st, req)
	if err != nil {
		return err
	}
	app := r.driverApp(st, rev)
	plan, err := st.spec.Driver.Plan(ctx, app, bundle)
	if err != nil {
		return r.stageErr(StagePlan, rev, err)
	}
	st.update(func(s *Status) { s.Planned = true })

	pending := st.pending(plan)
	unmanaged := plan.Changes.Unmanaged()
	newRevision := rev != st.snapshot().AppliedRevision
	if len(pending) == 0 {
		r.settle(ctx, st, rev, plan, stalled)
		return asError(stalled)
	}
	drift := pending
	if newRevision {
		drift = nil
	}
	if hold := r.hold(st, req, newRevision); hold != "" {
		r.setDrift(st, rev, append(drift, unmanaged...))
		st.update(func(s *Status) { s.Sync = SyncOutOfSync })
		r.log.Info("changes held", "app", st.spec.Name, "revision", short(rev), "action", hold)
		_, _ = r.snapshotHealth(ctx, st)
		return asError(stalled)
	}
	r.setDrift(st, rev, append(drift, unmanaged...))
	if err := r.apply(ctx, st, plan, req); err != nil {
		return err
	}
	r.setDrift(st, rev, unmanaged)
	if len(unmanaged) > 0 {
		st.update(func(s *Status) { s.Sync = SyncOutOfSync })
	}
	if closed(req.stopping) {
		return asError(stalled)
	}
	if err := r.waitHealthy(ctx, st, req.stopping); err != nil {
		return r.stageErr(StageHealth, rev, err)
	}
	return asError(stalled)
}

// hold says why pending changes must not be applied now, or "" when they may be: a
// suspended app changes nothing; a new revision of a manual-sync app waits for a human;
// drift of an alert app is only reported. A human's sync (force) passes the last two.
func (r *Reconciler) hold(st *appState, req passRequest, newRevision bool) string {
	switch {
	case st.spec.Suspend:
		return "suspended"
	case req.force:
		return ""
	case newRevision && st.spec.Sync == SyncManual:
		return "manual sync"
	case !newRevision && st.spec.Drift == DriftAlert:
		return "drift alert"
	}
	return ""
}

// desired returns the revision and bundle to plan. A revision whose manifests failed to
// render is not loaded again (it is stalled): the app keeps being checked for drift against
// the last good bundle, and the render error is returned as stalled so status keeps it.
func (r *Reconciler) desired(ctx context.Context, st *appState, req passRequest) (string, *manifests.Bundle, *StageError, error) {
	if !req.resolve && st.lastBundle != nil {
		return st.lastRevision, st.lastBundle, nil, nil
	}
	rev, err := st.spec.Source.Resolve(ctx, st.spec.Ref)
	if err != nil {
		return "", nil, nil, r.stageErr(StageFetch, "", fmt.Errorf("resolve %s: %w", st.spec.Ref, err))
	}
	st.update(func(s *Status) { s.DesiredRevision = rev })
	if rev == st.lastRevision && st.lastBundle != nil {
		return rev, st.lastBundle, nil, nil
	}
	if se := st.stalled; se != nil && se.Revision == rev && !req.force {
		if st.lastBundle == nil {
			return "", nil, nil, se
		}
		return st.lastRevision, st.lastBundle, se, nil
	}
	dir, err := st.spec.Source.Checkout(ctx, st.spec.Ref, rev)
	if err != nil {
		return "", nil, nil, r.stageErr(StageFetch, rev, fmt.Errorf("checkout %s: %w", short(rev), err))
	}
	bundle, err := st.spec.Load(ctx, dir, rev)
	if err != nil {
		se := r.stageErr(StageRender, rev, err)
		st.stalled = se
		st.update(func(s *Status) { s.Sync = SyncOutOfSync })
		if st.lastBundle == nil {
			return "", nil, nil, se
		}
		return st.lastRevision, st.lastBundle, se, nil
	}
	st.stalled = nil
	st.lastRevision, st.lastBundle = rev, bundle
	return rev, bundle, nil, nil
}

// pending is what an apply would change: everything but deletes when pruning is off.
func (st *appState) pending(plan *drivers.Plan) drivers.ChangeSet {
	var out drivers.ChangeSet
	for _, c := range plan.Changes.Changed() {
		if c.Action == drivers.ActionDelete && !st.spec.Prune {
			continue
		}
		out = append(out, c)
	}
	return out
}

// settle records a plan with nothing to apply: in sync, or out of sync only by resources
// kept because pruning is off, by unmanaged resources, or by a stalled newer revision.
func (r *Reconciler) settle(ctx context.Context, st *appState, rev string, plan *drivers.Plan, stalled *StageError) {
	unmanaged := plan.Changes.Unmanaged()
	r.setDrift(st, rev, unmanaged)
	st.update(func(s *Status) {
		s.AppliedRevision = rev
		s.Sync = SyncSynced
		if len(plan.Changes.Changed()) > 0 || len(unmanaged) > 0 || stalled != nil {
			s.Sync = SyncOutOfSync
		}
	})
	_, _ = r.snapshotHealth(ctx, st)
}

// setDrift records the resources that differ from Git at the applied revision. A drift
// episode is counted and notified once, when it starts; it ends when nothing drifts.
func (r *Reconciler) setDrift(st *appState, rev string, drift drivers.ChangeSet) {
	r.m.AppDriftedResources.WithLabelValues(st.spec.Name).Set(float64(len(drift)))
	st.update(func(s *Status) { s.Drift = drift })
	switch {
	case len(drift) > 0 && !st.drifting:
		st.drifting = true
		r.m.DriftDetectedTotal.WithLabelValues(st.spec.Name, string(st.spec.Drift)).Inc()
		for _, c := range drift {
			r.log.Warn("drift detected", "app", st.spec.Name, "revision", short(rev), "resource", c.Ref.String(), "action", string(c.Action))
		}
		r.emit(st, EventDriftDetected, rev, fmt.Sprintf("%d resources differ from Git", len(drift)), drift)
	case len(drift) == 0 && st.drifting:
		st.drifting = false
		r.log.Info("drift resolved", "app", st.spec.Name, "revision", short(rev))
		r.emit(st, EventDriftHealed, rev, "live state matches Git again", nil)
	}
}

func (r *Reconciler) apply(ctx context.Context, st *appState, plan *drivers.Plan, req passRequest) error {
	rev := plan.App.Revision
	cs, err := st.spec.Driver.Apply(ctx, plan, drivers.ApplyOptions{Prune: st.spec.Prune, Progress: req.progress})
	for _, c := range cs {
		if c.Action == drivers.ActionUnchanged || c.Skipped {
			continue
		}
		r.m.ApplyChangesTotal.WithLabelValues(st.spec.Name, string(c.Action)).Inc()
		r.log.Info("applied", "app", st.spec.Name, "revision", short(rev), "resource", c.Ref.String(), "action", string(c.Action))
	}
	st.update(func(s *Status) { s.LastChanges = cs.Changed() })
	if err != nil {
		st.update(func(s *Status) { s.Sync = SyncOutOfSync })
		return r.stageErr(StageApply, rev, err)
	}
	now := r.opts.Now()
	r.m.LastAppliedTime.WithLabelValues(st.spec.Name).Set(float64(now.Unix()))
	st.update(func(s *Status) {
		s.AppliedRevision, s.LastApplied, s.Sync = rev, now, SyncSynced
	})
	if changed := cs.Changed(); len(changed) > 0 {
		r.emit(st, EventSyncSucceeded, rev, fmt.Sprintf("applied %d changes", len(changed)), changed)
	}
	return nil
}

// waitHealthy samples health until Healthy or the app's health timeout.
// It gives up quietly when stopping closes: a shutting-down daemon does not wait for health.
func (r *Reconciler) waitHealthy(ctx context.Context, st *appState, stopping <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, st.spec.HealthTimeout)
	defer cancel()
	for {
		h, err := r.snapshotHealth(ctx, st)
		if err == nil && h.Status == drivers.HealthHealthy {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return err
			}
			return fmt.Errorf("not healthy after %s: %s", st.spec.HealthTimeout, describeHealth(h))
		case <-stopping:
			return nil
		case <-time.After(r.opts.HealthPoll):
		}
	}
}

func (r *Reconciler) snapshotHealth(ctx context.Context, st *appState) (drivers.Health, error) {
	h, err := st.spec.Driver.Health(ctx, r.driverApp(st, ""))
	if err != nil {
		h = drivers.Health{Status: drivers.HealthUnknown}
	}
	var prev string
	st.update(func(s *Status) { prev, s.Health = s.Health, string(h.Status) })
	r.m.SetHealth(st.spec.Name, string(h.Status))
	switch {
	case h.Status == drivers.HealthDegraded && prev != string(drivers.HealthDegraded):
		r.emit(st, EventHealthDegraded, "", describeHealth(h), nil)
	case h.Status == drivers.HealthHealthy && prev == string(drivers.HealthDegraded):
		r.emit(st, EventHealthRecovered, "", "all resources healthy", nil)
	}
	return h, err
}

func describeHealth(h drivers.Health) string {
	msg := string(h.Status)
	for _, rh := range h.Resources {
		if rh.Status != drivers.HealthHealthy {
			msg += fmt.Sprintf("; %s %s", rh.Ref, rh.Status)
			if rh.Message != "" {
				msg += " (" + rh.Message + ")"
			}
		}
	}
	return msg
}

func (r *Reconciler) stageErr(stage Stage, rev string, err error) *StageError {
	return &StageError{Stage: stage, Class: classify(stage, err), Revision: rev, Err: err}
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// closed reports whether ch is closed; a nil channel never is.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// asError avoids returning a typed nil pointer as a non-nil error.
func asError(se *StageError) error {
	if se == nil {
		return nil
	}
	return se
}
