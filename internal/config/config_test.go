package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
		{"tight poll loop", strings.Replace(valid, "interval: 30s", "interval: 1ns", 1),
			[]string{"shipwatch.yaml:5: repos[0].interval: 1ns is too short: must be at least 1s"}},
		{"zero interval", strings.Replace(valid, "interval: 30s", "interval: 0s", 1),
			[]string{"repos[0].interval: 0s is too short"}},
		{"negative shutdown timeout", "shutdownTimeout: -5s\n" + valid,
			[]string{"shipwatch.yaml:1: shutdownTimeout: -5s is too short"}},
		{"zero health timeout", strings.Replace(valid, "drift: alert", "drift: alert\n    healthTimeout: 0s", 1),
			[]string{"apps[0].healthTimeout: 0s is too short"}},
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

func TestCredentialFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	doc := func(token string) string {
		return fmt.Sprintf("api: {tokenFile: %s}\nrepos:\n  - name: deploy\n    url: https://git.example.com/r.git\n    auth: {tokenFile: %s}\n",
			write("api", 0o600), token)
	}
	cfg, err := Parse("shipwatch.yaml", []byte(doc(write("private", 0o600))))
	if err != nil {
		t.Fatal(err)
	}
	if w, err := cfg.CheckCredentialFiles(); err != nil || len(w) != 0 {
		t.Errorf("0600 files: warnings %v, err %v", w, err)
	}
	cfg, _ = Parse("shipwatch.yaml", []byte(doc(write("mounted", 0o644))))
	if w, err := cfg.CheckCredentialFiles(); err != nil || len(w) != 1 || !strings.Contains(w[0], "repos[0].auth.tokenFile") {
		t.Errorf("a 0644 file: warnings %v, err %v; want one warning naming the key", w, err)
	}
	cfg, _ = Parse("shipwatch.yaml", []byte(doc(write("open", 0o666))))
	_, err = cfg.CheckCredentialFiles()
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "shipwatch.yaml:5: repos[0].auth.tokenFile") || !strings.Contains(err.Error(), "writable") {
		t.Errorf("a 0666 file: err = %v, want a refusal naming file, line and key", err)
	}
	cfg, _ = Parse("shipwatch.yaml", []byte(doc(filepath.Join(dir, "later"))))
	if w, err := cfg.CheckCredentialFiles(); err != nil || len(w) != 1 || !strings.Contains(w[0], "does not exist yet") {
		t.Errorf("a missing file: warnings %v, err %v", w, err)
	}
}

func TestPlainHTTPCredentialsAreRefused(t *testing.T) {
	for url, ok := range map[string]bool{
		"http://git.example.com/r.git": false, "https://git.example.com/r.git": true,
		"http://127.0.0.1:3000/r.git": true, "http://[::1]/r.git": true, "http://localhost/r.git": true,
	} {
		doc := fmt.Sprintf("repos:\n  - name: deploy\n    url: %s\n    auth: {tokenFile: /run/t}\n", url)
		_, err := Parse("shipwatch.yaml", []byte(doc))
		if ok != (err == nil) {
			t.Errorf("%s with a token: err = %v", url, err)
		}
		if err != nil && !strings.Contains(err.Error(), "shipwatch.yaml:3: repos[0].url: credentials would be sent over plain http") {
			t.Errorf("%s: message %v", url, err)
		}
	}
	if _, err := Parse("shipwatch.yaml", []byte("repos:\n  - name: deploy\n    url: http://git.example.com/r.git\n")); err != nil {
		t.Errorf("plain http without credentials: %v", err)
	}
}
