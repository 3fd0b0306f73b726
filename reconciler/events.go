package reconciler

import (
	"time"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/internal/notify"
)

// Event is one notification-worthy happening. Changes carry the drivers' masked diffs.
// Types are notify's: failures and drift are emitted when they start, not at every pass
// while they last, so a broken repo does not flood a channel.
type Event struct {
	Type     notify.EventType
	App      string
	Revision string
	Message  string
	Changes  []drivers.Change
	Time     time.Time
}

// Notifier receives events. Notify must not block: the reconciler calls it mid-pass.
type Notifier interface {
	Notify(Event)
}

func (r *Reconciler) emit(st *appState, typ notify.EventType, rev, msg string, changes []drivers.Change) {
	if r.opts.Notifier == nil {
		return
	}
	if rev == "" {
		rev = st.snapshot().AppliedRevision
	}
	r.opts.Notifier.Notify(Event{
		Type: typ, App: st.spec.Name, Revision: rev, Message: msg,
		Changes: append([]drivers.Change(nil), changes...), Time: r.opts.Now(),
	})
}
