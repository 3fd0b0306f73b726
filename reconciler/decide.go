package reconciler

import (
	"fmt"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/internal/state"
)

// Verdict is what a pass does with its plan.
type Verdict string

// The verdicts. Deploy and Heal apply the plan; the others apply nothing.
const (
	// VerdictInSync: nothing to apply.
	VerdictInSync Verdict = "in-sync"
	// VerdictDeploy: a revision other than the running one is applied.
	VerdictDeploy Verdict = "deploy"
	// VerdictHeal: live state drifted from Git at the running revision and is put back.
	VerdictHeal Verdict = "heal"
	// VerdictSuspended: the app is suspended; nothing is applied.
	VerdictSuspended Verdict = "suspended"
	// VerdictManual: a new revision waits for a person (sync: manual).
	VerdictManual Verdict = "manual"
	// VerdictAlert: drift is only reported (drift: alert).
	VerdictAlert Verdict = "alert"
)

// applies reports whether the verdict carries out the plan.
func (v Verdict) applies() bool { return v == VerdictDeploy || v == VerdictHeal }

// decideInput is everything the decision depends on. None of it is process memory: the
// revisions come from Git, the driver's view of live state and the store.
type decideInput struct {
	// Head is the ref's revision; Target the one the pass plans (Head, or a pin's).
	Head, Target string
	// Running is what runs (see runningRevision).
	Running string
	// Pending is true when the plan has changes to apply.
	Pending bool
	Pin     *state.Pin
	Suspend bool
	// Force is true when a person asked (sync, rollback): it passes manual and alert.
	Force bool
	Sync  SyncPolicy
	Drift DriftPolicy
}

// Decision is a verdict and, when the app is held or pinned, the reason users see.
type Decision struct {
	Verdict Verdict
	Reason  string
}

// decide is the policy of a pass, a pure function: a difference at a revision other than the
// running one is a new revision, applied unless sync is manual; a difference at the running
// revision is drift, healed unless drift is alert; a suspended app changes nothing; a
// person's request passes manual and alert; a pin (a rollback) is applied like a request.
func decide(in decideInput) Decision {
	newRevision := in.Target != in.Running
	pinned := pinnedReason(in.Head, in.Pin)
	switch {
	case !in.Pending:
		return Decision{Verdict: VerdictInSync, Reason: pinned}
	case in.Suspend:
		return Decision{Verdict: VerdictSuspended, Reason: "suspended: nothing is applied until suspend is false"}
	case newRevision && (in.Force || in.Pin != nil):
		return Decision{Verdict: VerdictDeploy, Reason: pinned}
	case newRevision && in.Sync == SyncManual:
		return Decision{Verdict: VerdictManual, Reason: fmt.Sprintf("revision %s waits for a manual sync (sync: manual)", short(in.Target))}
	case newRevision:
		return Decision{Verdict: VerdictDeploy, Reason: pinned}
	case !in.Force && in.Drift == DriftAlert:
		return Decision{Verdict: VerdictAlert, Reason: fmt.Sprintf("live state differs from Git at %s; drift: alert only reports it", short(in.Target))}
	default:
		return Decision{Verdict: VerdictHeal, Reason: pinned}
	}
}

// pinnedReason says why the app is not at its ref's revision, or "" when it is.
func pinnedReason(head string, pin *state.Pin) string {
	if pin == nil || pin.Revision == head {
		return ""
	}
	if pin.Reason == state.PinAutoRollback {
		return fmt.Sprintf("pinned at %s by auto-rollback after %s failed; a newer commit lifts the pin", short(pin.Revision), short(pin.FailedRevision))
	}
	return fmt.Sprintf("pinned at %s by %s; run `shipwatch unpin` to follow the ref again", short(pin.Revision), pin.Reason)
}

// pickTarget returns the revision a pass plans: the pin's, else the ref's. An automatic
// rollback's pin lasts only while the ref still names the revision that failed: release is
// true when a newer commit lifts it.
func pickTarget(head string, pin *state.Pin) (target string, release bool) {
	switch {
	case pin == nil:
		return head, false
	case pin.Reason == state.PinAutoRollback && head != pin.FailedRevision:
		return head, true
	default:
		return pin.Revision, false
	}
}

// runningRevision is the revision that runs: the backend's own record when it is complete
// (it moves exactly at every completed apply, so it is right even when another replica
// applied last), else the store's, else the backend's partial record (a store started
// afresh). An empty complete record is not trusted over the store: objects applied by a
// version that wrote none, or an inventory deleted by hand, say nothing about the revision.
func runningRevision(live drivers.LiveRevision, stored string) string {
	switch {
	case live.Complete && live.Revision != "":
		return live.Revision
	case stored != "":
		return stored
	default:
		return live.Revision
	}
}
