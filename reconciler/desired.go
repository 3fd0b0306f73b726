package reconciler

import (
	"context"
	"errors"
	"fmt"

	"github.com/shipwatch/shipwatch/manifests"
)

// wanted is what a pass plans: the ref's revision, the revision planned (a pin's, or the
// last good one while a newer revision does not render) and its bundle.
type wanted struct {
	head, target string
	bundle       *manifests.Bundle
	// stalled is a newer revision's render failure, kept in status.
	stalled *StageError
}

// desired resolves the ref and loads the revision to plan. A revision whose manifests failed
// to render is not loaded again (it is stalled): the app keeps being checked for drift
// against the last good bundle, and the render error is returned as stalled so status
// keeps it.
func (r *Reconciler) desired(ctx context.Context, st *appState, req passRequest) (wanted, error) {
	if req.resolve || st.head == "" {
		head, err := st.spec.Source.Resolve(ctx, st.spec.Ref)
		if err != nil {
			st.fetchErr = r.stageErr(StageFetch, "", fmt.Errorf("resolve %s: %w", st.spec.Ref, err))
			return wanted{}, st.fetchErr
		}
		st.head, st.fetchErr = head, nil
		st.update(func(s *Status) { s.DesiredRevision = head })
	}
	target := r.target(st)
	w := wanted{head: st.head, target: target}
	if target == st.lastRevision && st.lastBundle != nil {
		w.bundle = st.lastBundle
		return w, nil
	}
	if se := st.stalled; se != nil && se.Revision == target && !req.force {
		return r.lastGood(ctx, st, w, se)
	}
	bundle, err := r.load(ctx, st, target)
	var se *StageError
	if errors.As(err, &se) && se.Stage == StageRender {
		st.stalled = se
		r.recordFailure(st, req, target, se)
		return r.lastGood(ctx, st, w, se)
	}
	if err != nil {
		return wanted{}, err
	}
	st.stalled = nil
	w.bundle = bundle
	return w, nil
}

// load checks out and loads rev and keeps it as the last good bundle. The checkout stays
// held while the bundle is kept: Apply reads repo files and build contexts from it, maybe
// passes later, after newer revisions of the repo were checked out by other apps.
func (r *Reconciler) load(ctx context.Context, st *appState, rev string) (*manifests.Bundle, error) {
	dir, release, err := st.spec.Source.Checkout(ctx, st.spec.Ref, rev)
	if err != nil {
		st.fetchErr = r.stageErr(StageFetch, rev, fmt.Errorf("checkout %s: %w", short(rev), err))
		return nil, st.fetchErr
	}
	bundle, err := st.spec.Load(ctx, dir, rev)
	if err != nil {
		release()
		return nil, r.stageErr(StageRender, rev, err)
	}
	st.keepBundle(rev, bundle, release)
	return bundle, nil
}

// keepBundle replaces the last good bundle, releasing the previous one's checkout.
func (st *appState) keepBundle(rev string, b *manifests.Bundle, release func()) {
	if st.releaseBundle != nil {
		st.releaseBundle()
	}
	st.lastRevision, st.lastBundle, st.releaseBundle = rev, b, release
}

// lastGood plans the last revision that rendered instead of target, keeping target's
// render failure; with none, the failure is the pass's error.
func (r *Reconciler) lastGood(ctx context.Context, st *appState, w wanted, se *StageError) (wanted, error) {
	st.update(func(s *Status) { s.Sync = SyncOutOfSync })
	if st.lastBundle == nil {
		r.loadApplied(ctx, st, se.Revision)
	}
	if st.lastBundle == nil {
		return wanted{}, se
	}
	w.target, w.bundle, w.stalled = st.lastRevision, st.lastBundle, se
	return w, nil
}

// loadApplied makes the revision the store records as applied the last good bundle. A
// restarted daemon keeps no bundle in memory: without this, a ref left at a revision that
// does not render would leave the app unplanned after a restart (no drift checked, /readyz
// 503) until a new commit, although what runs is known and rendered before.
func (r *Reconciler) loadApplied(ctx context.Context, st *appState, failed string) {
	applied := st.record().Applied
	if applied == "" || applied == failed {
		return
	}
	if _, err := r.load(ctx, st, applied); err != nil {
		r.log.Warn("the applied revision could not be loaded; drift is not checked until a new commit",
			"app", st.spec.Name, "revision", short(applied), "err", err)
	}
}

// target is the revision to plan: the pin's or the ref's. A newer commit lifts an automatic
// rollback's pin.
func (r *Reconciler) target(st *appState) string {
	pin := st.record().Pin
	target, release := pickTarget(st.head, pin)
	if release {
		r.log.Info("pin lifted: the ref moved past the revision that failed", "app", st.spec.Name,
			"revision", short(st.head), "action", "unpin")
		r.setPin(st, nil)
	}
	return target
}
