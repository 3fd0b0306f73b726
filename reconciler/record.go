package reconciler

import (
	"errors"
	"fmt"

	"github.com/shipwatch/shipwatch/internal/state"
)

// ErrNoStore is returned by history and rollback when the reconciler runs without a store.
var ErrNoStore = errors.New("no state store: history and rollback need the state dir (is a daemon holding it?)")

// maxWarnings bounds the daemon-wide warnings kept for status.
const maxWarnings = 5

// loadRecord reads an app's record at start, so that a restarted daemon knows what it
// applied, its pin and its open drift episode before the first pass.
func (r *Reconciler) loadRecord(st *appState) {
	if r.opts.Store == nil {
		return
	}
	rec, err := r.opts.Store.App(st.spec.Name)
	if err != nil {
		r.storeError("read", err)
		return
	}
	st.rec = rec
	st.status.AppliedRevision = rec.Applied
	st.status.Pin = clonePin(rec.Pin)
}

// record returns a copy of the app's record.
func (st *appState) record() state.AppRecord {
	st.recMu.Lock()
	defer st.recMu.Unlock()
	rec := st.rec
	rec.Pin = clonePin(rec.Pin)
	return rec
}

// mutate changes the app's record and writes it to the store under one lock, so that a
// pass and an unpin cannot overwrite each other's change. A failed write is reported and
// the pass goes on: a bad store never stops deploys.
func (r *Reconciler) mutate(st *appState, f func(*state.AppRecord)) {
	st.recMu.Lock()
	defer st.recMu.Unlock()
	f(&st.rec)
	pin := clonePin(st.rec.Pin)
	st.update(func(s *Status) { s.Pin = pin })
	if r.opts.Store == nil {
		return
	}
	if err := r.opts.Store.SaveApp(st.spec.Name, st.rec); err != nil {
		r.storeError("write", err)
	}
}

func (r *Reconciler) setPin(st *appState, pin *state.Pin) {
	r.mutate(st, func(rec *state.AppRecord) { rec.Pin = clonePin(pin) })
}

func (r *Reconciler) setApplied(st *appState, rev string) {
	now := r.opts.Now()
	r.mutate(st, func(rec *state.AppRecord) { rec.Applied, rec.AppliedAt = rev, now })
}

// record appends a sync attempt to the app's history.
func (r *Reconciler) record(st *appState, e state.Entry) {
	if r.opts.Store == nil {
		return
	}
	if e.Finished.IsZero() {
		e.Finished = r.opts.Now()
	}
	saved, err := r.opts.Store.Record(st.spec.Name, e)
	if err != nil {
		r.storeError("write", err)
		return
	}
	r.log.Debug("history recorded", "app", st.spec.Name, "revision", short(e.Revision), "action", string(e.Result),
		"resource", fmt.Sprintf("history/%d", saved.ID))
}

// recordFailure records a revision that failed before anything was applied (render, or a
// plan the driver refused).
func (r *Reconciler) recordFailure(st *appState, req passRequest, rev string, se *StageError) {
	applied := st.record().Applied
	now := r.opts.Now()
	r.record(st, failed(state.Entry{
		Trigger: req.Trigger, Actor: req.Actor, Started: now, Finished: now,
		RevisionBefore: applied, Revision: rev, RevisionAfter: applied,
	}, se))
}

// storeError reports a failed store call: log, metric and a warning in every status.
func (r *Reconciler) storeError(op string, err error) {
	r.log.Error("state store failed; deploys go on", "action", op, "err", err)
	r.m.StateStoreErrors.WithLabelValues(op).Inc()
	r.warn(fmt.Sprintf("state store %s failed: %v", op, err))
}

func (r *Reconciler) warn(msg string) {
	r.warnMu.Lock()
	defer r.warnMu.Unlock()
	for _, w := range r.warnings {
		if w == msg {
			return
		}
	}
	r.warnings = append(r.warnings, msg)
	if len(r.warnings) > maxWarnings {
		r.warnings = r.warnings[len(r.warnings)-maxWarnings:]
	}
}

// History returns up to limit of an app's sync attempts, newest first.
func (r *Reconciler) History(name string, limit int) ([]state.Entry, error) {
	if _, err := r.app(name); err != nil {
		return nil, err
	}
	if r.opts.Store == nil {
		return nil, ErrNoStore
	}
	return r.opts.Store.History(name, limit)
}

// HistoryEntry returns one sync attempt of an app.
func (r *Reconciler) HistoryEntry(name string, id uint64) (state.Entry, error) {
	if _, err := r.app(name); err != nil {
		return state.Entry{}, err
	}
	if r.opts.Store == nil {
		return state.Entry{}, ErrNoStore
	}
	return r.opts.Store.Entry(name, id)
}

// lastHealthy returns the newest revision other than exclude that was applied and seen
// healthy: the last one seen so (also late, after its health timeout), else from history.
func (r *Reconciler) lastHealthy(st *appState, exclude string) (string, bool) {
	if last := st.record().LastHealthy; last != "" && last != exclude {
		return last, true
	}
	if r.opts.Store == nil {
		return "", false
	}
	entries, err := r.opts.Store.History(st.spec.Name, 0)
	if err != nil {
		r.storeError("read", err)
		return "", false
	}
	for _, e := range entries {
		if e.Healthy() && e.Revision != exclude && e.Revision != "" {
			return e.Revision, true
		}
	}
	return "", false
}

func clonePin(p *state.Pin) *state.Pin {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}
