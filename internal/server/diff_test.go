package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/internal/metrics"
	"github.com/shipwatch/shipwatch/internal/state"
	"github.com/shipwatch/shipwatch/internal/testpoll"
	"github.com/shipwatch/shipwatch/manifests"
	"github.com/shipwatch/shipwatch/reconciler"
)

// countingSource and countingDriver count what a pass costs: ls-remotes, checkouts, plans.
type countingSource struct{ resolves, checkouts atomic.Int32 }

func (s *countingSource) Resolve(context.Context, string) (string, error) {
	s.resolves.Add(1)
	return "rev1", nil
}

func (s *countingSource) Checkout(_ context.Context, _, rev string) (string, func(), error) {
	s.checkouts.Add(1)
	return "/checkouts/" + rev, func() {}, nil
}

func (s *countingSource) Commit(_ context.Context, _, spec string) (string, error) { return spec, nil }

type countingDriver struct{ plans atomic.Int32 }

func (d *countingDriver) Plan(_ context.Context, app drivers.App, _ *manifests.Bundle) (*drivers.Plan, error) {
	d.plans.Add(1)
	return &drivers.Plan{App: app, Changes: drivers.ChangeSet{
		{Ref: drivers.Ref{Kind: "service", Name: "web"}, Action: drivers.ActionCreate, Reason: "new"},
	}}, nil
}

func (d *countingDriver) Apply(context.Context, *drivers.Plan, drivers.ApplyOptions) (drivers.ChangeSet, error) {
	return nil, errors.New("not applied in this test")
}

func (d *countingDriver) Health(context.Context, drivers.App) (drivers.Health, error) {
	return drivers.Health{Status: drivers.HealthMissing}, nil
}

func (d *countingDriver) Watch(context.Context, drivers.App) (<-chan drivers.Event, error) {
	return nil, errors.New("no watch")
}

// TestDiffCostsNoPass: GET .../diff, which needs no token, is served from the daemon's
// last plan: a flood of them makes no ls-remote, no checkout and no plan.
func TestDiffCostsNoPass(t *testing.T) {
	src, drv := &countingSource{}, &countingDriver{}
	load := func(context.Context, string, string) (*manifests.Bundle, error) { return &manifests.Bundle{}, nil }
	rec, err := reconciler.New(reconciler.Options{Metrics: metrics.New("t"), Apps: []reconciler.AppSpec{{
		Name: "app", Repo: "deploy", Ref: "main", Project: "app", Interval: 1 << 40,
		Drift: reconciler.DriftHeal, Sync: reconciler.SyncManual, Prune: true, HealthTimeout: 1,
		Source: src, Load: load, Driver: drv,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, Options{Apps: rec})
	base := "http://" + s.Addr() + "/api/v1/apps/app/diff"
	if code, body := call(t, "GET", base, ""); code != http.StatusServiceUnavailable {
		t.Errorf("diff before the first plan = %d %s, want 503", code, body)
	}
	// The daemon's pass (sync: manual holds the change, nothing is applied).
	if err := rec.Trigger("app", reconciler.Request{Trigger: state.TriggerPoll, Actor: state.ActorDaemon}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); _ = rec.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testpoll.Poll{Period: 10 * time.Millisecond, Timeout: 10 * time.Second}.Until(t, "the daemon's first plan", rec.Ready)
	resolves, checkouts, plans := src.resolves.Load(), src.checkouts.Load(), drv.plans.Load()
	for range 100 {
		code, body := call(t, "GET", base, "")
		var d DiffResponse
		if code != http.StatusOK || json.Unmarshal([]byte(body), &d) != nil || d.InSync || len(d.Changes) != 1 ||
			d.Revision != "rev1" || d.PlannedAt.IsZero() {
			t.Fatalf("diff = %d %s", code, body)
		}
	}
	if r, c, p := src.resolves.Load()-resolves, src.checkouts.Load()-checkouts, drv.plans.Load()-plans; r+c+p != 0 {
		t.Errorf("100 GETs of the diff cost %d ls-remotes, %d checkouts and %d plans; want none", r, c, p)
	}
}
