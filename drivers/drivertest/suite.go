// Package drivertest is the conformance suite every driver passes against its real backend:
// the behaviour the reconciler relies on, stated once for Docker and Kubernetes alike.
package drivertest

import (
	"context"
	"testing"
	"time"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/manifests"
)

// Variant names a desired state the harness renders for its backend. Every variant holds
// the resources "a" and "b" unless it says otherwise.
type Variant int

// The variants the suite asks for.
const (
	// Base has two independent resources, a and b.
	Base Variant = iota
	// ChangedA is Base with one field of a changed.
	ChangedA
	// WithoutB is Base without b.
	WithoutB
)

// Harness adapts the suite to one backend.
type Harness interface {
	// Driver is the driver under test, talking to the real backend.
	Driver() drivers.Driver
	// App returns a fresh app whose resources the harness removes when t ends.
	App(t *testing.T) drivers.App
	// Bundle renders a variant for app.
	Bundle(t *testing.T, app drivers.App, v Variant) *manifests.Bundle
	// Ref is the plan reference of resource "a" or "b".
	Ref(name string) drivers.Ref
	// Remove deletes resource name behind the driver's back, as a human would.
	Remove(t *testing.T, app drivers.App, name string)
}

// Run runs the conformance suite.
func Run(t *testing.T, h Harness) {
	t.Run("first apply creates, then the plan is in sync", func(t *testing.T) { firstApply(t, h) })
	t.Run("a change touches only the changed resource", func(t *testing.T) { changeOne(t, h) })
	t.Run("a removed resource is pruned only when pruning is on", func(t *testing.T) { prune(t, h) })
	t.Run("a resource removed by hand is planned back and healed", func(t *testing.T) { heal(t, h) })
	t.Run("watch reports a removal within seconds", func(t *testing.T) { watch(t, h) })
	t.Run("an empty bundle removes everything the app owns", func(t *testing.T) { empty(t, h) })
	t.Run("the plan reports the revision that runs", func(t *testing.T) { liveRevision(t, h) })
}

func plan(t *testing.T, h Harness, app drivers.App, b *manifests.Bundle) *drivers.Plan {
	t.Helper()
	p, err := h.Driver().Plan(t.Context(), app, b)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	return p
}

func apply(t *testing.T, h Harness, p *drivers.Plan, prune bool) drivers.ChangeSet {
	t.Helper()
	cs, err := h.Driver().Apply(t.Context(), p, drivers.ApplyOptions{Prune: prune})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return cs
}

// actionOf returns the action planned for ref, failing when the plan does not mention it.
func actionOf(t *testing.T, p *drivers.Plan, ref drivers.Ref) drivers.Action {
	t.Helper()
	for _, c := range p.Changes {
		if c.Ref == ref {
			return c.Action
		}
	}
	t.Fatalf("plan does not mention %s:\n%s", ref, p)
	return ""
}

// deploy applies variant v to a fresh app and checks the plan is in sync afterwards.
func deploy(t *testing.T, h Harness, v Variant) drivers.App {
	t.Helper()
	app := h.App(t)
	apply(t, h, plan(t, h, app, h.Bundle(t, app, v)), true)
	if p := plan(t, h, app, h.Bundle(t, app, v)); !p.InSync() {
		t.Fatalf("plan right after apply is not in sync:\n%s", p)
	}
	return app
}

func firstApply(t *testing.T, h Harness) {
	app := h.App(t)
	p := plan(t, h, app, h.Bundle(t, app, Base))
	for _, name := range []string{"a", "b"} {
		if got := actionOf(t, p, h.Ref(name)); got != drivers.ActionCreate {
			t.Errorf("first plan: %s is %s, want create", name, got)
		}
	}
	apply(t, h, p, true)
	again := plan(t, h, app, h.Bundle(t, app, Base))
	if !again.InSync() {
		t.Fatalf("second plan is not in sync:\n%s", again)
	}
	// Applying an in-sync plan changes nothing.
	if cs := apply(t, h, again, true); len(cs.Changed()) != 0 {
		t.Errorf("applying an in-sync plan changed %v", cs.Changed())
	}
	waitHealthy(t, h, app)
}

func changeOne(t *testing.T, h Harness) {
	app := deploy(t, h, Base)
	p := plan(t, h, app, h.Bundle(t, app, ChangedA))
	if got := actionOf(t, p, h.Ref("a")); got == drivers.ActionUnchanged || got == drivers.ActionDelete {
		t.Errorf("changed a is planned %s", got)
	}
	if got := actionOf(t, p, h.Ref("b")); got != drivers.ActionUnchanged {
		t.Errorf("untouched b is planned %s", got)
	}
	for _, c := range p.Changes {
		if c.Ref == h.Ref("a") && c.Diff == "" {
			t.Errorf("the change of a carries no diff")
		}
	}
	apply(t, h, p, true)
	if p := plan(t, h, app, h.Bundle(t, app, ChangedA)); !p.InSync() {
		t.Errorf("not in sync after the change:\n%s", p)
	}
}

func prune(t *testing.T, h Harness) {
	app := deploy(t, h, Base)
	p := plan(t, h, app, h.Bundle(t, app, WithoutB))
	if got := actionOf(t, p, h.Ref("b")); got != drivers.ActionDelete {
		t.Fatalf("b removed from the bundle is planned %s, want delete", got)
	}
	cs := apply(t, h, p, false)
	skipped := false
	for _, c := range cs {
		if c.Ref == h.Ref("b") && c.Skipped {
			skipped = true
		}
	}
	if !skipped {
		t.Errorf("with pruning off the delete of b was not reported skipped: %v", cs)
	}
	if got := actionOf(t, plan(t, h, app, h.Bundle(t, app, WithoutB)), h.Ref("b")); got != drivers.ActionDelete {
		t.Errorf("b should still exist (and be planned for delete) with pruning off, got %s", got)
	}
	apply(t, h, plan(t, h, app, h.Bundle(t, app, WithoutB)), true)
	if p := plan(t, h, app, h.Bundle(t, app, WithoutB)); !p.InSync() {
		t.Errorf("not in sync after pruning:\n%s", p)
	}
}

func heal(t *testing.T, h Harness) {
	app := deploy(t, h, Base)
	h.Remove(t, app, "a")
	p := plan(t, h, app, h.Bundle(t, app, Base))
	if got := actionOf(t, p, h.Ref("a")); got == drivers.ActionUnchanged {
		t.Fatalf("a removed by hand is planned unchanged")
	}
	apply(t, h, p, true)
	if p := plan(t, h, app, h.Bundle(t, app, Base)); !p.InSync() {
		t.Errorf("not healed:\n%s", p)
	}
}

func watch(t *testing.T, h Harness) {
	app := deploy(t, h, Base)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	events, err := h.Driver().Watch(ctx, app)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	time.Sleep(500 * time.Millisecond) // let the watch establish before the change
	h.Remove(t, app, "b")
	select {
	case _, ok := <-events:
		if !ok {
			t.Fatal("watch channel closed before any event")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no event within 15s of a removal")
	}
	cancel()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("watch channel not closed after ctx ended")
		}
	}
}

func empty(t *testing.T, h Harness) {
	app := deploy(t, h, Base)
	p := plan(t, h, app, &manifests.Bundle{})
	for _, name := range []string{"a", "b"} {
		if got := actionOf(t, p, h.Ref(name)); got != drivers.ActionDelete {
			t.Errorf("empty bundle: %s is planned %s, want delete", name, got)
		}
	}
	apply(t, h, p, true)
	if p := plan(t, h, app, &manifests.Bundle{}); len(p.Changes.Changed()) != 0 {
		t.Errorf("something remains after removing everything:\n%s", p)
	}
}

// liveRevision checks what a restarted daemon relies on: the plan reads, from the backend,
// which revision runs. A complete record names exactly the last applied revision; a partial
// one (Docker's container labels) names a revision that was applied.
func liveRevision(t *testing.T, h Harness) {
	app := h.App(t)
	if got := plan(t, h, app, h.Bundle(t, app, Base)).Live.Revision; got != "" {
		t.Fatalf("a fresh app reports revision %q running", got)
	}
	first := app.Revision
	apply(t, h, plan(t, h, app, h.Bundle(t, app, Base)), true)
	if got := plan(t, h, app, h.Bundle(t, app, Base)).Live.Revision; got != first {
		t.Fatalf("after the first apply the plan reports %q running, want %q", got, first)
	}
	app.Revision = first + "-next"
	apply(t, h, plan(t, h, app, h.Bundle(t, app, ChangedA)), true)
	live := plan(t, h, app, h.Bundle(t, app, ChangedA)).Live
	switch {
	case live.Complete && live.Revision != app.Revision:
		t.Errorf("complete record after the second apply = %q, want %q", live.Revision, app.Revision)
	case !live.Complete && live.Revision != app.Revision && live.Revision != first:
		t.Errorf("partial record after the second apply = %q, want %q or %q", live.Revision, app.Revision, first)
	}
	// A complete record does not move for an apply that only planned: nothing was applied.
	if live.Complete {
		next := app
		next.Revision = first + "-unapplied"
		if got := plan(t, h, next, h.Bundle(t, next, Base)).Live.Revision; got != app.Revision {
			t.Errorf("a plan of an unapplied revision reports %q running, want %q", got, app.Revision)
		}
	}
}

func waitHealthy(t *testing.T, h Harness, app drivers.App) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last drivers.Health
	for time.Now().Before(deadline) {
		hl, err := h.Driver().Health(t.Context(), app)
		if err == nil && hl.Status == drivers.HealthHealthy {
			return
		}
		last = hl
		time.Sleep(250 * time.Millisecond)
	}
	t.Errorf("not healthy after 60s: %+v", last)
}
