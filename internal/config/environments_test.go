package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const staged = `repos: [{name: deploy, url: https://git.example.com/d.git}]
apps:
  - name: web
    repo: deploy
    drift: alert
    compose: {files: [compose.yaml]}
    environments:
      - {name: dev, path: web/envs/dev}
      - {name: staging, path: web/envs/staging, promoteFrom: dev, gate: {healthyFor: 10m}, autoPromote: true}
      - name: prod
        path: web/envs/prod
        ref: release
        promoteFrom: staging
        gate: {healthyFor: 1h, approval: true}
        docker: {host: "tcp://127.0.0.1:2375"}
        drift: heal
      - {name: canary, path: web/envs/canary, ref: {semver: ">=1.2.0 <2"}}
    promotion:
      files: [images.env]
  - name: api
    repo: deploy
`

func TestEnvironmentsBecomeInstances(t *testing.T) {
	cfg, err := Parse("shipwatch.yaml", []byte(staged))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, in := range cfg.Instances() {
		names = append(names, in.Name)
	}
	if got := strings.Join(names, " "); got != "web@dev web@staging web@prod web@canary api" {
		t.Fatalf("instances = %s", got)
	}
	prod, ok := cfg.Instance("web@prod")
	if !ok {
		t.Fatal("no web@prod")
	}
	if prod.Base != "web" || prod.Env != "prod" || prod.Path != "web/envs/prod" || prod.Compose.Project != "web-prod" ||
		prod.Docker.Host != "tcp://127.0.0.1:2375" || prod.Drift != "heal" || string(prod.Ref) != "release" ||
		prod.Compose.Files[0] != "compose.yaml" || prod.BackendName() != "web.prod" {
		t.Errorf("web@prod = %+v", prod)
	}
	if prod.Stage == nil || prod.Stage.PromoteFrom != "staging" || !prod.Stage.Gate.Approval || prod.Stage.Gate.HealthyFor.Duration != time.Hour {
		t.Errorf("web@prod's stage = %+v", prod.Stage)
	}
	if dev, _ := cfg.Instance("web@dev"); dev.Drift != "alert" || dev.Ref != "main" {
		t.Errorf("web@dev keeps the app's keys: %+v", dev)
	}
	if got := len(cfg.Select("web")); got != 4 {
		t.Errorf("Select(web) = %d instances, want its 4 stages", got)
	}
	if canary, _ := cfg.Instance("web@canary"); string(canary.Ref) != "semver:>=1.2.0 <2" {
		t.Errorf("web@canary ref = %q", canary.Ref)
	}
	web, _ := cfg.App("web")
	var order []string
	for _, s := range web.Stages() {
		order = append(order, s.Name)
	}
	if strings.Join(order, ",") != "dev,staging,prod,canary" || web.Promotion.Mode != PromotePush {
		t.Errorf("stages %v, mode %q", order, web.Promotion.Mode)
	}
}

func TestEnvironmentErrorsNameTheKey(t *testing.T) {
	cases := map[string]struct{ from, to, want string }{
		"unknown source":  {"promoteFrom: dev, gate", "promoteFrom: qa, gate", `apps[0].environments[1].promoteFrom: "qa" is not another environment`},
		"gate, no source": {"{name: dev, path: web/envs/dev}", "{name: dev, path: web/envs/dev, gate: {approval: true}}", "apps[0].environments[0].gate: gate and autoPromote need promoteFrom"},
		"bad semver":      {`">=1.2.0 <2"`, `"not a range"`, `apps[0].environments[3].ref: semver range "not a range"`},
		"promoted by tag": {"ref: release", `ref: {semver: ">=1"}`, "apps[0].environments[2].ref: \"semver:>=1\": a stage that is promoted into follows a branch"},
		"no files":        {"files: [images.env]", "files: []", "apps[0].promotion.files: is required"},
		"bad mode":        {"files: [images.env]", "files: [images.env]\n      mode: merge", "apps[0].promotion.mode: must be push or branch"},
		"duplicate stage": {"{name: dev, path: web/envs/dev}", "{name: staging, path: web/envs/dev}", `duplicate environment "staging"`},
		"project clash":   {"  - name: api\n    repo: deploy\n", "  - name: api\n    repo: deploy\n    compose: {project: web-dev}\n", `project "web-dev" is already used by app "web@dev"`},
		"cycle":           {"{name: dev, path: web/envs/dev}", "{name: dev, path: web/envs/dev, promoteFrom: prod}", "promoteFrom forms a cycle"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			doc := strings.Replace(staged, c.from, c.to, 1)
			if doc == staged {
				t.Fatalf("fixture: %q not found", c.from)
			}
			_, err := Parse("shipwatch.yaml", []byte(doc))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want %q", err, c.want)
			}
		})
	}
}
