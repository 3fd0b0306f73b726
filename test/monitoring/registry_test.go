package monitoring

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/internal/metrics"
	"github.com/shipwatch/shipwatch/reconciler"
)

// filler is the label value the catalog uses for vecs the product code gives no real
// values to; its label values are then unknown and not checked.
const filler = "_monitoring_test_filler_"

// series describes one series name the real registry exposes.
type series struct {
	family string
	// labels are the label names the series carries.
	labels map[string]bool
	// values are the label values seen, per label; nil when they are filler only.
	values map[string]map[string]bool
}

// catalog maps every series name shipwatch exposes (histograms expanded to _bucket, _sum,
// _count) to its labels. It is built from the real registry so a renamed metric or label
// in internal/metrics fails the rules and dashboard checks.
type catalog map[string]*series

func newCatalog(t *testing.T) catalog {
	t.Helper()
	m := metrics.New("test")
	// Real values where the metrics package knows them: every sync and health status, so an
	// alert on status="Degraded" is checked against the states shipwatch really reports.
	app := metrics.AppLabels{App: "app", Env: "dev"}
	m.SetOneHot(m.AppSyncStatus, app, reconciler.SyncSynced, reconciler.SyncStatuses())
	m.SetOneHot(m.AppHealthStatus, app, string(drivers.HealthHealthy), drivers.HealthStatuses())
	m.SetOneHot(m.AppOperationPhase, app, string(reconciler.PhaseIdle), reconciler.Phases())
	for _, r := range reconciler.RollbackReasons() {
		m.RollbacksTotal.WithLabelValues(app.With(string(r))...)
	}
	touchVecs(t, m)

	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	c := catalog{}
	for _, f := range families {
		name := f.GetName()
		switch f.GetType() {
		// shipwatch's histograms are classic ones: no series under the base name.
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			c.add(name, name+"_bucket", f, "le")
			c.add(name, name+"_sum", f)
			c.add(name, name+"_count", f)
		case dto.MetricType_SUMMARY:
			c.add(name, name, f, "quantile")
			c.add(name, name+"_sum", f)
			c.add(name, name+"_count", f)
		default:
			c.add(name, name, f)
		}
	}
	return c
}

func (c catalog) add(family, name string, f *dto.MetricFamily, extra ...string) {
	s := &series{family: family, labels: map[string]bool{}, values: map[string]map[string]bool{}}
	for _, l := range extra {
		s.labels[l] = true
	}
	fillerSeen := map[string]bool{}
	for _, metric := range f.GetMetric() {
		for _, lp := range metric.GetLabel() {
			s.labels[lp.GetName()] = true
			if lp.GetValue() == filler {
				fillerSeen[lp.GetName()] = true
				continue
			}
			if s.values[lp.GetName()] == nil {
				s.values[lp.GetName()] = map[string]bool{}
			}
			s.values[lp.GetName()][lp.GetValue()] = true
		}
	}
	for l := range fillerSeen {
		delete(s.values, l)
	}
	c[name] = s
}

// shipwatchFamilies lists the shipwatch_ metric families, sorted.
func (c catalog) shipwatchFamilies() []string {
	seen := map[string]bool{}
	for _, s := range c {
		if strings.HasPrefix(s.family, "shipwatch_") {
			seen[s.family] = true
		}
	}
	out := make([]string, 0, len(seen))
	for f := range seen {
		out = append(out, f)
	}
	slices.Sort(out)
	return out
}

// touchVecs creates one child in every metric vec of m that has none yet, so that Gather
// reports it. It finds the vecs by reflection and the label count by trying, so a metric
// added to internal/metrics is covered without editing this test.
func touchVecs(t *testing.T, m *metrics.Metrics) {
	t.Helper()
	v := reflect.ValueOf(m).Elem()
	vecs := 0
	for i := range v.NumField() {
		field := v.Field(i)
		if !field.CanInterface() {
			continue
		}
		get := field.MethodByName("GetMetricWithLabelValues")
		collector, ok := field.Interface().(prometheus.Collector)
		if !get.IsValid() || !ok {
			continue
		}
		vecs++
		if hasChildren(collector) {
			continue
		}
		if !touch(get) {
			t.Fatalf("metrics.Metrics.%s: no label count up to 16 accepted", v.Type().Field(i).Name)
		}
	}
	if vecs == 0 {
		t.Fatal("found no metric vecs in metrics.Metrics: has its shape changed?")
	}
}

func touch(get reflect.Value) bool {
	for n := range 17 {
		args := make([]reflect.Value, n)
		for i := range args {
			args[i] = reflect.ValueOf(filler)
		}
		out := get.Call(args)
		if out[1].IsNil() {
			return true
		}
	}
	return false
}

func hasChildren(c prometheus.Collector) bool {
	ch := make(chan prometheus.Metric)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	n := 0
	for range ch {
		n++
	}
	return n > 0
}

func TestCatalogSeesEveryMetric(t *testing.T) {
	c := newCatalog(t)
	// The metrics the alerts and dashboard are built on; if one is renamed the other tests
	// would report it too, but this names the cause directly.
	for _, name := range []string{
		"shipwatch_reconcile_total", "shipwatch_reconcile_duration_seconds_bucket",
		"shipwatch_app_sync_status", "shipwatch_app_health_status",
		"shipwatch_app_drifted_resources", "shipwatch_drift_detected_total",
		"shipwatch_apply_changes_total", "shipwatch_git_requests_total",
		"shipwatch_git_request_duration_seconds_bucket", "shipwatch_webhook_requests_total",
		"shipwatch_last_applied_timestamp_seconds", "shipwatch_last_reconcile_timestamp_seconds",
		"shipwatch_build_info",
	} {
		if c[name] == nil {
			t.Errorf("registry has no series %s", name)
		}
	}
	if !c["shipwatch_app_health_status"].values["status"]["Degraded"] {
		t.Errorf("health status values = %v, want Degraded among them", c["shipwatch_app_health_status"].values["status"])
	}
}
