package reconciler

import (
	"testing"

	"github.com/shipwatch/shipwatch/drivers"
)

// A revision that changes nothing the app runs (a commit to another stage's files on the
// branch the stages share) keeps the healthy streak, moved on to it; a revision that
// changes something starts a new one.
func TestHealthyStreakGoesOnOverRevisionsThatChangeNothing(t *testing.T) {
	h := newHarness(t, DriftHeal, true)
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionCreate)}
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	first, _ := h.store.App("web")
	if first.Healthy == nil || first.Healthy.Revision != "rev1" {
		t.Fatalf("streak after rev1 = %+v", first.Healthy)
	}
	h.src.rev = "rev2" // nothing to apply
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	rec, _ := h.store.App("web")
	if rec.Healthy == nil || rec.Healthy.Revision != "rev2" || !rec.Healthy.Since.Equal(first.Healthy.Since) || rec.LastHealthy != "rev2" {
		t.Errorf("streak after rev2 = %+v (last healthy %s), want rev1's carried on to rev2", rec.Healthy, rec.LastHealthy)
	}
	h.src.rev = "rev3"
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionRecreate)}
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	rec, _ = h.store.App("web")
	if rec.Healthy == nil || rec.Healthy.Revision != "rev3" || !rec.Healthy.Since.After(first.Healthy.Since) {
		t.Errorf("streak after rev3 = %+v, want a new one", rec.Healthy)
	}
}
