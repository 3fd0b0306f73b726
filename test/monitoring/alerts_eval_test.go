package monitoring

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/template"
)

// evalInterval is how often the test evaluates the rules, like Prometheus' default
// evaluation_interval of 1m.
const evalInterval = time.Minute

// alertCase is one scenario: series loaded in promqltest's syntax, and the alerts expected
// to be firing at a point in time, each given by its labels ("app=web,env=prod").
type alertCase struct {
	name  string
	load  string
	alert string
	at    time.Duration
	want  []string
}

func alertCases() []alertCase {
	return []alertCase{
		{name: "drift left alone", alert: "ShipwatchDriftDetected", at: 20 * time.Minute, want: []string{"app=web,env=prod"},
			load: `shipwatch_app_drifted_resources{app="web",env="prod"} 0x5 2x30
				shipwatch_app_drifted_resources{app="api",env="prod"} 0x40
				shipwatch_drift_detected_total{app="web",env="prod",policy="alert"} 0x5 1x30`},
		{name: "drift healed within a scrape", alert: "ShipwatchDriftDetected", at: 9 * time.Minute, want: []string{"app=web,env=prod"},
			load: `shipwatch_app_drifted_resources{app="web",env="prod"} 0x5 1 0x30
				shipwatch_drift_detected_total{app="web",env="prod",policy="heal"} 0x5 1x30`},
		{name: "healed drift ages out", alert: "ShipwatchDriftDetected", at: 30 * time.Minute,
			load: `shipwatch_app_drifted_resources{app="web",env="prod"} 0x5 1 0x30
				shipwatch_drift_detected_total{app="web",env="prod",policy="heal"} 0x5 1x30`},
		{name: "every pass fails", alert: "ShipwatchSyncFailing", at: 30 * time.Minute, want: []string{"app=web,env=prod"},
			load: `shipwatch_reconcile_total{app="web",env="prod",result="success"} 0+1x5 5x40
				shipwatch_reconcile_total{app="web",env="prod",result="error"} 0x5 0+1x40
				shipwatch_reconcile_total{app="api",env="prod",result="success"} 0+1x45`},
		{name: "stalled and never succeeded", alert: "ShipwatchSyncFailing", at: 30 * time.Minute, want: []string{"app=web,env=prod"},
			load: `shipwatch_reconcile_total{app="web",env="prod",result="stalled"} 0+1x45`},
		{name: "one error between successes", alert: "ShipwatchSyncFailing", at: 30 * time.Minute,
			load: `shipwatch_reconcile_total{app="web",env="prod",result="success"} 0+1x45
				shipwatch_reconcile_total{app="web",env="prod",result="error"} 0x20 1x25`},
		{name: "degraded for 10m", alert: "ShipwatchAppDegraded", at: 20 * time.Minute, want: []string{"app=web,env=prod"},
			load: `shipwatch_app_health_status{app="web",env="prod",status="Degraded"} 0x10 1x20
				shipwatch_app_health_status{app="web",env="prod",status="Healthy"} 1x10 0x20
				shipwatch_app_health_status{app="api",env="prod",status="Degraded"} 0x30`},
		{name: "degraded briefly during a rollout", alert: "ShipwatchAppDegraded", at: 20 * time.Minute,
			load: `shipwatch_app_health_status{app="web",env="prod",status="Degraded"} 0x10 1x3 0x20`},
		{name: "repo down", alert: "ShipwatchRepoUnreachable", at: 30 * time.Minute, want: []string{"repo=infra"},
			load: `shipwatch_git_requests_total{repo="infra",op="ls-remote",result="success"} 0+1x5 5x40
				shipwatch_git_requests_total{repo="infra",op="ls-remote",result="error"} 0x5 0+1x40
				shipwatch_git_requests_total{repo="apps",op="ls-remote",result="success"} 0+1x45`},
		{name: "repo flaky but reachable", alert: "ShipwatchRepoUnreachable", at: 30 * time.Minute,
			load: `shipwatch_git_requests_total{repo="infra",op="ls-remote",result="success"} 0+1x45
				shipwatch_git_requests_total{repo="infra",op="fetch",result="error"} 0+1x45`},
		{name: "reconcile loop stuck", alert: "ShipwatchReconcileStale", at: 40 * time.Minute, want: []string{"app=web,env=prod"},
			load: `shipwatch_last_reconcile_timestamp_seconds{app="web",env="prod"} 0+60x10 600x40
				shipwatch_last_reconcile_timestamp_seconds{app="api",env="prod"} 0+60x50`},
		{name: "reconcile loop recent enough", alert: "ShipwatchReconcileStale", at: 22 * time.Minute,
			load: `shipwatch_last_reconcile_timestamp_seconds{app="web",env="prod"} 0+60x10 600x40`},
		{name: "target down", alert: "ShipwatchDown", at: 20 * time.Minute, want: []string{"instance=a:9420,job=shipwatch"},
			load: `up{job="shipwatch",instance="a:9420"} 1x5 0x30`},
		{name: "target gone", alert: "ShipwatchDown", at: 20 * time.Minute, want: []string{"job=shipwatch"},
			load: `up{job="other",instance="b:9100"} 1x30`},
		{name: "target up", alert: "ShipwatchDown", at: 20 * time.Minute,
			load: `up{job="shipwatch",instance="a:9420"} 1x30`},
		{name: "out of sync for an hour", alert: "ShipwatchAppOutOfSync", at: 60 * time.Minute, want: []string{"app=web,env=prod"},
			load: `shipwatch_app_sync_status{app="web",env="prod",status="OutOfSync"} 0x5 1x60
				shipwatch_app_sync_status{app="api",env="prod",status="OutOfSync"} 0x50 1x15`},
		{name: "rolled back automatically", alert: "ShipwatchRolledBack", at: 20 * time.Minute, want: []string{"app=web,env=prod"},
			load: `shipwatch_rollbacks_total{app="web",env="prod",reason="unhealthy"} 0x10 1x20
				shipwatch_rollbacks_total{app="api",env="prod",reason="manual"} 0x10 1x20`},
		{name: "automatic rollback ages out", alert: "ShipwatchRolledBack", at: 50 * time.Minute,
			load: `shipwatch_rollbacks_total{app="web",env="prod",reason="unhealthy"} 0x10 1x50`},
		{name: "promotion failed", alert: "ShipwatchPromotionFailing", at: 20 * time.Minute, want: []string{"app=web,env=staging"},
			load: `shipwatch_promotions_total{app="web",env="staging",result="failed"} 0x10 1x20
				shipwatch_promotions_total{app="web",env="prod",result="gate-closed"} 0x10 1x20`},
		{name: "store write failed", alert: "ShipwatchStateStoreFailing", at: 20 * time.Minute, want: []string{""},
			load: `shipwatch_state_store_errors_total{op="write"} 0x10 3x20
				shipwatch_state_store_resets_total 0x30`},
		{name: "store healthy", alert: "ShipwatchStateStoreFailing", at: 20 * time.Minute,
			load: `shipwatch_state_store_errors_total{op="write"} 0x30
				shipwatch_state_store_resets_total 0x30`},
		{name: "notifications failing", alert: "ShipwatchNotificationsFailing", at: 30 * time.Minute, want: []string{"target=slack"},
			load: `shipwatch_notifications_total{target="slack",result="failed"} 0+1x40
				shipwatch_notifications_total{target="hook",result="failed"} 0x10 1x30
				shipwatch_notifications_total{target="hook",result="sent"} 0+1x40`},
	}
}

// TestAlertsFire evaluates each alert's real expression with Prometheus' PromQL engine over
// the scenario's series, once per evaluation interval, and applies the alert's `for` the way
// Prometheus does: firing once the expression has returned the series at every evaluation
// for at least that long. It also expands the annotations as Prometheus would.
func TestAlertsFire(t *testing.T) {
	rules := map[string]rulefmt.Rule{}
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			rules[r.Alert] = r
		}
	}
	covered := map[string]bool{}
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 1_000_000, Timeout: time.Minute, Parser: newParser()})
	t.Cleanup(func() {
		if err := engine.Close(); err != nil {
			t.Errorf("close engine: %v", err)
		}
	})
	for _, tc := range alertCases() {
		rule, ok := rules[tc.alert]
		if !ok {
			t.Errorf("%s: no alert %s in the rules", tc.name, tc.alert)
			continue
		}
		if len(tc.want) > 0 {
			covered[tc.alert] = true
		}
		t.Run(tc.name, func(t *testing.T) {
			st := promqltest.LoadedStorage(t, "load 1m\n\t"+tc.load)
			firing := evalAlert(t, engine, st, rule, tc.at)
			got := make([]string, 0, len(firing))
			for _, s := range firing {
				got = append(got, labelString(s.Metric))
				checkAnnotations(t, engine, st, rule, s, tc.at)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("%s firing at %v = %v, want %v", tc.alert, tc.at, got, tc.want)
			}
		})
	}
	for name := range rules {
		if !covered[name] {
			t.Errorf("alert %s has no scenario in which it fires", name)
		}
	}
}

// evalAlert returns the samples of rule that are firing at `at`.
func evalAlert(t *testing.T, engine *promql.Engine, st storage.Queryable, rule rulefmt.Rule, at time.Duration) []promql.Sample {
	t.Helper()
	hold := time.Duration(rule.For)
	activeAt := map[string]time.Duration{}
	var firing []promql.Sample
	for ts := time.Duration(0); ts <= at; ts += evalInterval {
		vec := instantQuery(t, engine, st, rule.Expr, ts)
		next := map[string]time.Duration{}
		firing = firing[:0]
		for _, s := range vec {
			key := labelString(s.Metric)
			since, seen := activeAt[key]
			if !seen {
				since = ts
			}
			next[key] = since
			if ts-since >= hold {
				firing = append(firing, s)
			}
		}
		activeAt = next
	}
	return firing
}

func instantQuery(t *testing.T, engine *promql.Engine, st storage.Queryable, expr string, ts time.Duration) promql.Vector {
	t.Helper()
	vec, err := instantQueryCtx(t.Context(), engine, st, expr, time.Unix(0, 0).Add(ts))
	if err != nil {
		t.Fatalf("at %v: %v", ts, err)
	}
	return vec
}

// checkAnnotations expands the alert's annotations with the same variables Prometheus
// defines for them and checks that every label they name has a value.
func checkAnnotations(t *testing.T, engine *promql.Engine, st storage.Queryable, rule rulefmt.Rule, s promql.Sample, at time.Duration) {
	t.Helper()
	defs := "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
	data := template.AlertTemplateData(s.Metric.Map(), nil, "", s)
	ts := time.Unix(0, 0).Add(at)
	query := func(ctx context.Context, q string, qts time.Time) (promql.Vector, error) {
		return instantQueryCtx(ctx, engine, st, q, qts)
	}
	for _, key := range sortedKeys(rule.Annotations) {
		text := rule.Annotations[key]
		exp := template.NewTemplateExpander(t.Context(), defs+text, "__alert_"+rule.Alert, data,
			model.Time(timestamp.FromTime(ts)), query, &url.URL{}, nil)
		out, err := exp.Expand()
		if err != nil {
			t.Errorf("%s annotation %s: %v", rule.Alert, key, err)
			continue
		}
		for _, l := range templateRefs(labelRef, text) {
			if s.Metric.Get(l) == "" && !(rule.Alert == "ShipwatchDown" && l == "instance") {
				t.Errorf("%s annotation %s uses $labels.%s, which the firing alert %s lacks: %q", rule.Alert, key, l, labelString(s.Metric), out)
			}
		}
	}
}

func instantQueryCtx(ctx context.Context, engine *promql.Engine, st storage.Queryable, expr string, ts time.Time) (promql.Vector, error) {
	q, err := engine.NewInstantQuery(ctx, st, nil, expr, ts)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", expr, err)
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return nil, fmt.Errorf("query %q: %w", expr, res.Err)
	}
	return res.Vector()
}

// labelString renders labels without the metric name, which an alert drops, as "a=1,b=2".
func labelString(ls labels.Labels) string {
	var parts []string
	ls.Range(func(l labels.Label) {
		if l.Name != model.MetricNameLabel {
			parts = append(parts, l.Name+"="+l.Value)
		}
	})
	slices.Sort(parts)
	return strings.Join(parts, ",")
}
