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

// deployInfo is what deploy needs besides the plan.
type deployInfo struct {
	req     passRequest
	verdict Verdict
	// running is the revision that ran before.
	running string
	// outOfSync keeps the app OutOfSync after a successful apply (a pin behind the ref,
	// unmanaged resources, a stalled newer revision).
	outOfSync bool
}

// deploy applies plan, waits for health and records the attempt in history. When a new
// revision fails under onFailure: rollback, it rolls back.
func (r *Reconciler) deploy(ctx context.Context, st *appState, plan *drivers.Plan, in deployInfo) error {
	rev := plan.App.Revision
	entry := state.Entry{
		Trigger: in.req.Trigger, Actor: in.req.Actor, Started: r.opts.Now(),
		RevisionBefore: in.running, Revision: rev, RevisionAfter: in.running,
	}
	if in.verdict == VerdictHeal && !in.req.force {
		entry.Trigger = state.TriggerDrift
	}
	defer r.endOperation(st)
	cs, err := r.apply(ctx, st, plan, in)
	entry.Changes = cs.Changed()
	if err != nil {
		var se *StageError
		errors.As(err, &se)
		entry.Health = st.snapshot().Health
		r.record(st, failed(entry, se))
		return r.afterFailure(ctx, st, in, se)
	}
	entry.RevisionAfter = rev
	if closed(in.req.stopping) {
		entry.Result, entry.Health = state.ResultSucceeded, st.snapshot().Health
		r.record(st, entry)
		return nil
	}
	r.setPhase(st, PhaseWaitingHealthy)
	h, err := r.waitHealthy(ctx, st, in.req.stopping)
	entry.Health = string(h.Status)
	if err != nil {
		se := r.stageErr(StageHealth, rev, err)
		r.record(st, failed(entry, se))
		r.trackHealthy(st, rev, false)
		return r.afterFailure(ctx, st, in, se)
	}
	entry.Result = state.ResultSucceeded
	r.record(st, entry)
	r.trackHealthy(st, rev, st.snapshot().Sync == SyncSynced)
	return nil
}

func failed(e state.Entry, se *StageError) state.Entry {
	e.Result, e.Stage, e.Error = state.ResultFailed, string(se.Stage), se.Err.Error()
	return e
}

// apply carries out the plan, reporting progress in status and metrics, and makes its
// revision the applied one when it succeeds.
func (r *Reconciler) apply(ctx context.Context, st *appState, plan *drivers.Plan, in deployInfo) (drivers.ChangeSet, error) {
	rev := plan.App.Revision
	r.startOperation(st, in.req.Trigger, rev, len(plan.Changes.Changed()))
	progress := func(p drivers.Progress) {
		if p.Done {
			r.stepOperation(st)
		}
		if in.req.progress != nil {
			in.req.progress(p)
		}
	}
	applyCtx, cancel := r.applyContext(ctx, in.req)
	defer cancel()
	cs, err := st.spec.Driver.Apply(applyCtx, plan, drivers.ApplyOptions{Prune: st.spec.Prune, Progress: progress})
	for _, c := range cs {
		if c.Action == drivers.ActionUnchanged || c.Skipped {
			continue
		}
		r.m.ApplyChangesTotal.WithLabelValues(st.labels.With(string(c.Action))...).Inc()
		r.log.Info("applied", "app", st.spec.Name, "revision", short(rev), "resource", c.Ref.String(), "action", string(c.Action))
	}
	st.update(func(s *Status) { s.LastChanges = cs.Changed() })
	if err != nil {
		st.update(func(s *Status) { s.Sync = SyncOutOfSync })
		return cs, r.stageErr(StageApply, rev, err)
	}
	now := r.opts.Now()
	r.m.LastAppliedTime.WithLabelValues(st.labels.With()...).Set(float64(now.Unix()))
	r.setApplied(st, rev)
	st.update(func(s *Status) {
		s.AppliedRevision, s.LastApplied, s.Sync = rev, now, SyncSynced
		if in.outOfSync {
			s.Sync = SyncOutOfSync
		}
	})
	if changed := cs.Changed(); len(changed) > 0 {
		r.emit(st, notify.SyncSucceeded, rev, fmt.Sprintf("applied %d changes", len(changed)), changed)
	}
	r.setDrift(st, rev, plan.Changes.Unmanaged())
	return cs, nil
}

// applyContext is the context an apply runs on. Its caller cannot cancel it halfway: an
// HTTP client that times out, a Ctrl-C or a SIGTERM would otherwise cut a recreate between
// stopping the old container and starting the new one. ApplyTimeout bounds it, and only the
// daemon's hard stop (req.abort, once shutdownTimeout is up) ends it early.
func (r *Reconciler) applyContext(ctx context.Context, req passRequest) (context.Context, context.CancelFunc) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.ApplyTimeout)
	if req.abort != nil {
		go func() {
			select {
			case <-req.abort:
				r.log.Warn("apply aborted: the shutdown timeout is up", "action", "abort")
				cancel()
			case <-actx.Done():
			}
		}()
	}
	return actx, cancel
}

// waitHealthy samples health until Healthy or the app's health timeout, and returns the
// last sample. It gives up quietly when stopping closes: a shutting-down daemon does not
// wait for health.
func (r *Reconciler) waitHealthy(ctx context.Context, st *appState, stopping <-chan struct{}) (drivers.Health, error) {
	ctx, cancel := context.WithTimeout(ctx, st.spec.HealthTimeout)
	defer cancel()
	var seen *drivers.Health // the last snapshot the backend answered
	for {
		h, err := r.snapshotHealth(ctx, st)
		if err == nil && h.Status == drivers.HealthHealthy {
			return h, nil
		}
		if err == nil {
			seen = &h
		}
		select {
		case <-ctx.Done():
			// The app's state, not the last call's error: that one often only says the
			// deadline came while it was asking.
			if seen != nil {
				return *seen, fmt.Errorf("not healthy after %s: %s", st.spec.HealthTimeout, describeHealth(*seen))
			}
			return h, fmt.Errorf("health unknown after %s: %w", st.spec.HealthTimeout, err)
		case <-stopping:
			return h, nil
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
	r.m.SetOneHot(r.m.AppHealthStatus, st.labels, string(h.Status), drivers.HealthStatuses())
	switch {
	case h.Status == drivers.HealthDegraded && prev != string(drivers.HealthDegraded):
		r.emit(st, notify.HealthDegraded, "", describeHealth(h), nil)
	case h.Status == drivers.HealthHealthy && prev == string(drivers.HealthDegraded):
		r.emit(st, notify.HealthRecovered, "", "all resources healthy", nil)
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

// startOperation, stepOperation, setPhase and endOperation show an apply in progress in
// status and metrics.
func (r *Reconciler) startOperation(st *appState, trigger state.Trigger, rev string, total int) {
	now := r.opts.Now()
	st.update(func(s *Status) {
		s.Operation = &Operation{Phase: PhaseSyncing, Trigger: trigger, Revision: rev, Started: now, Total: total}
	})
	r.m.SetOneHot(r.m.AppOperationPhase, st.labels, string(PhaseSyncing), Phases())
	r.m.AppOperationResources.WithLabelValues(st.labels.With("total")...).Set(float64(total))
	r.m.AppOperationResources.WithLabelValues(st.labels.With("done")...).Set(0)
	r.m.AppOperationStarted.WithLabelValues(st.labels.With()...).Set(float64(now.Unix()))
}

func (r *Reconciler) stepOperation(st *appState) {
	done := 0
	st.update(func(s *Status) {
		if s.Operation != nil {
			s.Operation.Done = min(s.Operation.Done+1, s.Operation.Total)
			done = s.Operation.Done
		}
	})
	r.m.AppOperationResources.WithLabelValues(st.labels.With("done")...).Set(float64(done))
}

func (r *Reconciler) setPhase(st *appState, p Phase) {
	st.update(func(s *Status) {
		if s.Operation != nil {
			s.Operation.Phase = p
		}
	})
	r.m.SetOneHot(r.m.AppOperationPhase, st.labels, string(p), Phases())
}

func (r *Reconciler) endOperation(st *appState) {
	st.update(func(s *Status) { s.Operation = nil })
	r.m.SetOneHot(r.m.AppOperationPhase, st.labels, string(PhaseIdle), Phases())
	r.m.AppOperationResources.WithLabelValues(st.labels.With("total")...).Set(0)
	r.m.AppOperationResources.WithLabelValues(st.labels.With("done")...).Set(0)
	r.m.AppOperationStarted.WithLabelValues(st.labels.With()...).Set(0)
}
