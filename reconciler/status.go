package reconciler

import (
	"errors"
	"time"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/internal/state"
)

// Sync statuses, the vocabulary of Argo CD.
const (
	SyncSynced    = "Synced"
	SyncOutOfSync = "OutOfSync"
	SyncUnknown   = "Unknown"
)

// SyncStatuses lists the sync statuses, for one-hot gauges.
func SyncStatuses() []string { return []string{SyncSynced, SyncOutOfSync, SyncUnknown} }

// Phase is what an app is doing right now.
type Phase string

// The phases: idle between passes' applies, syncing while changes are applied, waiting
// while the reconciler waits for health after an apply.
const (
	PhaseIdle           Phase = "Idle"
	PhaseSyncing        Phase = "Syncing"
	PhaseWaitingHealthy Phase = "WaitingHealthy"
)

// Phases lists the phases, for one-hot gauges.
func Phases() []string {
	return []string{string(PhaseIdle), string(PhaseSyncing), string(PhaseWaitingHealthy)}
}

// RollbackReason says why a rollback happened; it is the reason label of
// shipwatch_rollbacks_total.
type RollbackReason string

// The rollback reasons: asked for by a person, or automatic after a revision failed to
// apply or to become healthy.
const (
	RollbackManual      RollbackReason = "manual"
	RollbackApplyFailed RollbackReason = "apply-failed"
	RollbackUnhealthy   RollbackReason = "unhealthy"
)

// RollbackReasons lists them, so every series exists from the start.
func RollbackReasons() []RollbackReason {
	return []RollbackReason{RollbackManual, RollbackApplyFailed, RollbackUnhealthy}
}

// Operation is an apply in progress.
type Operation struct {
	Phase    Phase         `json:"phase"`
	Trigger  state.Trigger `json:"trigger"`
	Revision string        `json:"revision"`
	Started  time.Time     `json:"started"`
	// Done of Total resource changes have finished.
	Done  int `json:"done"`
	Total int `json:"total"`
}

// Stage names where a pass failed; they are the reasons users see.
type Stage string

// The stages of a pass that can fail.
const (
	StageFetch  Stage = "FetchFailed"
	StageRender Stage = "RenderFailed"
	StagePlan   Stage = "PlanFailed"
	StageApply  Stage = "ApplyFailed"
	StageHealth Stage = "HealthFailed"
)

// Class decides what happens after a failure.
type Class string

// Error classes, after source-controller: stalled waits for a new revision (the manifests are
// wrong, retrying cannot help); retry backs off exponentially (network, engine); waiting
// requeues at the normal interval (health not reached yet).
const (
	ClassStalled Class = "stalled"
	ClassRetry   Class = "retry"
	ClassWaiting Class = "waiting"
)

// StageError is a failed pass: where, how to retry, and the cause.
type StageError struct {
	Stage    Stage
	Class    Class
	Revision string
	Err      error
}

func (e *StageError) Error() string { return string(e.Stage) + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *StageError) Unwrap() error { return e.Err }

// ErrStalled is wrapped by a Source's errors that retrying cannot fix until the repository or
// the configuration changes (a ref that does not exist, a rejected credential, an untrusted
// host key): such a pass waits a whole interval instead of retrying every few seconds.
var ErrStalled = errors.New("retrying cannot help until the repository or the configuration changes")

// classify returns the class of a failure at stage: a render failure means the files at that
// revision are wrong; a driver error marked invalid likewise, and a source error marked
// stalled; everything else is transient.
func classify(stage Stage, err error) Class {
	switch {
	case stage == StageRender, errors.Is(err, drivers.ErrInvalidSpec), errors.Is(err, ErrStalled):
		return ClassStalled
	case stage == StageHealth:
		return ClassWaiting
	default:
		return ClassRetry
	}
}

// Status is what an app reports: what Git wants, what runs, and how it is.
type Status struct {
	App string `json:"app"`
	// DesiredRevision is what the ref pointed to at the last resolve.
	DesiredRevision string `json:"desiredRevision,omitempty"`
	// AppliedRevision is the last revision applied successfully.
	AppliedRevision string `json:"appliedRevision,omitempty"`
	Sync            string `json:"sync"`
	Health          string `json:"health"`
	// Drift lists resources that differ from Git at the applied revision, with masked diffs.
	Drift     []drivers.Change `json:"drift,omitempty"`
	LastError *ErrorStatus     `json:"lastError,omitempty"`
	// LastChanges is what the last apply did.
	LastChanges   []drivers.Change `json:"lastChanges,omitempty"`
	LastReconcile time.Time        `json:"lastReconcile,omitzero"`
	LastApplied   time.Time        `json:"lastApplied,omitzero"`
	// Planned is true once the app has been planned at least once since start.
	Planned bool `json:"planned"`
	// Reason says why the app is held or not at its ref's revision (pinned, manual sync,
	// drift alert, suspended); empty when nothing holds it.
	Reason string `json:"reason,omitempty"`
	// Pin is set while the app is held at a revision by a rollback.
	Pin *state.Pin `json:"pin,omitempty"`
	// Operation is the apply in progress, if any.
	Operation *Operation `json:"operation,omitempty"`
	// Warnings are problems of the daemon as a whole, e.g. a state store started afresh.
	Warnings []string `json:"warnings,omitempty"`
}

// ErrorStatus is the last failure in a form fit for the API and the CLI.
type ErrorStatus struct {
	Stage   Stage     `json:"stage"`
	Class   Class     `json:"class"`
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
}
