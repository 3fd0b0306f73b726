package reconciler

import (
	"errors"
	"testing"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/internal/state"
)

// TestLastPlanIsReadWithoutPlanning: the plan a pass made is served as it is, as often as
// asked, without a resolve, a checkout or a driver plan per read.
func TestLastPlanIsReadWithoutPlanning(t *testing.T) {
	h := newHarnessWith(t, AppSpec{Drift: DriftHeal, Prune: true, Sync: SyncManual})
	if _, err := h.r.LastPlan("web"); !errors.Is(err, ErrNotPlanned) {
		t.Fatalf("before any pass: %v, want ErrNotPlanned", err)
	}
	if _, err := h.r.LastPlan("nope"); !errors.Is(err, ErrUnknownApp) {
		t.Fatalf("unknown app: %v", err)
	}
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionCreate)}
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	planned := len(h.drv.planned)
	for range 50 {
		lp, err := h.r.LastPlan("web")
		if err != nil {
			t.Fatal(err)
		}
		if lp.Applied || lp.Plan.InSync() || lp.Plan.App.Revision != "rev1" || len(lp.Plan.Changes) != 1 || lp.Plan.Payload != nil {
			t.Fatalf("last plan of a held revision = %+v", lp)
		}
	}
	if n := len(h.drv.planned); n != planned {
		t.Errorf("reading the last plan planned %d more times", n-planned)
	}
}

// TestLastPlanSettlesAfterApply: once an apply succeeded the kept plan lists its changes
// as done, so the API does not report a sync that already happened as pending; what an
// apply leaves (a delete with pruning off) is still listed.
func TestLastPlanSettlesAfterApply(t *testing.T) {
	h := newHarness(t, DriftHeal, false)
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionRecreate), change("old", drivers.ActionDelete)}
	if _, err := h.r.Sync(t.Context(), "web", SyncOptions{Actor: state.ActorCLI}); err != nil {
		t.Fatal(err)
	}
	lp, err := h.r.LastPlan("web")
	if err != nil {
		t.Fatal(err)
	}
	changed := lp.Plan.Changes.Changed()
	if !lp.Applied || len(changed) != 1 || changed[0].Ref.Name != "old" || len(lp.Plan.Changes) != 2 {
		t.Errorf("settled plan = %+v, want only the kept delete pending", lp.Plan.Changes)
	}
}
