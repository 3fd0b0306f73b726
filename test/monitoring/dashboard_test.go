package monitoring

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

const dashboardPath = "../../examples/monitoring/grafana-dashboard.json"

type dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
	Datasource *datasourceRef  `json:"datasource"`
}

// queryText is the variable's query, which Grafana stores as a string or, from the
// Prometheus query editor, as an object with a query field.
func (v variable) queryText() (string, error) {
	var s string
	if err := json.Unmarshal(v.Query, &s); err == nil {
		return s, nil
	}
	var obj struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(v.Query, &obj); err != nil {
		return "", fmt.Errorf("variable %s: query is neither a string nor an object: %w", v.Name, err)
	}
	return obj.Query, nil
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *datasourceRef `json:"datasource"`
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr         string         `json:"expr"`
		RefID        string         `json:"refId"`
		LegendFormat string         `json:"legendFormat"`
		Datasource   *datasourceRef `json:"datasource"`
	} `json:"targets"`
	// Panels holds the panels of a collapsed row.
	Panels []panel `json:"panels"`
}

var (
	// grafanaVar is a variable reference in a query: $name or ${name} (with an optional
	// ${name:format}).
	grafanaVar = regexp.MustCompile(`\$(?:\{(\w+)(?::\w+)?\}|(\w+))`)
	// legendRef is a label used in a legend format, {{label}}.
	legendRef    = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)
	labelValues  = regexp.MustCompile(`^label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)$`)
	selfDatasrc  = "${datasource}"
	builtinRange = map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
)

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatalf("read dashboard: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	var d dashboard
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	if dec.More() {
		t.Fatal("dashboard has data after its JSON object")
	}
	return d
}

// leafPanels flattens rows: collapsed rows keep their panels inside.
func leafPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		if p.Type == "row" {
			out = append(out, leafPanels(p.Panels)...)
			continue
		}
		out = append(out, p)
	}
	return out
}

func TestDashboardShape(t *testing.T) {
	d := loadDashboard(t)
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion = %d, want >= 36", d.SchemaVersion)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both are needed for a stable import", d.UID, d.Title)
	}
	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	ds, ok := vars["datasource"]
	if q, _ := ds.queryText(); !ok || ds.Type != "datasource" || q != "prometheus" {
		t.Errorf("datasource variable = %+v, want type datasource with query prometheus", ds)
	}
	app, ok := vars["app"]
	if q, _ := app.queryText(); !ok || app.Type != "query" || q != "label_values(shipwatch_app_sync_status, app)" {
		t.Errorf("app variable = %+v, want label_values(shipwatch_app_sync_status, app)", app)
	}

	ids := map[int]string{}
	var cells []panel
	for _, p := range d.Panels {
		cells = append(cells, p)
		cells = append(cells, p.Panels...)
	}
	for _, p := range cells {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panel %q and %q share id %d", p.Title, prev, p.ID)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
	}
	checkNoOverlap(t, d.Panels)

	for _, p := range leafPanels(d.Panels) {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no target", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != selfDatasrc {
			t.Errorf("panel %q: datasource %+v, want uid %s", p.Title, p.Datasource, selfDatasrc)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q: target %s has no expr", p.Title, tg.RefID)
			}
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: refId %q empty or repeated", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			if tg.Datasource != nil && tg.Datasource.UID != selfDatasrc {
				t.Errorf("panel %q: target %s datasource %+v, want uid %s", p.Title, tg.RefID, tg.Datasource, selfDatasrc)
			}
		}
	}
}

// checkNoOverlap checks the expanded layout: top-level panels, rows included, share one
// grid; the panels inside collapsed rows are laid out when the row opens.
func checkNoOverlap(t *testing.T, ps []panel) {
	t.Helper()
	for i, a := range ps {
		for _, b := range ps[i+1:] {
			ga, gb := a.GridPos, b.GridPos
			if ga.X < gb.X+gb.W && gb.X < ga.X+ga.W && ga.Y < gb.Y+gb.H && gb.Y < ga.Y+ga.H {
				t.Errorf("panels %q %+v and %q %+v overlap", a.Title, ga, b.Title, gb)
			}
		}
	}
}

// TestDashboardUsesRealMetrics parses every query as PromQL, with Grafana's variables
// filled in, and checks the series, labels and legends against shipwatch's registry.
func TestDashboardUsesRealMetrics(t *testing.T) {
	c := newCatalog(t)
	d := loadDashboard(t)
	defined := map[string]bool{}
	for _, v := range d.Templating.List {
		defined[v.Name] = true
		if v.Type != "query" {
			continue
		}
		q, err := v.queryText()
		if err != nil {
			t.Error(err)
			continue
		}
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(metric, label)", v.Name, q)
			continue
		}
		s := c[m[1]]
		switch {
		case s == nil:
			t.Errorf("variable %s: series %s does not exist in shipwatch's registry", v.Name, m[1])
		case !s.labels[m[2]]:
			t.Errorf("variable %s: %s has no label %q", v.Name, m[1], m[2])
		}
	}

	used := map[string]bool{}
	for _, p := range leafPanels(d.Panels) {
		for _, tg := range p.Targets {
			expr, err := fillVariables(tg.Expr, defined)
			if err != nil {
				t.Errorf("panel %q target %s: %v", p.Title, tg.RefID, err)
				continue
			}
			names, e, errs := checkExpr(c, expr)
			for _, err := range errs {
				t.Errorf("panel %q target %s: %v", p.Title, tg.RefID, err)
			}
			for _, n := range names {
				used[c[n].family] = true
			}
			if e == nil {
				continue
			}
			if have, known := outputLabels(c, e); known {
				for _, l := range templateRefs(legendRef, tg.LegendFormat) {
					if !have[l] {
						t.Errorf("panel %q target %s: legend uses {{%s}}, but the query only carries %v", p.Title, tg.RefID, l, sortedKeys(have))
					}
				}
			}
		}
	}
	// Every metric shipwatch exports is on the dashboard: a new one needs a panel.
	for _, f := range c.shipwatchFamilies() {
		if !used[f] {
			t.Errorf("metric %s is on no dashboard panel", f)
		}
	}
}

// fillVariables replaces Grafana variables so the query parses as PromQL: interval
// builtins become a duration, dashboard variables a placeholder value.
func fillVariables(expr string, defined map[string]bool) (string, error) {
	var err error
	out := grafanaVar.ReplaceAllStringFunc(expr, func(ref string) string {
		m := grafanaVar.FindStringSubmatch(ref)
		name := m[1] + m[2]
		switch {
		case builtinRange[name]:
			return "5m"
		case defined[name]:
			return placeholder
		}
		err = fmt.Errorf("query uses $%s, which is neither a dashboard variable nor a Grafana interval", name)
		return ref
	})
	return out, err
}
