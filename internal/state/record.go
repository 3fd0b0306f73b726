// Package state is what shipwatch must remember across restarts: per app, the revision last
// applied, a pin, the open drift episode and a bounded history of sync attempts. It lives in
// one bbolt file under stateDir, written by one process at a time (see Lock).
//
// The vocabulary of history (triggers, actors, results, pin reasons) is declared here, once:
// the reconciler writes it, the API and the CLI read it.
package state

import (
	"slices"
	"time"

	"github.com/shipwatch/shipwatch/drivers"
)

// Trigger is what started a sync attempt.
type Trigger string

// The triggers a history entry records.
const (
	// TriggerPoll is the timer (and the first pass after start).
	TriggerPoll Trigger = "poll"
	// TriggerWebhook is a verified push webhook.
	TriggerWebhook Trigger = "webhook"
	// TriggerDrift is a heal of live state that differed from Git at the applied revision.
	TriggerDrift Trigger = "drift"
	// TriggerManual is a sync or refresh a person asked for (CLI or API).
	TriggerManual Trigger = "manual"
	// TriggerRollback is a rollback, asked for or automatic.
	TriggerRollback Trigger = "rollback"
	// TriggerPromotion is a promotion into an environment.
	TriggerPromotion Trigger = "promotion"
)

// Actor is who asked for a sync attempt.
type Actor string

// The actors a history entry records.
const (
	ActorDaemon Actor = "daemon"
	ActorAPI    Actor = "api"
	ActorCLI    Actor = "cli"
)

// Result is how a sync attempt ended.
type Result string

// The results a history entry records.
const (
	// ResultSucceeded: applied; Health says whether it became healthy in time.
	ResultSucceeded Result = "succeeded"
	// ResultFailed: stopped at Stage with Error.
	ResultFailed Result = "failed"
)

// Entry is one sync attempt of an app.
type Entry struct {
	// ID orders an app's entries; it is assigned by Record and never reused.
	ID       uint64    `json:"id"`
	Trigger  Trigger   `json:"trigger"`
	Actor    Actor     `json:"actor"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// RevisionBefore is what ran when the attempt started; empty on a first deploy.
	RevisionBefore string `json:"revisionBefore,omitempty"`
	// Revision is the revision the attempt deployed.
	Revision string `json:"revision"`
	// RevisionAfter is what the app records as applied afterwards: Revision once its apply
	// succeeded, RevisionBefore when it failed before that.
	RevisionAfter string `json:"revisionAfter,omitempty"`
	Result        Result `json:"result"`
	// Stage is where a failed attempt stopped (the reconciler's stage names).
	Stage string `json:"stage,omitempty"`
	Error string `json:"error,omitempty"`
	// Health is the app's health when the attempt ended.
	Health string `json:"health,omitempty"`
	// Changes is what the attempt changed, with the drivers' masked diffs.
	Changes []drivers.Change `json:"changes,omitempty"`
	// Attempts counts identical consecutive failures folded into this entry, so that a
	// failure retried with backoff does not push real deploys out of the bounded history.
	Attempts int `json:"attempts,omitempty"`
	// Promotion is set on the entries a promotion records, on the source stage and on the
	// target stage.
	Promotion *Promotion `json:"promotion,omitempty"`
}

// Promotion is what a promotion did: which revision of which stage went where, as which
// commit, with which images and through which gate.
type Promotion struct {
	From string `json:"from"`
	To   string `json:"to"`
	// SourceRevision is the revision the source stage ran.
	SourceRevision string `json:"sourceRevision"`
	// Commit is the promotion commit (on the target's branch, or the review branch).
	Commit string `json:"commit,omitempty"`
	// Branch is where Commit was pushed.
	Branch string `json:"branch,omitempty"`
	// Images are the images the source stage ran, by digest where known.
	Images []string `json:"images,omitempty"`
	// Gate says how the gate was passed ("healthy for 12m (10m required)", "forced").
	Gate string `json:"gate"`
}

// Approval lets a source revision into a stage whose gate asks for one.
type Approval struct {
	Revision string    `json:"revision"`
	Actor    Actor     `json:"actor"`
	At       time.Time `json:"at"`
}

// Healthy reports whether the attempt applied its revision and saw it healthy: a revision
// a rollback may return to.
func (e Entry) Healthy() bool {
	return e.Result == ResultSucceeded && e.Health == string(drivers.HealthHealthy)
}

// sameFailure reports whether e repeats prev: the same revision failing the same way.
func (e Entry) sameFailure(prev Entry) bool {
	return e.Result == ResultFailed && prev.Result == ResultFailed &&
		e.Revision == prev.Revision && e.Stage == prev.Stage && e.Error == prev.Error
}

// PinReason says why an app is pinned.
type PinReason string

// The reasons a pin is set.
const (
	// PinRollback is a rollback a person asked for: it holds until unpinned.
	PinRollback PinReason = "rollback"
	// PinAutoRollback is onFailure: rollback: it holds until the ref moves past the
	// revision that failed.
	PinAutoRollback PinReason = "auto-rollback"
)

// Pin holds an app at a revision instead of its ref's.
type Pin struct {
	Revision string    `json:"revision"`
	Reason   PinReason `json:"reason"`
	Actor    Actor     `json:"actor"`
	Since    time.Time `json:"since"`
	// FailedRevision is, for an automatic rollback, the revision whose failure caused it.
	FailedRevision string `json:"failedRevision,omitempty"`
}

// AppRecord is what an app must remember between passes and across restarts.
type AppRecord struct {
	// Applied is the revision whose apply last completed, and when.
	Applied   string    `json:"applied,omitempty"`
	AppliedAt time.Time `json:"appliedAt,omitzero"`
	Pin       *Pin      `json:"pin,omitempty"`
	// DriftSince is when the open drift episode started; zero when live state matches.
	// Kept so a restarted daemon does not count and notify the same episode again.
	DriftSince time.Time `json:"driftSince,omitzero"`
	// Healthy is the current streak of the app being Synced and Healthy at one revision,
	// nil while it is not: what a promotion gate measures.
	Healthy *Streak `json:"healthy,omitempty"`
	// LastHealthy is the last revision seen Synced and Healthy, also one that became
	// healthy only after its health timeout: a rollback may return to it.
	LastHealthy string `json:"lastHealthy,omitempty"`
}

// Streak is a revision and since when it has been so.
type Streak struct {
	Revision string    `json:"revision"`
	Since    time.Time `json:"since"`
	// Covers lists the revisions the streak went through without a change to the app (a
	// commit to another stage's files), newest last and bounded: an approval of any of
	// them approves what runs now.
	Covers []string `json:"covers,omitempty"`
}

// maxCovers bounds Streak.Covers.
const maxCovers = 50

// Carried is the streak moved on to rev, a revision that changed nothing the app runs.
func (s Streak) Carried(rev string) *Streak {
	covers := append(slices.Clone(s.Covers), s.Revision)
	if len(covers) > maxCovers {
		covers = covers[len(covers)-maxCovers:]
	}
	return &Streak{Revision: rev, Since: s.Since, Covers: covers}
}

// Includes reports whether the streak is at rev or went through it.
func (s Streak) Includes(rev string) bool {
	return s.Revision == rev || slices.Contains(s.Covers, rev)
}
