package reconciler

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/internal/metrics"
	"github.com/shipwatch/shipwatch/internal/notify"
	"github.com/shipwatch/shipwatch/internal/state"
	"github.com/shipwatch/shipwatch/manifests"
)

// The fakes below stand in for Git and a backend so the policy (pure logic) can be tested
// alone; the real source and drivers have integration tests of their own.

type fakeSource struct {
	rev string
	// resolveErr and checkoutErr, when set, are what Resolve and Checkout fail with.
	resolveErr, checkoutErr error
	mu                      sync.Mutex
	holds                   map[string]int // checkouts held, by revision
}

func (f *fakeSource) Resolve(context.Context, string) (string, error) {
	if f.resolveErr != nil {
		return "", f.resolveErr
	}
	return f.rev, nil
}

func (f *fakeSource) Checkout(_ context.Context, _, rev string) (string, func(), error) {
	if f.checkoutErr != nil {
		return "", nil, f.checkoutErr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.holds == nil {
		f.holds = map[string]int{}
	}
	f.holds[rev]++
	var once sync.Once
	return "/checkouts/" + rev, func() {
		once.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.holds[rev]--; f.holds[rev] == 0 {
				delete(f.holds, rev)
			}
		})
	}, nil
}

// held lists the revisions whose checkouts are held.
func (f *fakeSource) held() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.holds))
}

// Commit knows every revision whose name starts with "rev" or "good".
func (f *fakeSource) Commit(_ context.Context, _, spec string) (string, error) {
	if strings.HasPrefix(spec, "rev") || strings.HasPrefix(spec, "good") {
		return spec, nil
	}
	return "", fmt.Errorf("revision %s: %w", spec, errNoSuchCommit)
}

var errNoSuchCommit = errors.New("no such commit")

type fakeDriver struct {
	mu      sync.Mutex
	changes drivers.ChangeSet // what Plan reports
	planned []string          // revisions planned
	applied []string          // revisions applied
	health  drivers.HealthStatus
	// unhealthy revisions never become healthy, whatever health says.
	unhealthy map[string]bool
	// complete makes Plan report the last applied revision as a complete live record, as
	// the Kubernetes driver does; otherwise Plan reports none.
	complete bool
	// onApply, when set, runs in the middle of Apply, after the first change's progress.
	onApply func()
	// revisionsDiffer makes Plan report a recreate of "api" whenever the planned revision is
	// not the last applied one, as a real backend does when two revisions differ.
	revisionsDiffer bool
	// applyCtxErr is the apply context's error right after onApply returned.
	applyCtxErr error
	// watchErrs is how many Watch calls fail before one returns watchCh.
	watchErrs int
	watchCh   chan drivers.Event
}

func (f *fakeDriver) Plan(_ context.Context, app drivers.App, _ *manifests.Bundle) (*drivers.Plan, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.planned = append(f.planned, app.Revision)
	p := &drivers.Plan{App: app, Changes: append(drivers.ChangeSet(nil), f.changes...)}
	if f.revisionsDiffer && len(p.Changes) == 0 && (len(f.applied) == 0 || f.applied[len(f.applied)-1] != app.Revision) {
		p.Changes = drivers.ChangeSet{change("api", drivers.ActionRecreate)}
	}
	if f.complete && len(f.applied) > 0 {
		p.Live = drivers.LiveRevision{Revision: f.applied[len(f.applied)-1], Complete: true}
	}
	return p, nil
}

func (f *fakeDriver) Apply(ctx context.Context, p *drivers.Plan, opts drivers.ApplyOptions) (drivers.ChangeSet, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, p.App.Revision)
	var out drivers.ChangeSet
	for i, c := range p.Changes {
		if c.Action == drivers.ActionDelete && !opts.Prune {
			c.Skipped = true
		}
		if opts.Progress != nil {
			opts.Progress(drivers.Progress{Change: c})
			opts.Progress(drivers.Progress{Change: c, Done: true})
		}
		if i == 0 && f.onApply != nil {
			f.mu.Unlock() // onApply may block, and others may read the fake meanwhile
			f.onApply()
			f.mu.Lock()
			f.applyCtxErr = ctx.Err()
		}
		out = append(out, c)
	}
	f.changes = nil
	for _, c := range out {
		if c.Skipped {
			f.changes = append(f.changes, c)
		}
	}
	return out, nil
}

func (f *fakeDriver) Health(context.Context, drivers.App) (drivers.Health, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := len(f.applied); n > 0 && f.unhealthy[f.applied[n-1]] {
		return drivers.Health{Status: drivers.HealthDegraded}, nil
	}
	return drivers.Health{Status: f.health}, nil
}

func (f *fakeDriver) Watch(context.Context, drivers.App) (<-chan drivers.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.watchCh == nil || f.watchErrs > 0 {
		f.watchErrs--
		return nil, errors.New("engine down")
	}
	return f.watchCh, nil
}

type harness struct {
	r      *Reconciler
	m      *metrics.Metrics
	src    *fakeSource
	drv    *fakeDriver
	loads  []string
	events *recorder
	// spec, load and storeDir rebuild the reconciler on the same store: a restart.
	spec     AppSpec
	storeDir string
	store    *state.Store
}

// recorder is a Notifier that keeps what it is told.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) Notify(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

func (r *recorder) types() []notify.EventType {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []notify.EventType
	for _, e := range r.events {
		out = append(out, e.Type)
	}
	return out
}

func newHarness(t *testing.T, policy DriftPolicy, prune bool) *harness {
	t.Helper()
	return newHarnessWith(t, AppSpec{Drift: policy, Prune: prune, Sync: SyncAuto})
}

// newHarnessWith builds a reconciler for one app "web" whose policy fields come from spec.
func newHarnessWith(t *testing.T, spec AppSpec) *harness {
	t.Helper()
	h := &harness{src: &fakeSource{rev: "rev1"}, drv: &fakeDriver{health: drivers.HealthHealthy}, storeDir: t.TempDir()}
	load := func(_ context.Context, dir, rev string) (*manifests.Bundle, error) {
		h.loads = append(h.loads, rev)
		if rev == "broken" {
			return nil, errors.New("compose.yaml: yaml: line 3: mapping values are not allowed")
		}
		return &manifests.Bundle{Revision: rev}, nil
	}
	spec.Name, spec.Repo, spec.Ref, spec.Project, spec.Interval = "web", "deploy", "main", "web", time.Hour
	spec.HealthTimeout, spec.Source, spec.Load, spec.Driver = 50*time.Millisecond, h.src, load, h.drv
	h.spec = spec
	h.restart(t)
	return h
}

// restart builds a new reconciler (fresh metrics and notifier) on the same store, as a
// restarted daemon does; the driver's live state is kept.
func (h *harness) restart(t *testing.T) {
	t.Helper()
	if h.store != nil {
		_ = h.store.Close()
	}
	store, err := state.Open(state.Options{Dir: h.storeDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	h.store, h.m, h.events = store, metrics.New("test"), &recorder{}
	h.r, err = New(Options{Metrics: h.m, HealthPoll: time.Millisecond, Notifier: h.events, Apps: []AppSpec{h.spec}, Store: store})
	if err != nil {
		t.Fatal(err)
	}
}

func (h *harness) pass(t *testing.T) error {
	t.Helper()
	return h.passAs(t, state.TriggerPoll)
}

func (h *harness) passAs(t *testing.T, trigger state.Trigger) error {
	t.Helper()
	return h.r.runPass(t.Context(), h.r.apps["web"], passRequest{Request: Request{Trigger: trigger, Actor: state.ActorDaemon}, resolve: true})
}

func change(name string, a drivers.Action) drivers.Change {
	return drivers.Change{Ref: drivers.Ref{Kind: "service", Name: name}, Action: a}
}

func TestNewRevisionIsApplied(t *testing.T) {
	h := newHarness(t, DriftHeal, true)
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionCreate)}
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	st, _ := h.r.AppStatus("web")
	if st.AppliedRevision != "rev1" || st.Sync != SyncSynced || st.Health != "Healthy" {
		t.Errorf("status after first apply = %+v", st)
	}
	if got := testutil.ToFloat64(h.m.ApplyChangesTotal.WithLabelValues("web", "", "create")); got != 1 {
		t.Errorf("apply_changes_total{create} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(h.m.DriftDetectedTotal.WithLabelValues("web", "", "heal")); got != 0 {
		t.Errorf("a new revision counted as drift: %v", got)
	}
}

func TestDriftHealIsCountedOnceAndApplied(t *testing.T) {
	h := newHarness(t, DriftHeal, true)
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionCreate)}
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionCreate)}
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	if len(h.drv.applied) != 2 {
		t.Fatalf("applied %v, want the drift healed by a second apply", h.drv.applied)
	}
	if got := testutil.ToFloat64(h.m.DriftDetectedTotal.WithLabelValues("web", "", "heal")); got != 1 {
		t.Errorf("drift_detected_total = %v, want 1", got)
	}
	if got := testutil.ToFloat64(h.m.AppDriftedResources.WithLabelValues("web", "")); got != 0 {
		t.Errorf("drifted gauge after heal = %v, want 0", got)
	}
	if len(h.loads) != 1 {
		t.Errorf("manifests loaded %d times for one revision, want 1", len(h.loads))
	}
}

func TestDriftAlertReportsWithoutApplying(t *testing.T) {
	h := newHarness(t, DriftAlert, true)
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionCreate)}
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionCreate), change("db", drivers.ActionRecreate)}
	for range 3 {
		if err := h.pass(t); err != nil {
			t.Fatal(err)
		}
	}
	if len(h.drv.applied) != 1 {
		t.Errorf("applied %v under drift: alert, want only the first deploy", h.drv.applied)
	}
	if got := testutil.ToFloat64(h.m.DriftDetectedTotal.WithLabelValues("web", "", "alert")); got != 1 {
		t.Errorf("drift_detected_total = %v, want one episode", got)
	}
	if got := testutil.ToFloat64(h.m.AppDriftedResources.WithLabelValues("web", "")); got != 2 {
		t.Errorf("drifted gauge = %v, want 2", got)
	}
	st, _ := h.r.AppStatus("web")
	if st.Sync != SyncOutOfSync || len(st.Drift) != 2 {
		t.Errorf("status = %+v", st)
	}
	// A human syncs: the drift is healed even under alert.
	if _, err := h.r.Sync(t.Context(), "web", SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(h.drv.applied) != 2 {
		t.Errorf("sync did not apply: %v", h.drv.applied)
	}
}

func TestBrokenRevisionIsStalledAndKeepsCheckingDrift(t *testing.T) {
	h := newHarness(t, DriftHeal, true)
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	h.src.rev = "broken"
	err := h.pass(t)
	var se *StageError
	if !errors.As(err, &se) || se.Stage != StageRender || se.Class != ClassStalled {
		t.Fatalf("err = %v, want a stalled RenderFailed", err)
	}
	if err := h.pass(t); !errors.As(err, &se) {
		t.Fatalf("second pass at the broken revision: err = %v, want the stalled error kept", err)
	}
	if n := len(h.loads); n != 2 {
		t.Errorf("loaded %d times, want the broken revision loaded once", n)
	}
	if last := h.drv.planned[len(h.drv.planned)-1]; last != "rev1" {
		t.Errorf("planned %q at a broken revision, want the last good rev1", last)
	}
	st, _ := h.r.AppStatus("web")
	if st.LastError == nil || st.LastError.Stage != StageRender || st.AppliedRevision != "rev1" || st.Sync != SyncOutOfSync {
		t.Errorf("status = %+v", st)
	}
	if got := testutil.ToFloat64(h.m.ReconcileTotal.WithLabelValues("web", "", "stalled")); got != 2 {
		t.Errorf("reconcile_total{stalled} = %v", got)
	}
}

func TestPruneDisabledKeepsDeletesOutOfDrift(t *testing.T) {
	h := newHarness(t, DriftHeal, false)
	h.drv.changes = drivers.ChangeSet{change("old", drivers.ActionDelete)}
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(h.m.DriftDetectedTotal.WithLabelValues("web", "", "heal")); got != 0 {
		t.Errorf("a kept (unpruned) resource counted as drift: %v", got)
	}
	st, _ := h.r.AppStatus("web")
	if st.Sync != SyncOutOfSync {
		t.Errorf("sync = %s, want OutOfSync while a removed resource is kept", st.Sync)
	}
}

func TestHealthTimeoutIsReported(t *testing.T) {
	h := newHarness(t, DriftHeal, true)
	h.drv.health = drivers.HealthDegraded
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionCreate)}
	err := h.pass(t)
	var se *StageError
	if !errors.As(err, &se) || se.Stage != StageHealth || se.Class != ClassWaiting {
		t.Fatalf("err = %v, want HealthFailed", err)
	}
	st, _ := h.r.AppStatus("web")
	if st.Health != "Degraded" || st.AppliedRevision != "rev1" {
		t.Errorf("status = %+v", st)
	}
}

func TestBackoffGrowsAndCaps(t *testing.T) {
	h := newHarness(t, DriftHeal, true)
	st := h.r.apps["web"]
	retry := &StageError{Class: ClassRetry, Err: errors.New("net")}
	var got []time.Duration
	for range 4 {
		got = append(got, h.r.nextWait(st, retry))
	}
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("backoff = %v, want %v", got, want)
		}
	}
	if w := h.r.nextWait(st, nil); w < time.Hour || w > time.Hour+6*time.Minute {
		t.Errorf("wait after success = %v, want the interval plus at most 10%% jitter", w)
	}
}

func TestClassify(t *testing.T) {
	invalid := fmt.Errorf("service api: key x: %w", drivers.ErrInvalidSpec)
	cases := []struct {
		stage Stage
		err   error
		want  Class
	}{
		{StageRender, errors.New("yaml"), ClassStalled},
		{StagePlan, invalid, ClassStalled},
		{StagePlan, errors.New("engine unreachable"), ClassRetry},
		{StageFetch, errors.New("timeout"), ClassRetry},
		{StageApply, errors.New("conflict"), ClassRetry},
		{StageHealth, errors.New("not healthy"), ClassWaiting},
	}
	for _, c := range cases {
		if got := classify(c.stage, c.err); got != c.want {
			t.Errorf("classify(%s, %v) = %s, want %s", c.stage, c.err, got, c.want)
		}
	}
}

func TestManualSyncWaitsForAHuman(t *testing.T) {
	h := newHarnessWith(t, AppSpec{Drift: DriftHeal, Prune: true, Sync: SyncManual})
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionCreate)}
	for range 2 {
		if err := h.pass(t); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := h.r.AppStatus("web")
	if len(h.drv.applied) != 0 || st.Sync != SyncOutOfSync || st.DesiredRevision != "rev1" || st.AppliedRevision != "" {
		t.Fatalf("manual app applied by itself: applied %v, status %+v", h.drv.applied, st)
	}
	if len(st.Drift) != 0 {
		t.Errorf("a new revision waiting for sync is reported as drift: %v", st.Drift)
	}
	if st, err := h.r.Sync(t.Context(), "web", SyncOptions{}); err != nil || st.AppliedRevision != "rev1" || st.Sync != SyncSynced {
		t.Fatalf("Sync = %+v, %v", st, err)
	}
}

func TestSuspendChangesNothing(t *testing.T) {
	h := newHarnessWith(t, AppSpec{Drift: DriftHeal, Prune: true, Sync: SyncAuto, Suspend: true})
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionCreate)}
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	if _, err := h.r.Sync(t.Context(), "web", SyncOptions{}); !errors.Is(err, ErrSuspended) {
		t.Errorf("Sync of a suspended app: %v, want ErrSuspended", err)
	}
	if len(h.drv.applied) != 0 {
		t.Errorf("a suspended app was applied: %v", h.drv.applied)
	}
	if st, _ := h.r.AppStatus("web"); st.Sync != SyncOutOfSync || !st.Planned {
		t.Errorf("suspended app not reported: %+v", st)
	}
}

func TestUnmanagedResourceIsDriftNeverApplied(t *testing.T) {
	h := newHarness(t, DriftHeal, true)
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionCreate)}
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	hand := drivers.Change{Ref: drivers.Ref{Kind: "container", Name: "web-debug-1"}, Action: drivers.ActionUnchanged, Unmanaged: true}
	h.drv.changes = drivers.ChangeSet{hand}
	for range 3 {
		if err := h.pass(t); err != nil {
			t.Fatal(err)
		}
	}
	if len(h.drv.applied) != 1 {
		t.Errorf("an unmanaged container caused applies: %v", h.drv.applied)
	}
	if got := testutil.ToFloat64(h.m.DriftDetectedTotal.WithLabelValues("web", "", "heal")); got != 1 {
		t.Errorf("drift_detected_total = %v, want one episode", got)
	}
	if st, _ := h.r.AppStatus("web"); st.Sync != SyncOutOfSync || len(st.Drift) != 1 {
		t.Errorf("status = %+v", st)
	}
	h.drv.changes = nil // a human removed it
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	if st, _ := h.r.AppStatus("web"); st.Sync != SyncSynced || len(st.Drift) != 0 {
		t.Errorf("status after removal = %+v", st)
	}
}

func TestNotificationsAreSentOncePerEpisode(t *testing.T) {
	h := newHarness(t, DriftHeal, true)
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionCreate)}
	_ = h.pass(t) // sync-succeeded
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionCreate)}
	_ = h.pass(t) // drift-detected, sync-succeeded, drift-healed
	h.src.rev = "broken"
	_ = h.pass(t) // sync-failed
	_ = h.pass(t) // still failing: nothing new
	h.src.rev = "rev3"
	h.drv.health = drivers.HealthDegraded
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionRecreate)}
	_ = h.pass(t) // sync-succeeded, health-degraded (HealthFailed: the failure episode goes on)
	h.drv.health = drivers.HealthHealthy
	_ = h.pass(t) // health-recovered
	want := []notify.EventType{
		notify.SyncSucceeded,
		notify.DriftDetected, notify.SyncSucceeded, notify.DriftHealed,
		notify.SyncFailed,
		notify.SyncSucceeded, notify.HealthDegraded,
		notify.HealthRecovered,
	}
	if got := h.events.types(); !slices.Equal(got, want) {
		t.Errorf("events =\n  %v\nwant\n  %v", got, want)
	}
}

func TestRefreshRepoMatchesRefs(t *testing.T) {
	cases := []struct {
		configured, pushed string
		want               bool
	}{
		{"main", "refs/heads/main", true},
		{"main", "refs/heads/maint", false},
		{"v1", "refs/tags/v1", true},
		{"refs/heads/main", "refs/heads/main", true},
		{"HEAD", "refs/heads/anything", true},
		{"HEAD", "refs/tags/v1", false},
		{"0123456789012345678901234567890123456789", "refs/heads/main", false},
	}
	for _, c := range cases {
		if got := refMatches(c.configured, c.pushed); got != c.want {
			t.Errorf("refMatches(%q, %q) = %v", c.configured, c.pushed, got)
		}
	}
	h := newHarness(t, DriftHeal, true)
	if n := h.r.RefreshRepo("deploy", "refs/heads/main"); n != 1 {
		t.Errorf("RefreshRepo(deploy, main) = %d", n)
	}
	if n := h.r.RefreshRepo("other", "refs/heads/main"); n != 0 {
		t.Errorf("RefreshRepo(other) = %d", n)
	}
}
