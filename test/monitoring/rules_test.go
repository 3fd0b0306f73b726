package monitoring

import (
	"bytes"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
)

const rulesPath = "../../examples/monitoring/alerts.yaml"

// labelRef is a label used in an alert annotation template.
var labelRef = regexp.MustCompile(`\$labels\.([A-Za-z_][A-Za-z0-9_]*)`)

// loadRules parses the rule file exactly as Prometheus does when it loads rule_files
// (strict fields, PromQL and template checks; legacy name validation, so Prometheus 2 loads it too) and fails on any error or warning.
func loadRules(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	var warnings bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&warnings, nil))
	groups, errs := rulefmt.ParseFile(rulesPath, false, model.LegacyValidation, newParser(), logger)
	for _, err := range errs {
		t.Errorf("rulefmt: %v", err)
	}
	if warnings.Len() > 0 {
		t.Errorf("rulefmt warned: %s", warnings.String())
	}
	if t.Failed() {
		t.FailNow()
	}
	return groups
}

func TestRulesParse(t *testing.T) {
	groups := loadRules(t)
	seen := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: recording rule %s: this file holds alerts only", g.Name, r.Record)
				continue
			}
			if seen[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			seen[r.Alert] = true
			if !slices.Contains([]string{"critical", "warning", "info"}, r.Labels["severity"]) {
				t.Errorf("alert %s: severity %q, want critical, warning or info", r.Alert, r.Labels["severity"])
			}
			for _, key := range []string{"summary", "description", "runbook"} {
				if strings.TrimSpace(r.Annotations[key]) == "" {
					t.Errorf("alert %s: no %s annotation", r.Alert, key)
				}
			}
		}
	}
	for _, name := range []string{
		"ShipwatchDriftDetected", "ShipwatchSyncFailing", "ShipwatchAppDegraded",
		"ShipwatchRepoUnreachable", "ShipwatchReconcileStale", "ShipwatchDown",
	} {
		if !seen[name] {
			t.Errorf("alert %s is missing", name)
		}
	}
}

// TestRulesUseRealMetrics checks every series the rules select against shipwatch's real
// registry, and that annotations only use labels the alert's expression carries.
func TestRulesUseRealMetrics(t *testing.T) {
	c := newCatalog(t)
	groups := loadRules(t)
	used := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			names, e, errs := checkExpr(c, r.Expr)
			for _, err := range errs {
				t.Errorf("alert %s: %v", r.Alert, err)
			}
			for _, n := range names {
				used[n] = true
			}
			if e == nil {
				continue
			}
			have, known := outputLabels(c, e)
			if !known {
				continue
			}
			for _, key := range sortedKeys(r.Annotations) {
				for _, l := range templateRefs(labelRef, r.Annotations[key]) {
					if !have[l] {
						t.Errorf("alert %s: annotation %s uses $labels.%s, but the expression only carries %v", r.Alert, key, l, sortedKeys(have))
					}
				}
			}
			if have["app"] && !strings.Contains(r.Annotations["summary"], "$labels.app") {
				t.Errorf("alert %s: per-app alert whose summary does not name {{ $labels.app }}", r.Alert)
			}
		}
	}
	if len(used) == 0 {
		t.Fatal("the rules select no shipwatch_ series at all")
	}
}
