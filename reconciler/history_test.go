package reconciler

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/internal/notify"
	"github.com/shipwatch/shipwatch/internal/state"
)

// history renders the app's history oldest first as "trigger:revision:result[:stage]".
func (h *harness) history(t *testing.T) []string {
	t.Helper()
	entries, err := h.r.History("web", 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range slices.Backward(entries) {
		s := fmt.Sprintf("%s:%s:%s", e.Trigger, e.Revision, e.Result)
		if e.Stage != "" {
			s += ":" + e.Stage
		}
		out = append(out, s)
	}
	return out
}

func TestRestartKeepsDriftAlert(t *testing.T) {
	h := newHarness(t, DriftAlert, true)
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionCreate)}
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionRecreate)} // changed by hand
	if err := h.passAs(t, state.TriggerDrift); err != nil {
		t.Fatal(err)
	}
	h.restart(t)
	for range 2 {
		if err := h.pass(t); err != nil {
			t.Fatal(err)
		}
	}
	if len(h.drv.applied) != 1 {
		t.Fatalf("applied %v: the restarted daemon healed drift under drift: alert", h.drv.applied)
	}
	st, _ := h.r.AppStatus("web")
	if st.Sync != SyncOutOfSync || len(st.Drift) != 1 || !strings.Contains(st.Reason, "drift: alert") {
		t.Errorf("status after restart = %+v", st)
	}
	// The episode began before the restart: it is not counted or notified again.
	if got := testutil.ToFloat64(h.m.DriftDetectedTotal.WithLabelValues("web", "", "alert")); got != 0 {
		t.Errorf("drift_detected_total after restart = %v, want 0 (same episode)", got)
	}
	if slices.Contains(h.events.types(), notify.DriftDetected) {
		t.Errorf("drift notified again after restart: %v", h.events.types())
	}
}

func TestRestartKeepsManualSyncPending(t *testing.T) {
	h := newHarnessWith(t, AppSpec{Drift: DriftHeal, Prune: true, Sync: SyncManual})
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionCreate)}
	if _, err := h.r.Sync(t.Context(), "web", SyncOptions{Actor: state.ActorCLI}); err != nil {
		t.Fatal(err)
	}
	h.src.rev = "rev2"
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionRecreate)}
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	h.restart(t)
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	st, _ := h.r.AppStatus("web")
	if !slices.Equal(h.drv.applied, []string{"rev1"}) || st.AppliedRevision != "rev1" || st.Sync != SyncOutOfSync {
		t.Fatalf("after restart: applied %v, status %+v; want rev2 held for a manual sync", h.drv.applied, st)
	}
	if !strings.Contains(st.Reason, "manual") {
		t.Errorf("reason = %q", st.Reason)
	}
}

// A daemon restarted while its ref names a revision that does not render has no last good
// bundle in memory: it loads the applied revision the store records, so the app is still
// planned (ready) and drift is still checked and healed against what runs.
func TestRestartAtABrokenRevisionPlansTheAppliedOne(t *testing.T) {
	h := newHarness(t, DriftHeal, true)
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionCreate)}
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	h.src.rev = "broken"
	if err := h.pass(t); err == nil {
		t.Fatal("a broken revision passed")
	}
	h.restart(t)
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionCreate)} // removed by hand
	var se *StageError
	if err := h.pass(t); !errors.As(err, &se) || se.Stage != StageRender {
		t.Fatalf("first pass after restart: err = %v, want the render failure kept", err)
	}
	if !h.r.Ready() {
		t.Errorf("not ready after the first pass: the app was not planned")
	}
	if !slices.Equal(h.drv.applied, []string{"rev1", "rev1"}) {
		t.Errorf("applied %v, want the drift healed at the applied rev1", h.drv.applied)
	}
	st, _ := h.r.AppStatus("web")
	if st.AppliedRevision != "rev1" || st.LastError == nil || st.LastError.Stage != StageRender {
		t.Errorf("status after restart = %+v", st)
	}
}

// TestFreshStoreDecidesFromCompleteLiveRecord is a new leader, or a store started afresh,
// on a backend that records the applied revision itself (Kubernetes): drift is still drift.
func TestFreshStoreDecidesFromCompleteLiveRecord(t *testing.T) {
	h := newHarness(t, DriftAlert, true)
	h.drv.complete = true
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionCreate)}
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	h.storeDir = t.TempDir() // another replica's empty store
	h.restart(t)
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionRecreate)}
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	if len(h.drv.applied) != 1 {
		t.Fatalf("applied %v: drift treated as a first deploy", h.drv.applied)
	}
}

func TestHistoryRecordsEveryAttempt(t *testing.T) {
	h := newHarness(t, DriftHeal, true)
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionCreate)}
	if err := h.pass(t); err != nil { // first deploy
		t.Fatal(err)
	}
	h.src.rev = "rev2"
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionRecreate)}
	if err := h.passAs(t, state.TriggerWebhook); err != nil { // an update
		t.Fatal(err)
	}
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionCreate)}
	if err := h.pass(t); err != nil { // a heal: the trigger says drift whatever woke the pass
		t.Fatal(err)
	}
	h.src.rev = "broken"
	_ = h.pass(t) // a revision that does not render
	_ = h.pass(t) // not loaded again: no second entry
	h.src.rev = "rev4"
	h.drv.unhealthy = map[string]bool{"rev4": true}
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionRecreate)}
	_ = h.pass(t)                                                                       // applied, never healthy
	h.src.rev = "rev5"                                                                  // a revision that changes nothing
	if err := h.pass(t); err != nil && !strings.Contains(err.Error(), "HealthFailed") { // rev4's health is still bad
		t.Fatal(err)
	}
	want := []string{
		"poll:rev1:succeeded", "webhook:rev2:succeeded", "drift:rev2:succeeded",
		"poll:broken:failed:RenderFailed", "poll:rev4:failed:HealthFailed", "poll:rev5:succeeded",
	}
	if got := h.history(t); !slices.Equal(got, want) {
		t.Fatalf("history =\n  %v\nwant\n  %v", got, want)
	}
	entries, _ := h.r.History("web", 0)
	upd := entries[1]
	if upd.RevisionBefore != "rev2" || upd.RevisionAfter != "rev4" || upd.Health != "Degraded" || len(upd.Changes) != 1 {
		t.Errorf("the unhealthy revision's entry = %+v", upd)
	}
	if broken := entries[2]; broken.RevisionAfter != "rev2" || broken.Error == "" {
		t.Errorf("the render failure's entry = %+v", broken)
	}
	h.restart(t)
	if got := h.history(t); !slices.Equal(got, want) {
		t.Errorf("history after restart = %v", got)
	}
	if _, err := h.r.History("nope", 0); !errors.Is(err, ErrUnknownApp) {
		t.Errorf("history of an unknown app: %v", err)
	}
}

func TestRollbackPinsUntilUnpinned(t *testing.T) {
	h := newHarness(t, DriftHeal, true)
	h.drv.revisionsDiffer = true
	deployRevisions(t, h, "rev1", "rev2")
	st, err := h.r.Rollback(t.Context(), "web", RollbackOptions{Actor: state.ActorCLI})
	if err != nil {
		t.Fatal(err)
	}
	if st.AppliedRevision != "rev1" || st.Pin == nil || st.Pin.Revision != "rev1" || st.Pin.Reason != state.PinRollback {
		t.Fatalf("status after rollback = %+v", st)
	}
	for _, head := range []string{"rev3", "rev4"} {
		h.src.rev = head
		if err := h.pass(t); err != nil {
			t.Fatal(err)
		}
	}
	h.restart(t)
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	st, _ = h.r.AppStatus("web")
	if last := h.drv.applied[len(h.drv.applied)-1]; last != "rev1" || slices.Contains(h.drv.applied, "rev3") {
		t.Fatalf("applied %v: the pin did not hold", h.drv.applied)
	}
	if st.Sync != SyncOutOfSync || !strings.Contains(st.Reason, "pinned at rev1 by rollback") || st.Pin == nil {
		t.Errorf("pinned status = %+v", st)
	}
	if got := testutil.ToFloat64(h.m.RollbacksTotal.WithLabelValues("web", "", "manual")); got != 0 {
		t.Errorf("rollbacks_total{manual} after restart = %v (a fresh registry)", got)
	}
	if _, err := h.r.Unpin("web", state.ActorAPI); err != nil {
		t.Fatal(err)
	}
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	if st, _ := h.r.AppStatus("web"); st.AppliedRevision != "rev4" || st.Pin != nil || st.Reason != "" {
		t.Errorf("after unpin = %+v", st)
	}
	if _, err := h.r.Unpin("web", state.ActorAPI); !errors.Is(err, ErrNotPinned) {
		t.Errorf("second unpin: %v", err)
	}
	want := []string{"poll:rev1:succeeded", "poll:rev2:succeeded", "rollback:rev1:succeeded", "poll:rev4:succeeded"}
	if got := h.history(t); !slices.Equal(got, want) {
		t.Errorf("history = %v, want %v", got, want)
	}
}

func TestRollbackTargets(t *testing.T) {
	h := newHarness(t, DriftHeal, true)
	if _, err := h.r.Rollback(t.Context(), "web", RollbackOptions{}); !errors.Is(err, ErrNoRollbackTarget) {
		t.Errorf("rollback with an empty history: %v", err)
	}
	deployRevisions(t, h, "rev1")
	if _, err := h.r.Rollback(t.Context(), "web", RollbackOptions{}); !errors.Is(err, ErrNoRollbackTarget) {
		t.Errorf("rollback with only the running revision in history: %v", err)
	}
	if _, err := h.r.Rollback(t.Context(), "web", RollbackOptions{To: "nope"}); !errors.Is(err, errNoSuchCommit) {
		t.Errorf("rollback to an unknown commit: %v", err)
	}
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionRecreate)}
	if st, err := h.r.Rollback(t.Context(), "web", RollbackOptions{To: "good0"}); err != nil || st.AppliedRevision != "good0" {
		t.Errorf("rollback to a named commit = %+v, %v", st, err)
	}
}

func TestAutoRollbackOfAnUnhealthyRevision(t *testing.T) {
	h := newHarnessWith(t, AppSpec{Drift: DriftHeal, Prune: true, Sync: SyncAuto, OnFailure: FailureRollback})
	h.drv.revisionsDiffer = true
	deployRevisions(t, h, "rev1")
	h.drv.unhealthy = map[string]bool{"rev2": true}
	h.src.rev = "rev2"
	err := h.pass(t)
	var se *StageError
	if !errors.As(err, &se) || se.Stage != StageHealth {
		t.Fatalf("pass of the unhealthy revision: %v, want its HealthFailed reported", err)
	}
	st, _ := h.r.AppStatus("web")
	if st.AppliedRevision != "rev1" || st.Health != "Healthy" || st.Pin == nil || st.Pin.Reason != state.PinAutoRollback || st.Pin.FailedRevision != "rev2" {
		t.Fatalf("status after the automatic rollback = %+v", st)
	}
	if got := testutil.ToFloat64(h.m.RollbacksTotal.WithLabelValues("web", "", "unhealthy")); got != 1 {
		t.Errorf("rollbacks_total{unhealthy} = %v", got)
	}
	if !slices.Contains(h.events.types(), notify.Rollback) {
		t.Errorf("no rollback notification: %v", h.events.types())
	}
	// The failed revision is not tried again while the ref names it, also after a restart.
	h.restart(t)
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	if n := len(slices.DeleteFunc(slices.Clone(h.drv.applied), func(r string) bool { return r != "rev2" })); n != 1 {
		t.Fatalf("applied %v: the failed revision was retried", h.drv.applied)
	}
	// A newer commit lifts the pin.
	h.src.rev = "rev3"
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	if st, _ := h.r.AppStatus("web"); st.AppliedRevision != "rev3" || st.Pin != nil {
		t.Errorf("after a newer commit = %+v", st)
	}
	want := []string{"poll:rev1:succeeded", "poll:rev2:failed:HealthFailed", "rollback:rev1:succeeded", "poll:rev3:succeeded"}
	if got := h.history(t); !slices.Equal(got, want) {
		t.Errorf("history = %v, want %v", got, want)
	}
}

func TestStoreFailureDoesNotStopDeploys(t *testing.T) {
	h := newHarness(t, DriftHeal, true)
	deployRevisions(t, h, "rev1")
	_ = h.store.Close() // every later read and write fails
	deployRevisions(t, h, "rev2")
	st, _ := h.r.AppStatus("web")
	if st.AppliedRevision != "rev2" || st.Sync != SyncSynced {
		t.Fatalf("status with a broken store = %+v", st)
	}
	if len(st.Warnings) == 0 || !strings.Contains(st.Warnings[0], "state store") {
		t.Errorf("warnings = %v, want the store failure", st.Warnings)
	}
	if got := testutil.ToFloat64(h.m.StateStoreErrors.WithLabelValues("write")); got == 0 {
		t.Error("state_store_errors_total{write} = 0")
	}
}

func TestOperationShowsProgress(t *testing.T) {
	h := newHarness(t, DriftHeal, true)
	h.drv.changes = drivers.ChangeSet{change("a", drivers.ActionCreate), change("b", drivers.ActionCreate), change("c", drivers.ActionUnchanged)}
	var during Status
	var phase float64
	h.drv.onApply = func() {
		during, _ = h.r.AppStatus("web")
		phase = testutil.ToFloat64(h.m.AppOperationPhase.WithLabelValues("web", "", string(PhaseSyncing)))
	}
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	op := during.Operation
	if op == nil || op.Phase != PhaseSyncing || op.Total != 2 || op.Done != 1 || op.Revision != "rev1" || op.Started.IsZero() {
		t.Fatalf("operation during apply = %+v", op)
	}
	if phase != 1 {
		t.Errorf("app_operation_phase{Syncing} during apply = %v", phase)
	}
	if st, _ := h.r.AppStatus("web"); st.Operation != nil {
		t.Errorf("operation after the pass = %+v", st.Operation)
	}
	if got := testutil.ToFloat64(h.m.AppOperationPhase.WithLabelValues("web", "", string(PhaseIdle))); got != 1 {
		t.Errorf("app_operation_phase{Idle} after the pass = %v", got)
	}
}

// deployRevisions deploys each revision in turn, each changing one resource.
func deployRevisions(t *testing.T, h *harness, revs ...string) {
	t.Helper()
	for _, rev := range revs {
		h.src.rev = rev
		if !h.drv.revisionsDiffer {
			h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionRecreate)}
		}
		if err := h.pass(t); err != nil {
			t.Fatalf("deploy %s: %v", rev, err)
		}
	}
}

// TestFreshStoreLearnsTheRunningRevision: a store started afresh on a backend that records
// the running revision shows and stores it, also while drift is held.
func TestFreshStoreLearnsTheRunningRevision(t *testing.T) {
	h := newHarness(t, DriftAlert, true)
	h.drv.complete = true
	deployRevisions(t, h, "rev1")
	h.storeDir = t.TempDir()
	h.restart(t)
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionRecreate)}
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	if st, _ := h.r.AppStatus("web"); st.AppliedRevision != "rev1" || st.Sync != SyncOutOfSync {
		t.Errorf("status = %+v, want rev1 applied and the drift held", st)
	}
	if rec, _ := h.store.App("web"); rec.Applied != "rev1" {
		t.Errorf("store learned %q", rec.Applied)
	}
}

// TestLateHealthyRevisionIsARollbackTarget: a revision that became healthy only after its
// health timeout still counts as healthy once seen so.
func TestLateHealthyRevisionIsARollbackTarget(t *testing.T) {
	h := newHarnessWith(t, AppSpec{Drift: DriftHeal, Prune: true, Sync: SyncAuto, OnFailure: FailureRollback})
	h.drv.revisionsDiffer = true
	h.drv.unhealthy = map[string]bool{"rev1": true}
	h.src.rev = "rev1"
	if err := h.pass(t); err == nil {
		t.Fatal("rev1 was healthy in time")
	}
	h.drv.unhealthy = map[string]bool{"rev2": true} // rev1 is healthy now, rev2 never will be
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	if rec, _ := h.store.App("web"); rec.LastHealthy != "rev1" || rec.Healthy == nil || rec.Healthy.Revision != "rev1" {
		t.Fatalf("record after rev1 got healthy = %+v", rec)
	}
	h.src.rev = "rev2"
	_ = h.pass(t)
	st, _ := h.r.AppStatus("web")
	if st.AppliedRevision != "rev1" || st.Pin == nil || st.Pin.FailedRevision != "rev2" {
		t.Fatalf("status after rev2 failed = %+v, want an automatic rollback to rev1", st)
	}
}
