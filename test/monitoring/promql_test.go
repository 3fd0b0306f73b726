package monitoring

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// placeholder stands for a Grafana variable's value in a dashboard expression; matcher
// values holding it are not checked against the registry's values.
const placeholder = "__grafana_variable__"

func newParser() parser.Parser { return parser.NewParser(parser.Options{}) }

// literalAlternation is a regex matcher value that is a plain list of words ("a|b"), whose
// words can be checked one by one.
var literalAlternation = regexp.MustCompile(`^[A-Za-z0-9_-]+(\|[A-Za-z0-9_-]+)*$`)

// checkExpr parses expr and reports every problem with the shipwatch_ series it selects:
// unknown names, unknown label names in matchers or groupings, and label values shipwatch
// never sets. It returns the shipwatch_ series names used.
func checkExpr(c catalog, expr string) ([]string, parser.Expr, []error) {
	e, err := newParser().ParseExpr(expr)
	if err != nil {
		return nil, nil, []error{fmt.Errorf("parse: %w", err)}
	}
	var used []string
	var errs []error
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			name, ok := selectorName(n)
			if !ok || !strings.HasPrefix(name, "shipwatch_") {
				return nil
			}
			used = append(used, name)
			s := c[name]
			if s == nil {
				errs = append(errs, fmt.Errorf("series %s does not exist in shipwatch's registry", name))
				return nil
			}
			errs = append(errs, checkMatchers(name, s, n.LabelMatchers)...)
		case *parser.AggregateExpr:
			errs = append(errs, checkGrouping(c, n)...)
		}
		return nil
	})
	return used, e, errs
}

func selectorName(vs *parser.VectorSelector) (string, bool) {
	if vs.Name != "" {
		return vs.Name, true
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
			return m.Value, true
		}
	}
	return "", false
}

func checkMatchers(name string, s *series, ms []*labels.Matcher) []error {
	var errs []error
	for _, m := range ms {
		if m.Name == model.MetricNameLabel {
			continue
		}
		if !s.labels[m.Name] {
			errs = append(errs, fmt.Errorf("%s has no label %q (it has %v)", name, m.Name, sortedKeys(s.labels)))
			continue
		}
		known := s.values[m.Name]
		if known == nil || strings.Contains(m.Value, placeholder) {
			continue
		}
		var want []string
		switch {
		case m.Type == labels.MatchEqual:
			want = []string{m.Value}
		case m.Type == labels.MatchRegexp && literalAlternation.MatchString(m.Value):
			want = strings.Split(m.Value, "|")
		}
		for _, v := range want {
			if !known[v] {
				errs = append(errs, fmt.Errorf("%s{%s=%q}: shipwatch never sets that value (it sets %v)", name, m.Name, v, sortedKeys(known)))
			}
		}
	}
	return errs
}

// checkGrouping reports `by (...)` labels that no shipwatch_ series below the aggregation
// has, such as a typo. Aggregations over other series are left alone.
func checkGrouping(c catalog, a *parser.AggregateExpr) []error {
	if a.Without || len(a.Grouping) == 0 {
		return nil
	}
	have, known := outputLabels(c, a.Expr)
	if !known {
		return nil
	}
	var errs []error
	for _, g := range a.Grouping {
		if !have[g] {
			errs = append(errs, fmt.Errorf("by (%s): the aggregated series have no label %q (they have %v)", strings.Join(a.Grouping, ", "), g, sortedKeys(have)))
		}
	}
	return errs
}

// outputLabels works out which labels the result of e can carry, for the expression shapes
// the rules and dashboard use. known is false where that cannot be told statically (series
// from other exporters, label_replace, vector matching modifiers).
func outputLabels(c catalog, e parser.Expr) (have map[string]bool, known bool) {
	switch n := e.(type) {
	case *parser.ParenExpr:
		return outputLabels(c, n.Expr)
	case *parser.NumberLiteral, *parser.StringLiteral:
		return map[string]bool{}, true
	case *parser.VectorSelector:
		name, ok := selectorName(n)
		if !ok || c[name] == nil {
			return nil, false
		}
		return copySet(c[name].labels), true
	case *parser.MatrixSelector:
		return outputLabels(c, n.VectorSelector)
	case *parser.SubqueryExpr:
		return outputLabels(c, n.Expr)
	case *parser.UnaryExpr:
		return outputLabels(c, n.Expr)
	case *parser.AggregateExpr:
		return aggregateLabels(c, n)
	case *parser.BinaryExpr:
		return binaryLabels(c, n)
	case *parser.Call:
		return callLabels(c, n)
	}
	return nil, false
}

func aggregateLabels(c catalog, a *parser.AggregateExpr) (map[string]bool, bool) {
	switch a.Op {
	case parser.TOPK, parser.BOTTOMK, parser.LIMITK, parser.LIMIT_RATIO:
		return outputLabels(c, a.Expr)
	}
	if a.Without {
		return nil, false
	}
	out := map[string]bool{}
	for _, g := range a.Grouping {
		out[g] = true
	}
	if a.Op == parser.COUNT_VALUES {
		s, ok := a.Param.(*parser.StringLiteral)
		if !ok {
			return nil, false
		}
		out[s.Val] = true
	}
	return out, true
}

func binaryLabels(c catalog, b *parser.BinaryExpr) (map[string]bool, bool) {
	lhs, lok := outputLabels(c, b.LHS)
	rhs, rok := outputLabels(c, b.RHS)
	switch {
	case b.LHS.Type() == parser.ValueTypeScalar:
		return rhs, rok
	case b.RHS.Type() == parser.ValueTypeScalar:
		return lhs, lok
	case b.Op == parser.LOR:
		if !lok || !rok {
			return nil, false
		}
		for l := range rhs {
			lhs[l] = true
		}
		return lhs, true
	case b.Op == parser.LAND || b.Op == parser.LUNLESS:
		return lhs, lok
	}
	vm := b.VectorMatching
	if vm != nil && (vm.On || len(vm.MatchingLabels) > 0 || len(vm.Include) > 0) {
		return nil, false
	}
	return lhs, lok
}

func callLabels(c catalog, call *parser.Call) (map[string]bool, bool) {
	switch call.Func.Name {
	case "absent", "absent_over_time":
		out := map[string]bool{}
		parser.Inspect(call.Args[0], func(node parser.Node, _ []parser.Node) error {
			if vs, ok := node.(*parser.VectorSelector); ok {
				for _, m := range vs.LabelMatchers {
					if m.Type == labels.MatchEqual && m.Name != model.MetricNameLabel {
						out[m.Name] = true
					}
				}
			}
			return nil
		})
		return out, true
	case "label_replace", "label_join", "info":
		return nil, false
	case "histogram_quantile", "histogram_fraction":
		in, ok := outputLabels(c, call.Args[len(call.Args)-1])
		delete(in, "le")
		return in, ok
	}
	if call.Func.ReturnType == parser.ValueTypeScalar || len(call.Args) == 0 {
		return map[string]bool{}, true
	}
	for _, a := range call.Args {
		if t := a.Type(); t == parser.ValueTypeVector || t == parser.ValueTypeMatrix {
			return outputLabels(c, a)
		}
	}
	return nil, false
}

// templateRefs finds the label names a template uses, as {{ $labels.x }} (alert
// annotations) or {{x}} (Grafana legends).
func templateRefs(re *regexp.Regexp, s string) []string {
	var out []string
	for _, m := range re.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

func copySet(in map[string]bool) map[string]bool {
	out := make(map[string]bool, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// The checks above must be able to fail: each broken expression here must be caught.
func TestCheckExprCatchesMistakes(t *testing.T) {
	c := newCatalog(t)
	for _, expr := range []string{
		`shipwatch_reconcile_totl`,
		`shipwatch_reconcile_total{application="x"}`,
		`shipwatch_app_health_status{status="Broken"} == 1`,
		`shipwatch_app_sync_status{status=~"Synced|Borked"}`,
		`sum by (application) (shipwatch_reconcile_total)`,
		`histogram_quantile(0.95, sum by (le) (rate(shipwatch_reconcile_duration_seconds[5m])))`,
		`sum(rate(shipwatch_reconcile_total[5m]`,
	} {
		if _, _, errs := checkExpr(c, expr); len(errs) == 0 {
			t.Errorf("checkExpr(%q) found no problem", expr)
		}
	}
	for _, expr := range []string{
		`sum by (app, result) (rate(shipwatch_reconcile_total{result=~"error|stalled"}[5m]))`,
		`histogram_quantile(0.95, sum by (app, le) (rate(shipwatch_reconcile_duration_seconds_bucket[5m])))`,
		`shipwatch_app_health_status{status="Degraded"} == 1`,
		`up{job="shipwatch"} == 0`,
	} {
		if _, _, errs := checkExpr(c, expr); len(errs) > 0 {
			t.Errorf("checkExpr(%q) = %v, want no problem", expr, errs)
		}
	}
}

func TestOutputLabels(t *testing.T) {
	c := newCatalog(t)
	for expr, want := range map[string]string{
		`max by (app) (shipwatch_app_drifted_resources) > 0 or sum by (app) (increase(shipwatch_drift_detected_total[10m])) > 0`: "app",
		`time() - max by (app) (shipwatch_last_reconcile_timestamp_seconds) > 900`:                                               "app",
		`sum by (repo) (rate(shipwatch_git_requests_total[5m])) unless sum by (repo) (rate(shipwatch_git_requests_total[5m]))`:   "repo",
		`histogram_quantile(0.95, sum by (repo, op, le) (rate(shipwatch_git_request_duration_seconds_bucket[5m])))`:              "op,repo",
		`absent(up{job="shipwatch"})`: "job",
		`shipwatch_reconcile_total`:   "app,env,result",
	} {
		e, err := newParser().ParseExpr(expr)
		if err != nil {
			t.Fatalf("parse %q: %v", expr, err)
		}
		got, known := outputLabels(c, e)
		if !known || strings.Join(sortedKeys(got), ",") != want {
			t.Errorf("outputLabels(%q) = %v, %v; want %s", expr, sortedKeys(got), known, want)
		}
	}
	e, err := newParser().ParseExpr(`up == 0`)
	if err != nil {
		t.Fatal(err)
	}
	if _, known := outputLabels(c, e); known {
		t.Error("outputLabels(up == 0) claims to know the labels of a foreign series")
	}
}
