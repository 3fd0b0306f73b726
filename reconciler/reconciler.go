// Package reconciler runs the GitOps loop: it resolves each app's ref, loads its manifests,
// asks the app's driver for a plan, decides by policy whether to apply, waits for health and
// reports status and metrics. It owns order, timing, retries and policy; it knows nothing of
// Docker or Kubernetes.
package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/internal/metrics"
	"github.com/shipwatch/shipwatch/internal/state"
	"github.com/shipwatch/shipwatch/manifests"
)

// Source resolves and checks out one app's repository.
type Source interface {
	// Resolve returns the commit the ref points to.
	Resolve(ctx context.Context, ref string) (string, error)
	// Checkout returns a directory holding the tree at revision, kept until release is
	// called (release may be called more than once).
	Checkout(ctx context.Context, ref, revision string) (dir string, release func(), err error)
	// Commit expands a full or abbreviated SHA to the commit it names, which must be in
	// the ref's history: the target of a rollback.
	Commit(ctx context.Context, ref, spec string) (string, error)
}

// Store keeps what must survive a restart; *state.Store implements it.
type Store interface {
	App(app string) (state.AppRecord, error)
	SaveApp(app string, rec state.AppRecord) error
	Record(app string, e state.Entry) (state.Entry, error)
	History(app string, limit int) ([]state.Entry, error)
	Entry(app string, id uint64) (state.Entry, error)
}

// Loader turns a checkout into the app's desired state.
type Loader func(ctx context.Context, checkout, revision string) (*manifests.Bundle, error)

// DriftPolicy is what to do with drift at an unchanged revision.
type DriftPolicy string

// Drift policies: heal re-applies Git's state; alert only reports.
const (
	DriftHeal  DriftPolicy = "heal"
	DriftAlert DriftPolicy = "alert"
)

// SyncPolicy says whether new revisions are applied by themselves.
type SyncPolicy string

// Sync policies: auto applies each new revision; manual reports it OutOfSync and waits
// for Sync (the CLI or the API).
const (
	SyncAuto   SyncPolicy = "auto"
	SyncManual SyncPolicy = "manual"
)

// FailurePolicy is what to do when a new revision fails to apply or to become healthy.
type FailurePolicy string

// Failure policies: none leaves the failed revision in place; rollback deploys the last
// healthy revision and pins the app there until a newer commit arrives.
const (
	FailureNone     FailurePolicy = "none"
	FailureRollback FailurePolicy = "rollback"
)

// AppSpec is one app as the reconciler runs it.
type AppSpec struct {
	// Name is the app as users address it: "web", or "web@dev" for an environment. Status,
	// history and the API use it.
	Name string
	// App and Env are the configured app and environment ("" for an app without
	// environments); metrics carry them as labels. App defaults to Name.
	App, Env string
	// Backend is the name drivers record on what they create ("web.prod"); default Name.
	Backend string
	// Repo is the configured repo name, for logs.
	Repo     string
	Ref      string
	Project  string
	Interval time.Duration
	Drift    DriftPolicy
	Sync     SyncPolicy
	// Suspend stops every change to the app; it is still planned and reported.
	Suspend       bool
	Prune         bool
	HealthTimeout time.Duration
	OnFailure     FailurePolicy
	Source        Source
	Load          Loader
	Driver        drivers.Driver
}

// Options configures a Reconciler.
type Options struct {
	Apps    []AppSpec
	Workers int
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// HealthPoll is how often health is sampled while waiting; default 1s.
	HealthPoll time.Duration
	// RetryBase and RetryMax bound the exponential backoff after transient errors;
	// defaults 2s and 5m.
	RetryBase, RetryMax time.Duration
	// Notifier, when set, receives sync, drift and health events.
	Notifier Notifier
	// ShutdownTimeout is how long a pass in flight may go on after Run's context ends, so
	// that an apply is finished rather than cut in the middle; default 30s.
	ShutdownTimeout time.Duration
	// ApplyTimeout bounds one apply, which its caller cannot cancel; default 10m.
	ApplyTimeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Store keeps applied revisions, pins and history across restarts. Without one (a
	// one-shot verb while a daemon holds the state dir) they live in memory, and history
	// and rollback are unavailable.
	Store Store
	// Warnings are shown in every app's status from the start (a store that had to be
	// started afresh).
	Warnings []string
}

// Reconciler runs passes for a fixed set of apps.
type Reconciler struct {
	opts    Options
	log     *slog.Logger
	m       *metrics.Metrics
	workers chan struct{}
	apps    map[string]*appState
	names   []string

	warnMu   sync.Mutex
	warnings []string
}

// appState is one app's mutable state; mu serialises passes (per-app single flight) and
// guards the fields.
type appState struct {
	spec AppSpec
	// labels name the app's metric series.
	labels metrics.AppLabels
	mu     sync.Mutex
	// statusMu guards status for readers that must not wait for a pass.
	statusMu sync.Mutex
	status   Status

	// recMu guards rec and orders its writes to the store: a pass and an unpin may both
	// change it.
	recMu sync.Mutex
	rec   state.AppRecord

	// head is the ref's revision at the last resolve.
	head string
	// fetchErr is set while Git cannot be read (resolve or checkout); passes triggered by
	// live changes keep it, so status does not claim Synced meanwhile.
	fetchErr     *StageError
	lastBundle   *manifests.Bundle
	lastRevision string
	// releaseBundle lets go of lastBundle's checkout.
	releaseBundle func()
	// stalled is the render failure of a revision, kept so it is not loaded again.
	stalled *StageError
	// failing is set while passes fail, so a failure is notified once, when it starts.
	failing   bool
	failures  int
	triggerCh chan Request
}

// Request says what asks for a pass and who: it is recorded in history.
type Request struct {
	Trigger state.Trigger
	Actor   state.Actor
}

// New checks the options and prepares the apps; nothing runs until Run or a pass is asked for.
func New(opts Options) (*Reconciler, error) {
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	if opts.HealthPoll <= 0 {
		opts.HealthPoll = time.Second
	}
	if opts.RetryBase <= 0 {
		opts.RetryBase = 2 * time.Second
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 5 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 30 * time.Second
	}
	if opts.ApplyTimeout <= 0 {
		opts.ApplyTimeout = 10 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		return nil, errors.New("reconciler: metrics are required")
	}
	r := &Reconciler{
		opts: opts, log: opts.Logger, m: opts.Metrics,
		workers:  make(chan struct{}, opts.Workers),
		apps:     map[string]*appState{},
		warnings: slices.Clone(opts.Warnings),
	}
	for _, a := range opts.Apps {
		if _, dup := r.apps[a.Name]; dup {
			return nil, fmt.Errorf("reconciler: duplicate app %q", a.Name)
		}
		if a.Source == nil || a.Load == nil || a.Driver == nil {
			return nil, fmt.Errorf("reconciler: app %q needs a source, a loader and a driver", a.Name)
		}
		if a.OnFailure == "" {
			a.OnFailure = FailureNone
		}
		a.Driver = recordPlans(a.Driver, opts.Now) // LastPlan serves the API's diff
		if a.App == "" {
			a.App = a.Name
		}
		if a.Backend == "" {
			a.Backend = a.Name
		}
		st := &appState{spec: a, triggerCh: make(chan Request, 1), labels: metrics.AppLabels{App: a.App, Env: a.Env}}
		st.status = Status{App: a.Name, Sync: SyncUnknown, Health: string(drivers.HealthUnknown)}
		r.loadRecord(st)
		r.apps[a.Name] = st
		r.names = append(r.names, a.Name)
		r.initMetrics(a, st.labels)
	}
	sort.Strings(r.names)
	return r, nil
}

// ErrUnknownApp is returned for an app name that is not configured.
var ErrUnknownApp = errors.New("unknown app")

func (r *Reconciler) app(name string) (*appState, error) {
	st, ok := r.apps[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownApp, name)
	}
	return st, nil
}

// initMetrics makes every series of an app exist from the start: counters at 0 so that
// increase() in alert rules sees the first event, one-hot gauges with every state.
func (r *Reconciler) initMetrics(a AppSpec, labels metrics.AppLabels) {
	r.m.SetOneHot(r.m.AppSyncStatus, labels, SyncUnknown, SyncStatuses())
	r.m.SetOneHot(r.m.AppHealthStatus, labels, string(drivers.HealthUnknown), drivers.HealthStatuses())
	r.m.SetOneHot(r.m.AppOperationPhase, labels, string(PhaseIdle), Phases())
	r.m.AppDriftedResources.WithLabelValues(labels.With()...).Set(0)
	for _, result := range []string{"success", "error", "stalled"} {
		r.m.ReconcileTotal.WithLabelValues(labels.With(result)...)
	}
	r.m.DriftDetectedTotal.WithLabelValues(labels.With(string(a.Drift))...)
	for _, reason := range RollbackReasons() {
		r.m.RollbacksTotal.WithLabelValues(labels.With(string(reason))...)
	}
}

// Status returns a copy of every app's status, sorted by name.
func (r *Reconciler) Status() []Status {
	out := make([]Status, 0, len(r.names))
	for _, n := range r.names {
		out = append(out, r.withWarnings(r.apps[n].snapshot()))
	}
	return out
}

// AppStatus returns one app's status.
func (r *Reconciler) AppStatus(name string) (Status, error) {
	st, err := r.app(name)
	if err != nil {
		return Status{}, err
	}
	return r.withWarnings(st.snapshot()), nil
}

// Warnings are problems of the daemon as a whole (its store), shown with every status.
func (r *Reconciler) Warnings() []string {
	r.warnMu.Lock()
	defer r.warnMu.Unlock()
	return slices.Clone(r.warnings)
}

func (r *Reconciler) withWarnings(s Status) Status {
	s.Warnings = r.Warnings()
	return s
}

// Ready reports whether every app has been planned at least once.
func (r *Reconciler) Ready() bool {
	for _, n := range r.names {
		if !r.apps[n].snapshot().Planned {
			return false
		}
	}
	return true
}

func (st *appState) snapshot() Status {
	st.statusMu.Lock()
	defer st.statusMu.Unlock()
	s := st.status
	s.Drift = append([]drivers.Change(nil), s.Drift...)
	s.LastChanges = append([]drivers.Change(nil), s.LastChanges...)
	if s.Operation != nil {
		op := *s.Operation
		s.Operation = &op
	}
	if s.Pin != nil {
		pin := *s.Pin
		s.Pin = &pin
	}
	return s
}

func (st *appState) update(f func(s *Status)) {
	st.statusMu.Lock()
	defer st.statusMu.Unlock()
	f(&st.status)
}

// Trigger asks for a pass of app soon. Triggers coalesce: many triggers before the pass
// starts cause one pass, recorded with the first one's request.
func (r *Reconciler) Trigger(name string, req Request) error {
	st, err := r.app(name)
	if err != nil {
		return err
	}
	select {
	case st.triggerCh <- req:
	default:
	}
	return nil
}

// RefreshRepo asks for an immediate pass of every app on repo whose ref is the pushed ref
// ("refs/heads/main", "refs/tags/v1"); an empty ref matches every app on the repo. It returns
// how many apps were triggered. Webhooks call it.
func (r *Reconciler) RefreshRepo(repo, ref string) int {
	n := 0
	for _, name := range r.names {
		st := r.apps[name]
		if st.spec.Repo == repo && (ref == "" || refMatches(st.spec.Ref, ref)) {
			_ = r.Trigger(name, Request{Trigger: state.TriggerWebhook, Actor: state.ActorDaemon})
			n++
		}
	}
	return n
}

// refMatches reports whether an app's configured ref names the pushed full ref. An app on
// HEAD cannot know the remote's default branch, so any branch push refreshes it (a resolve
// is one cheap ls-remote).
func refMatches(configured, pushed string) bool {
	return configured == pushed || pushed == "refs/heads/"+configured || pushed == "refs/tags/"+configured ||
		(configured == "HEAD" && strings.HasPrefix(pushed, "refs/heads/"))
}

func (r *Reconciler) driverApp(st *appState, revision string) drivers.App {
	return drivers.App{Name: st.spec.Backend, Project: st.spec.Project, Revision: revision}
}
