package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const valid = `stateDir: /tmp/sw
repos:
  - name: deploy
    url: file:///srv/deploy.git
    interval: 30s
apps:
  - name: web
    repo: deploy
    path: apps/web
    compose:
      files: [compose.yaml, compose.prod.yaml]
    drift: alert
    prune: false
`

func TestParseValidAppliesDefaults(t *testing.T) {
	cfg, err := Parse("shipwatch.yaml", []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != DefaultListen || cfg.Workers != DefaultWorkers {
		t.Errorf("listen/workers defaults: %q %d", cfg.Listen, cfg.Workers)
	}
	if got := cfg.Repos[0].Interval.Duration; got != 30*time.Second {
		t.Errorf("interval = %v", got)
	}
	a := cfg.Apps[0]
	if a.Ref != "main" || a.Driver != "docker" || a.Compose.Project != "web" || a.HealthTimeout.Duration != DefaultHealthTimeout {
		t.Errorf("app defaults not applied: %+v", a)
	}
	if a.PruneEnabled() {
		t.Error("prune: false was not kept")
	}
	if a.Drift != "alert" || a.Sync != "auto" || a.Suspend {
		t.Errorf("drift, sync, suspend = %q %q %v", a.Drift, a.Sync, a.Suspend)
	}
	if cfg.ShutdownTimeout.Duration != DefaultShutdown || cfg.Webhooks.MaxBodyBytes != DefaultMaxBodyBytes {
		t.Errorf("shutdown/maxBody defaults: %v %d", cfg.ShutdownTimeout, cfg.Webhooks.MaxBodyBytes)
	}
	if cfg.History.Limit != DefaultHistoryLimit || a.OnFailure != "none" {
		t.Errorf("history.limit, onFailure defaults: %d %q", cfg.History.Limit, a.OnFailure)
	}
}

func TestParseErrorsNameFileLineAndKey(t *testing.T) {
	cases := []struct {
		name, doc string
		want      []string
	}{
		{"unknown key", strings.Replace(valid, "    drift: alert", "    drfit: alert", 1),
			[]string{"shipwatch.yaml", "line 12", `unknown key "drfit"`}},
		{"bad drift", strings.Replace(valid, "drift: alert", "drift: ignore", 1),
			[]string{"shipwatch.yaml:12: apps[0].drift: must be heal or alert"}},
		{"unknown repo", strings.Replace(valid, "repo: deploy", "repo: nope", 1),
			[]string{"shipwatch.yaml:8: apps[0].repo: unknown repo \"nope\""}},
		{"bad duration", strings.Replace(valid, "interval: 30s", "interval: soon", 1),
			[]string{"line 5", `invalid duration "soon"`}},
		{"escaping path", strings.Replace(valid, "path: apps/web", "path: ../etc", 1),
			[]string{"shipwatch.yaml:9: apps[0].path"}},
		{"syntax", valid + "  - : [\n", []string{"shipwatch.yaml", "line"}},
		{"bad sync", strings.Replace(valid, "drift: alert", "drift: alert\n    sync: sometimes", 1),
			[]string{"shipwatch.yaml:13: apps[0].sync: must be auto or manual"}},
		{"bad onFailure", strings.Replace(valid, "drift: alert", "drift: alert\n    onFailure: retry", 1),
			[]string{"shipwatch.yaml:13: apps[0].onFailure: must be none or rollback"}},
		{"bad history limit", "history: {limit: -1}\n" + valid,
			[]string{"shipwatch.yaml:1: history.limit: must be positive"}},
		{"notify target", valid + "notify:\n  - name: ops\n    type: email\n    apps: [nope]\n    events: [exploded]\n",
			[]string{"apps[0]", "notify[0].type: must be webhook or slack", "notify[0].urlFile: is required",
				`notify[0].apps[0]: unknown app "nope"`, `notify[0].events[0]: unknown event "exploded"`}},
		{"unknown driver", strings.Replace(valid, "    path: apps/web", "    path: apps/web\n    driver: nomad", 1),
			[]string{`apps[0].driver: unknown driver "nomad"`}},
		{"kubernetes app with compose files", strings.Replace(valid, "    path: apps/web", "    path: apps/web\n    driver: kubernetes", 1),
			[]string{"apps[0].driver: a kubernetes app takes no docker or compose settings"}},
		{"duplicate app", valid + "  - name: web\n    repo: deploy\n    compose: {project: other}\n",
			[]string{"shipwatch.yaml:14: apps[1].name: duplicate app \"web\""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("shipwatch.yaml", []byte(tc.doc))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestListenCanBeDisabled(t *testing.T) {
	cfg, err := Parse("c.yaml", []byte("listen: \"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "" {
		t.Errorf("listen = %q, want empty (disabled)", cfg.Listen)
	}
}

func TestKubernetesAppDefaults(t *testing.T) {
	doc := `repos: [{name: deploy, url: /srv/deploy}]
apps:
  - name: api
    repo: deploy
    driver: kubernetes
    kubernetes: {kubeconfig: /etc/kube/config, context: prod}
    kustomize: {allowRemoteBases: true}
`
	cfg, err := Parse("c.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Apps[0]
	if a.Kubernetes.Namespace != "default" || a.Kubernetes.Context != "prod" || !a.Kustomize.AllowRemoteBases {
		t.Errorf("kubernetes app = %+v", a)
	}
}
