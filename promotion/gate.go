// Package promotion moves a revision of an app from one stage to the next: it checks the
// target's gate against what the source stage has shown (from the state store, so the
// clocks survive restarts), copies the promotion files as the source stage runs them into
// the target's path, and commits them (to the target's branch, or a review branch) through
// the Git source with the repo's own credentials. The daemon can do it by itself when a gate
// opens (autoPromote).
package promotion

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/shipwatch/shipwatch/internal/state"
	"github.com/shipwatch/shipwatch/reconciler"
)

// ErrGateClosed is wrapped by a promotion refused because the target's gate is closed.
var ErrGateClosed = errors.New("gate closed")

// Gate is what the source stage must show before a promotion into a stage.
type Gate struct {
	// HealthyFor is how long the source stage must have been Synced and Healthy at the
	// revision, with no drift and no failed sync meanwhile.
	HealthyFor time.Duration
	// Approval also needs an approval of the revision for the target stage.
	Approval bool
}

// gateInput is everything a gate decision depends on.
type gateInput struct {
	Gate   Gate
	Source reconciler.StageState
	// Target is the stage promoted into: a pin there (a rollback) closes its gate.
	Target    reconciler.StageState
	Approvals []state.Approval
	Now       time.Time
}

// Verdict is a gate's answer: open or not, and the reason in words a user can act on.
type Verdict struct {
	Open   bool
	Reason string
}

// evaluate is the gate, a pure function of the source stage's record: the streak survives a
// restart because it is in the store, and drift or a failed sync ends it (the reconciler
// clears it), so "healthy for" means without either.
func evaluate(in gateInput) Verdict {
	v := evaluateSource(in)
	if pin := in.Target.Pin; pin != nil {
		// Closed whatever the source shows, which is kept in the answer: it says what would
		// happen after an unpin.
		return Verdict{Reason: fmt.Sprintf("%s is pinned at %s by %s: a promotion would not be deployed; unpin it first; %s",
			in.Target.Name, short(pin.Revision), pin.Reason, v.Reason)}
	}
	return v
}

// evaluateSource is the gate's part about the source stage.
func evaluateSource(in gateInput) Verdict {
	src := in.Source
	switch {
	case src.Applied == "":
		return Verdict{Reason: fmt.Sprintf("%s runs no revision yet", src.Name)}
	case src.Pin != nil:
		return Verdict{Reason: fmt.Sprintf("%s is pinned at %s by %s", src.Name, short(src.Pin.Revision), src.Pin.Reason)}
	case src.Healthy == nil || src.Healthy.Revision != src.Applied:
		return Verdict{Reason: fmt.Sprintf("%s is not Synced and Healthy at %s (sync %s, health %s)", src.Name, short(src.Applied), src.Sync, src.Health)}
	}
	healthy := in.Now.Sub(src.Healthy.Since)
	if healthy < in.Gate.HealthyFor {
		return Verdict{Reason: fmt.Sprintf("%s has been healthy at %s for %s of the %s required",
			src.Name, short(src.Applied), healthy.Round(time.Second), in.Gate.HealthyFor)}
	}
	reason := fmt.Sprintf("%s healthy at %s for %s (%s required)", src.Name, short(src.Applied),
		healthy.Round(time.Second), in.Gate.HealthyFor)
	if !in.Gate.Approval {
		return Verdict{Open: true, Reason: reason}
	}
	// An approval of a revision the streak carried through approves what runs now: the
	// commits since changed nothing of this stage.
	i := slices.IndexFunc(in.Approvals, func(a state.Approval) bool { return src.Healthy.Includes(a.Revision) })
	if i < 0 {
		// How long it has been healthy is kept in the answer: it is what a person approving
		// wants to know.
		return Verdict{Reason: reason + "; waits for an approval"}
	}
	a := in.Approvals[i]
	return Verdict{Open: true, Reason: fmt.Sprintf("%s; approved by %s at %s", reason, a.Actor, a.At.UTC().Format(time.RFC3339))}
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}
