// Package metrics holds shipwatch's Prometheus metrics on a private registry. Label values
// are configured names (app, repo) and fixed words, never URLs, commit messages or secrets.
package metrics

import (
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is every metric shipwatch exports. Create one with New and pass it to the
// components that record into it.
type Metrics struct {
	Registry *prometheus.Registry

	ReconcileTotal      *prometheus.CounterVec
	ReconcileDuration   *prometheus.HistogramVec
	AppSyncStatus       *prometheus.GaugeVec
	AppHealthStatus     *prometheus.GaugeVec
	AppDriftedResources *prometheus.GaugeVec
	DriftDetectedTotal  *prometheus.CounterVec
	ApplyChangesTotal   *prometheus.CounterVec
	GitRequestsTotal    *prometheus.CounterVec
	GitRequestDuration  *prometheus.HistogramVec
	WebhookRequests     *prometheus.CounterVec
	LastAppliedTime     *prometheus.GaugeVec
	LastReconcileTime   *prometheus.GaugeVec
	Notifications       *prometheus.CounterVec
	BuildInfo           *prometheus.GaugeVec

	AppOperationPhase     *prometheus.GaugeVec
	AppOperationResources *prometheus.GaugeVec
	AppOperationStarted   *prometheus.GaugeVec
	RollbacksTotal        *prometheus.CounterVec
	StateStoreErrors      *prometheus.CounterVec
	StateStoreResets      prometheus.Counter
	PromotionsTotal       *prometheus.CounterVec
	RevisionsBehind       *prometheus.GaugeVec
}

// New creates the metrics on a fresh registry, with Go and process collectors.
func New(version string) *Metrics {
	const ns = "shipwatch"
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		ReconcileTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "reconcile_total",
			Help: "Reconcile passes by app and result (success, error, stalled)."}, []string{"app", "env", "result"}),
		ReconcileDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "reconcile_duration_seconds",
			Help:    "Duration of one reconcile pass.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}}, []string{"app", "env"}),
		AppSyncStatus: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "app_sync_status",
			Help: "1 for the app's current sync status, 0 for the others."}, []string{"app", "env", "status"}),
		AppHealthStatus: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "app_health_status",
			Help: "1 for the app's current health status, 0 for the others."}, []string{"app", "env", "status"}),
		AppDriftedResources: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "app_drifted_resources",
			Help: "Resources whose live state differs from Git at the applied revision."}, []string{"app", "env"}),
		DriftDetectedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "drift_detected_total",
			Help: "Drift episodes detected, by the app's drift policy (heal, alert)."}, []string{"app", "env", "policy"}),
		ApplyChangesTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "apply_changes_total",
			Help: "Resource changes carried out, by action."}, []string{"app", "env", "action"}),
		GitRequestsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "git_requests_total",
			Help: "Remote Git operations by configured repo name, op (ls-remote, fetch) and result."}, []string{"repo", "op", "result"}),
		GitRequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "git_request_duration_seconds",
			Help: "Duration of remote Git operations.", Buckets: prometheus.DefBuckets}, []string{"repo", "op"}),
		WebhookRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "webhook_requests_total",
			Help: "Webhook requests by provider and result."}, []string{"provider", "result"}),
		LastAppliedTime: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "last_applied_timestamp_seconds",
			Help: "Unix time of the app's last successful apply."}, []string{"app", "env"}),
		LastReconcileTime: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "last_reconcile_timestamp_seconds",
			Help: "Unix time of the app's last finished reconcile pass, successful or not."}, []string{"app", "env"}),
		Notifications: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "notifications_total",
			Help: "Notifications by configured target name and result (sent, failed, dropped)."}, []string{"target", "result"}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "build_info",
			Help: "Always 1; labels carry the version."}, []string{"version", "goversion"}),
		AppOperationPhase: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "app_operation_phase",
			Help: "1 for what the app is doing now (Idle, Syncing, WaitingHealthy), 0 for the others."}, []string{"app", "env", "phase"}),
		AppOperationResources: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "app_operation_resources",
			Help: "Resource changes of the apply in progress: state done or total; 0 when idle."}, []string{"app", "env", "state"}),
		AppOperationStarted: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "app_operation_started_timestamp_seconds",
			Help: "Unix time the apply in progress started; 0 when idle."}, []string{"app", "env"}),
		RollbacksTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "rollbacks_total",
			Help: "Rollbacks by reason: manual, apply-failed, unhealthy."}, []string{"app", "env", "reason"}),
		StateStoreErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "state_store_errors_total",
			Help: "Failed reads and writes of the state store by op (read, write); deploys go on."}, []string{"op"}),
		StateStoreResets: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "state_store_resets_total",
			Help: "State stores found unreadable at start, moved aside and started afresh."}),
		PromotionsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "promotions_total",
			Help: "Promotions into a stage by result (promoted, nothing-to-do, gate-closed, failed, dry-run)."}, []string{"app", "env", "result"}),
		RevisionsBehind: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "revisions_behind",
			Help: "Revisions the source stage has deployed (with changes) since the one last promoted into this stage."}, []string{"app", "env"}),
	}
	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.ReconcileTotal, m.ReconcileDuration, m.AppSyncStatus, m.AppHealthStatus,
		m.AppDriftedResources, m.DriftDetectedTotal, m.ApplyChangesTotal, m.GitRequestsTotal,
		m.GitRequestDuration, m.WebhookRequests, m.LastAppliedTime, m.LastReconcileTime, m.Notifications, m.BuildInfo,
		m.AppOperationPhase, m.AppOperationResources, m.AppOperationStarted, m.RollbacksTotal,
		m.StateStoreErrors, m.StateStoreResets, m.PromotionsTotal, m.RevisionsBehind,
	)
	m.BuildInfo.WithLabelValues(version, runtime.Version()).Set(1)
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// ObserveGitRequest records one remote Git operation; it satisfies source.Observer.
func (m *Metrics) ObserveGitRequest(repo, op, result string, d time.Duration) {
	m.GitRequestsTotal.WithLabelValues(repo, op, result).Inc()
	m.GitRequestDuration.WithLabelValues(repo, op).Observe(d.Seconds())
}

// ObserveWebhook counts one webhook request; it satisfies webhook.Metrics.
func (m *Metrics) ObserveWebhook(provider, result string) {
	m.WebhookRequests.WithLabelValues(provider, result).Inc()
}

// ObserveNotification counts one notification outcome; it satisfies notify.Metrics.
func (m *Metrics) ObserveNotification(target, result string) {
	m.Notifications.WithLabelValues(target, result).Inc()
}

// AppLabels name an app's series: the app and its environment ("" for an app without
// environments). Every per-app metric starts with these two labels.
type AppLabels struct {
	App, Env string
}

// With returns the label values of a series: the app's, then extra.
func (l AppLabels) With(extra ...string) []string {
	return append([]string{l.App, l.Env}, extra...)
}

// SetOneHot sets the app's series of a status gauge (sync, health, phase): 1 for status, 0
// for every other value in all, so a dashboard sees a 0 series for every state rather than
// missing series. The caller owns the vocabulary.
func (m *Metrics) SetOneHot(g *prometheus.GaugeVec, l AppLabels, status string, all []string) {
	for _, s := range all {
		v := 0.0
		if s == status {
			v = 1
		}
		g.WithLabelValues(l.With(s)...).Set(v)
	}
}
