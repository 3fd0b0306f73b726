package testmetrics

import "testing"

const page = `# HELP shipwatch_reconcile_total Reconcile passes.
# TYPE shipwatch_reconcile_total counter
shipwatch_reconcile_total{app="web",result="success"} 3
shipwatch_reconcile_total{app="web",result="error"} 2
shipwatch_reconcile_total{app="webapp",result="success"} 7
shipwatch_reconcile_total_extra{app="web"} 100
shipwatch_reconcile_duration_seconds_bucket{app="web",le="+Inf"} 5
shipwatch_build_info 1
shipwatch_odd{msg="a \"quoted\", {braced} value\\n",app="web"} 4 1700000000000
shipwatch_broken{app="web" 9
`

func TestSum(t *testing.T) {
	cases := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"shipwatch_reconcile_total", map[string]string{"app": "web"}, 5},
		{"shipwatch_reconcile_total", map[string]string{"app": "web", "result": "success"}, 3},
		{"shipwatch_reconcile_total", nil, 12},
		{"shipwatch_reconcile_total", map[string]string{"app": "we"}, 0},
		{"shipwatch_reconcile_total", map[string]string{"result": "stalled"}, 0},
		{"shipwatch_reconcile_duration_seconds", nil, 0},
		{"shipwatch_build_info", nil, 1},
		{"shipwatch_build_info", map[string]string{"app": "web"}, 0},
		{"shipwatch_odd", map[string]string{"msg": `a "quoted", {braced} value\n`, "app": "web"}, 4},
		{"shipwatch_broken", nil, 0},
		{"shipwatch_absent", nil, 0},
	}
	for _, c := range cases {
		if got := Sum([]byte(page), c.name, c.labels); got != c.want {
			t.Errorf("Sum(%s, %v) = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}
