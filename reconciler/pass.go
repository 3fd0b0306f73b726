package reconciler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/internal/notify"
	"github.com/shipwatch/shipwatch/internal/state"
)

// passRequest says what started a pass and how far it may go.
type passRequest struct {
	Request
	// resolve asks Git for the ref's revision; false reuses the last one (event-triggered
	// passes: a container died, Git did not change).
	resolve bool
	// force applies even under drift: alert and sync: manual (a person asked).
	force    bool
	progress func(drivers.Progress)
	// stopping is closed when the daemon is shutting down: the pass finishes its apply but
	// does not wait for health.
	stopping <-chan struct{}
	// abort is closed when the apply must stop after all (the shutdown timeout is up);
	// nothing else cancels an apply (see applyContext).
	abort <-chan struct{}
	// rollback, when set, pins the app at this revision before planning.
	rollback *state.Pin
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
	r.m.ReconcileDuration.WithLabelValues(st.labels.With()...).Observe(elapsed.Seconds())
	r.finishPass(ctx, st, err)
	return err
}

// finishPass records a pass's outcome in status, metrics, logs and notifications.
func (r *Reconciler) finishPass(ctx context.Context, st *appState, err error) {
	result := "success"
	var se *StageError
	switch {
	case errors.As(err, &se) && se.Class == ClassStalled:
		result = "stalled"
	case err != nil:
		result = "error"
	}
	r.m.ReconcileTotal.WithLabelValues(st.labels.With(result)...).Inc()
	r.m.LastReconcileTime.WithLabelValues(st.labels.With()...).Set(float64(r.opts.Now().Unix()))
	switch {
	case err != nil && ctx.Err() == nil && !st.failing:
		st.failing = true
		r.emit(st, notify.SyncFailed, st.snapshot().DesiredRevision, err.Error(), nil)
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
	if fe := st.fetchErr; fe != nil {
		st.update(func(s *Status) { gitUnreadable(s, fe) })
	} else if err != nil {
		r.trackHealthy(st, "", false) // a failed sync ends a healthy streak; a Git outage does not
	}
	snap := st.snapshot()
	r.m.SetOneHot(r.m.AppSyncStatus, st.labels, snap.Sync, SyncStatuses())
	r.m.SetOneHot(r.m.AppHealthStatus, st.labels, snap.Health, drivers.HealthStatuses())
}

func (r *Reconciler) pass(ctx context.Context, st *appState, req passRequest) error {
	if req.rollback != nil {
		r.setPin(st, req.rollback)
	}
	want, err := r.desired(ctx, st, req)
	if err != nil {
		return err
	}
	plan, err := st.spec.Driver.Plan(ctx, r.driverApp(st, want.target), want.bundle)
	if err != nil {
		se := r.stageErr(StagePlan, want.target, err)
		if se.Class == ClassStalled && want.target != st.record().Applied {
			r.recordFailure(st, req, want.target, se)
		}
		return se
	}
	st.update(func(s *Status) { s.Planned = true })

	running := runningRevision(plan.Live, st.record().Applied)
	r.learnRunning(st, running)
	pending := st.pending(plan)
	dec := decide(decideInput{
		Head: want.head, Target: want.target, Running: running, Pending: len(pending) > 0,
		Pin: st.record().Pin, Suspend: st.spec.Suspend, Force: req.force,
		Sync: st.spec.Sync, Drift: st.spec.Drift,
	})
	unmanaged := plan.Changes.Unmanaged()
	outOfSync := dec.Reason != "" || want.stalled != nil || len(unmanaged) > 0
	switch {
	case dec.Verdict == VerdictInSync:
		r.settle(ctx, st, plan, settleInfo{req: req, running: running, outOfSync: outOfSync, reason: dec.Reason})
		return asError(want.stalled)
	case !dec.Verdict.applies():
		var drift drivers.ChangeSet
		if want.target == running {
			drift = pending
		}
		r.setDrift(st, want.target, append(drift, unmanaged...))
		if len(drift)+len(unmanaged) > 0 {
			r.trackHealthy(st, want.target, false) // drift ends a clean streak; a held new revision does not
		}
		st.update(func(s *Status) { s.Sync, s.Reason = SyncOutOfSync, dec.Reason })
		r.log.Info("changes held", "app", st.spec.Name, "revision", short(want.target), "action", string(dec.Verdict))
		_, _ = r.snapshotHealth(ctx, st)
		return asError(want.stalled)
	}
	if dec.Verdict == VerdictDeploy {
		r.setDrift(st, want.target, unmanaged)
	} else {
		r.setDrift(st, want.target, append(pending, unmanaged...))
		r.trackHealthy(st, "", false) // healed drift still ends the streak: a gate wants none
	}
	st.update(func(s *Status) { s.Reason = dec.Reason })
	if err := r.deploy(ctx, st, plan, deployInfo{req: req, verdict: dec.Verdict, running: running, outOfSync: outOfSync}); err != nil {
		return err
	}
	return asError(want.stalled)
}

// gitUnreadable is the sync status while Git cannot be read: what Git wants is not known,
// so not Synced. It is OutOfSync when the ref is known to name another revision than the
// applied one (ls-remote answered but the fetch failed), else Unknown.
func gitUnreadable(s *Status, fe *StageError) {
	s.Sync = SyncUnknown
	if s.DesiredRevision != "" && s.DesiredRevision != s.AppliedRevision {
		s.Sync = SyncOutOfSync
	}
	if s.Reason == "" {
		s.Reason = "cannot read Git: " + fe.Err.Error()
	}
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

// settleInfo is what settle needs besides the plan.
type settleInfo struct {
	req     passRequest
	running string
	// outOfSync and reason come from the decision: a pin behind the ref, unmanaged
	// resources, a stalled newer revision.
	outOfSync bool
	reason    string
}

// settle records a plan with nothing to apply: in sync, or out of sync only by resources
// kept because pruning is off, by unmanaged resources, by a stalled newer revision or by a
// pin. A revision that changed nothing is now the applied one, and history says so.
func (r *Reconciler) settle(ctx context.Context, st *appState, plan *drivers.Plan, in settleInfo) {
	rev := plan.App.Revision
	unmanaged := plan.Changes.Unmanaged()
	r.setDrift(st, rev, unmanaged)
	st.update(func(s *Status) {
		s.AppliedRevision, s.Reason = rev, in.reason
		s.Sync = SyncSynced
		if len(plan.Changes.Changed()) > 0 || in.outOfSync {
			s.Sync = SyncOutOfSync
		}
	})
	h, _ := r.snapshotHealth(ctx, st)
	healthy := h.Status == drivers.HealthHealthy && st.snapshot().Sync == SyncSynced
	if healthy && len(plan.Changes.Changed()) == 0 {
		r.carryHealthy(st, rev)
	}
	r.trackHealthy(st, rev, healthy)
	if st.record().Applied == rev {
		return
	}
	r.setApplied(st, rev)
	if in.running == rev {
		return // the store learned what the backend already recorded
	}
	now := r.opts.Now()
	r.record(st, state.Entry{
		Trigger: in.req.Trigger, Actor: in.req.Actor, Started: now, Finished: now,
		RevisionBefore: in.running, Revision: rev, RevisionAfter: rev,
		Result: state.ResultSucceeded, Health: string(h.Status),
	})
}

// learnRunning makes the store and status know the revision that runs when they do not yet
// agree with it: a store started afresh (a new leader, a corrupt file moved aside) learns it
// from the backend's record, so status shows it even while changes are held.
func (r *Reconciler) learnRunning(st *appState, running string) {
	if running == "" || running == st.record().Applied {
		return
	}
	r.setApplied(st, running)
	st.update(func(s *Status) { s.AppliedRevision = running })
}

// trackHealthy keeps the app's healthy streak: it starts when the app is first seen Synced
// and Healthy at rev and ends when it is not (or at another revision, unless carryHealthy
// moved it there because that revision changed nothing). It also records rev
// as the last healthy revision, a rollback target, whether or not it was healthy in time.
func (r *Reconciler) trackHealthy(st *appState, rev string, healthy bool) {
	rec := st.record()
	switch {
	case healthy && (rec.Healthy == nil || rec.Healthy.Revision != rev):
		now := r.opts.Now()
		r.mutate(st, func(rec *state.AppRecord) {
			rec.Healthy, rec.LastHealthy = &state.Streak{Revision: rev, Since: now}, rev
		})
	case !healthy && rec.Healthy != nil:
		r.mutate(st, func(rec *state.AppRecord) { rec.Healthy = nil })
	}
}

// carryHealthy moves an unbroken healthy streak on to rev, a revision that changed nothing
// the app runs (settled without an apply). Stages of an app usually follow one branch, so
// every commit (to another stage's files, a promotion into the next stage) is a new
// revision of each: were the streak restarted, a gate's healthyFor would only be reached
// while nobody commits to the repository at all.
func (r *Reconciler) carryHealthy(st *appState, rev string) {
	rec := st.record()
	if rec.Healthy == nil || rec.Healthy.Revision == rev {
		return
	}
	since := rec.Healthy.Since
	r.mutate(st, func(rec *state.AppRecord) {
		rec.Healthy, rec.LastHealthy = &state.Streak{Revision: rev, Since: since}, rev
	})
}

// setDrift records the resources that differ from Git at the applied revision. A drift
// episode is counted and notified once, when it starts, and ends when nothing drifts; the
// store remembers an open episode so a restart does not count it again.
func (r *Reconciler) setDrift(st *appState, rev string, drift drivers.ChangeSet) {
	r.m.AppDriftedResources.WithLabelValues(st.labels.With()...).Set(float64(len(drift)))
	st.update(func(s *Status) { s.Drift = drift })
	drifting := !st.record().DriftSince.IsZero()
	switch {
	case len(drift) > 0 && !drifting:
		r.mutate(st, func(rec *state.AppRecord) { rec.DriftSince = r.opts.Now() })
		r.m.DriftDetectedTotal.WithLabelValues(st.labels.With(string(st.spec.Drift))...).Inc()
		for _, c := range drift {
			r.log.Warn("drift detected", "app", st.spec.Name, "revision", short(rev), "resource", c.Ref.String(), "action", string(c.Action))
		}
		r.emit(st, notify.DriftDetected, rev, fmt.Sprintf("%d resources differ from Git", len(drift)), drift)
	case len(drift) == 0 && drifting:
		r.mutate(st, func(rec *state.AppRecord) { rec.DriftSince = time.Time{} })
		r.log.Info("drift resolved", "app", st.spec.Name, "revision", short(rev))
		r.emit(st, notify.DriftHealed, rev, "live state matches Git again", nil)
	}
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
