package reconciler

import (
	"context"
	"errors"
	"fmt"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/internal/notify"
	"github.com/shipwatch/shipwatch/internal/state"
)

// ErrNoRollbackTarget is returned by Rollback when history holds no healthy revision to go
// back to and none was named.
var ErrNoRollbackTarget = errors.New("no earlier revision was synced and healthy")

// ErrRollbackTarget is wrapped when the revision named for a rollback is not a commit in the
// ref's history (or Git could not tell).
var ErrRollbackTarget = errors.New("cannot roll back to that revision")

// ErrNotPinned is returned by Unpin for an app that is not pinned.
var ErrNotPinned = errors.New("app is not pinned")

// RollbackOptions tunes Rollback.
type RollbackOptions struct {
	// To names the revision: a full SHA or a prefix of at least 7 hex digits of a commit in
	// the ref's history. Empty means the newest revision in history, other than the running
	// one, that was synced and healthy.
	To string
	// Actor is who asked, for history.
	Actor    state.Actor
	Progress func(drivers.Progress)
}

// Rollback deploys an earlier revision and pins the app there: new commits are reported
// OutOfSync and nothing is applied until Unpin. Drift at the pinned revision is still healed
// or alerted per policy. It returns the status after the pass and the pass's error.
func (r *Reconciler) Rollback(ctx context.Context, name string, opts RollbackOptions) (Status, error) {
	st, err := r.app(name)
	if err != nil {
		return Status{}, err
	}
	if st.spec.Suspend {
		return st.snapshot(), fmt.Errorf("app %s: %w", name, ErrSuspended)
	}
	target, err := r.rollbackTarget(ctx, st, opts.To)
	if err != nil {
		return st.snapshot(), fmt.Errorf("app %s: rollback: %w", name, err)
	}
	r.log.Info("rollback", "app", name, "revision", short(target), "action", "pin")
	r.m.RollbacksTotal.WithLabelValues(st.labels.With(string(RollbackManual))...).Inc()
	pin := &state.Pin{Revision: target, Reason: state.PinRollback, Actor: opts.Actor, Since: r.opts.Now()}
	err = r.runPass(ctx, st, passRequest{
		Request: Request{Trigger: state.TriggerRollback, Actor: opts.Actor},
		resolve: true, force: true, progress: opts.Progress, rollback: pin,
	})
	msg := fmt.Sprintf("rolled back to %s by %s; pinned until unpinned", short(target), opts.Actor)
	if err != nil {
		msg = fmt.Sprintf("rollback to %s by %s failed: %v", short(target), opts.Actor, err)
	}
	r.emit(st, notify.Rollback, target, msg, nil)
	return r.withWarnings(st.snapshot()), err
}

// rollbackTarget resolves a named revision, or finds the last healthy one in history.
func (r *Reconciler) rollbackTarget(ctx context.Context, st *appState, to string) (string, error) {
	if to != "" {
		rev, err := st.spec.Source.Commit(ctx, st.spec.Ref, to)
		if err != nil {
			return "", fmt.Errorf("%w: %w", ErrRollbackTarget, err)
		}
		return rev, nil
	}
	if r.opts.Store == nil {
		return "", ErrNoStore
	}
	running := st.record().Applied
	rev, ok := r.lastHealthy(st, running)
	if !ok {
		return "", fmt.Errorf("%w before %s in the app's history; name one with --to", ErrNoRollbackTarget, short(running))
	}
	return rev, nil
}

// Unpin lifts a pin: the app follows its ref again from its next pass, which it asks for.
func (r *Reconciler) Unpin(name string, actor state.Actor) (Status, error) {
	st, err := r.app(name)
	if err != nil {
		return Status{}, err
	}
	pin := st.record().Pin
	if pin == nil {
		return r.withWarnings(st.snapshot()), fmt.Errorf("app %s: %w", name, ErrNotPinned)
	}
	r.setPin(st, nil)
	st.update(func(s *Status) { s.Reason = "" })
	r.log.Info("unpinned", "app", name, "revision", short(pin.Revision), "action", "unpin")
	_ = r.Trigger(name, Request{Trigger: state.TriggerManual, Actor: actor})
	return r.withWarnings(st.snapshot()), nil
}

// afterFailure rolls back a new revision that failed to apply (for a reason retrying cannot
// fix) or to become healthy, when the app says onFailure: rollback: it pins the last healthy
// revision with the failed one noted, so that the failed revision is not tried again until a
// newer commit lifts the pin. It returns the original failure, which the pass reports.
func (r *Reconciler) afterFailure(ctx context.Context, st *appState, in deployInfo, se *StageError) error {
	reason, worth := rollbackReason(se)
	if st.spec.OnFailure != FailureRollback || in.verdict != VerdictDeploy ||
		in.req.Trigger == state.TriggerRollback || !worth || ctx.Err() != nil || closed(in.req.stopping) {
		return se
	}
	failedRev := se.Revision
	good, ok := r.lastHealthy(st, failedRev)
	if !ok {
		r.log.Warn("no healthy revision to roll back to", "app", st.spec.Name, "revision", short(failedRev))
		return se
	}
	r.log.Warn("rolling back a failed revision", "app", st.spec.Name, "revision", short(failedRev),
		"action", "rollback", "err", se)
	r.m.RollbacksTotal.WithLabelValues(st.labels.With(string(reason))...).Inc()
	pin := &state.Pin{Revision: good, Reason: state.PinAutoRollback, Actor: state.ActorDaemon,
		Since: r.opts.Now(), FailedRevision: failedRev}
	err := r.pass(ctx, st, passRequest{
		Request: Request{Trigger: state.TriggerRollback, Actor: state.ActorDaemon},
		force:   true, progress: in.req.progress, stopping: in.req.stopping, rollback: pin,
	})
	msg := fmt.Sprintf("revision %s failed (%s: %v); rolled back to %s", short(failedRev), se.Stage, se.Err, short(good))
	if err != nil {
		msg = fmt.Sprintf("revision %s failed (%s: %v); the rollback to %s failed too: %v", short(failedRev), se.Stage, se.Err, short(good), err)
	}
	r.emit(st, notify.Rollback, good, msg, nil)
	return se
}

// rollbackReason says whether a failure calls for an automatic rollback: a health timeout,
// or an apply the revision itself broke (stalled class). A transient apply error (the Engine
// or the API server unreachable) is retried instead: a rollback could not get through either,
// and pinning would keep a good revision out.
func rollbackReason(se *StageError) (RollbackReason, bool) {
	switch {
	case se == nil:
		return "", false
	case se.Stage == StageHealth:
		return RollbackUnhealthy, true
	case se.Stage == StageApply && se.Class == ClassStalled:
		return RollbackApplyFailed, true
	default:
		return "", false
	}
}
