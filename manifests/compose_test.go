package manifests

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestLoadComposeFullSupportedService(t *testing.T) {
	root := writeTree(t, map[string]string{
		"apps/web/compose.yaml": `
name: ignored
services:
  api:
    image: example/api:1
    command: ["serve", "--port", "80"]
    entrypoint: /bin/app
    environment:
      A: "1"
      com.example.dotted: x
    labels:
      com.example.team: core
    ports: ["8080:80", "127.0.0.1:9090:90/udp"]
    expose: ["81"]
    volumes:
      - ./conf:/etc/app:ro
      - data:/data
      - /var/run/docker.sock:/var/run/docker.sock
      - type: tmpfs
        target: /tmp
        tmpfs: {size: 1000}
    networks:
      front:
        aliases: [api]
    depends_on:
      db:
        condition: service_healthy
    restart: unless-stopped
    healthcheck:
      test: ["CMD", "true"]
      interval: 5s
    user: "1000"
    working_dir: /app
    hostname: api
    stop_signal: SIGTERM
    stop_grace_period: 20s
    configs:
      - source: appcfg
        target: /etc/app.conf
    read_only: true
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    init: true
    tmpfs: [/run]
    extra_hosts: ["host.example:127.0.0.1"]
    dns: [1.1.1.1]
    deploy:
      replicas: 2
    logging:
      driver: json-file
      options: {max-size: 10m}
    ulimits:
      nofile: {soft: 1024, hard: 2048}
    sysctls:
      net.core.somaxconn: 1024
    security_opt: ["no-new-privileges:true"]
    shm_size: 64m
    mem_limit: 256m
    cpus: 0.5
    pids_limit: 100
    tty: true
    stdin_open: true
    pull_policy: missing
    x-custom: anything
  db:
    image: example/db:1
    container_name: db
    network_mode: bridge
    privileged: false
    scale: 1
x-common: &common
  foo: bar
networks:
  front:
    driver: bridge
    labels: {a: b}
    ipam:
      config: [{subnet: 10.5.0.0/24}]
volumes:
  data:
    labels: {a: b}
configs:
  appcfg:
    file: ./app.conf
`,
		"apps/web/conf/a.conf": "a",
		"apps/web/app.conf":    "cfg",
	})
	c := mustLoad(t, ComposeOptions{Root: root, Path: "apps/web"})
	if c.Project.Name != "web" {
		t.Errorf("project name %q, want web", c.Project.Name)
	}
	api := c.Project.Services["api"]
	if api.Volumes[0].Source != root+"/apps/web/conf" {
		t.Errorf("bind source %q not resolved in checkout", api.Volumes[0].Source)
	}
	if api.Volumes[2].Source != "/var/run/docker.sock" {
		t.Errorf("absolute host bind changed: %q", api.Volumes[2].Source)
	}
	if want := []string{filepath.Join(root, "apps/web/compose.yaml")}; !slices.Equal(c.Project.ComposeFiles, want) {
		t.Errorf("ComposeFiles = %v, want %v", c.Project.ComposeFiles, want)
	}
	files := c.Files["api"]
	if len(files) != 2 || files[0].Rel != "apps/web/app.conf" || files[1].Rel != "apps/web/conf" || !files[1].Dir {
		t.Errorf("files = %+v", files)
	}
}

func TestOverrideMergeOrder(t *testing.T) {
	root := writeTree(t, map[string]string{
		"app/compose.yaml": "services:\n  api:\n    image: x:1\n    environment: {A: base, B: base}\n",
		"app/one.yaml":     "services:\n  api:\n    image: x:2\n    environment: {A: one}\n",
		"app/two.yaml":     "services:\n  api:\n    image: x:3\n",
	})
	c := mustLoad(t, ComposeOptions{Root: root, Path: "app", Files: []string{"compose.yaml", "one.yaml", "two.yaml"}})
	api := c.Project.Services["api"]
	if api.Image != "x:3" || *api.Environment["A"] != "one" || *api.Environment["B"] != "base" {
		t.Errorf("image %q env %v", api.Image, api.Environment)
	}
	c = mustLoad(t, ComposeOptions{Root: root, Path: "app", Files: []string{"compose.yaml", "two.yaml", "one.yaml"}})
	if got := c.Project.Services["api"].Image; got != "x:2" {
		t.Errorf("reversed order: image %q, want x:2", got)
	}
}

func TestDefaultFilesIncludeOverride(t *testing.T) {
	root := writeTree(t, map[string]string{
		"app/compose.yaml":          "services:\n  api:\n    image: x:1\n",
		"app/compose.override.yaml": "services:\n  api:\n    image: x:2\n",
		"app/docker-compose.yml":    "services:\n  other:\n    image: y\n",
	})
	c := mustLoad(t, ComposeOptions{Root: root, Path: "app"})
	if got := c.Project.Services["api"].Image; got != "x:2" {
		t.Errorf("image %q, want override x:2", got)
	}
	if _, ok := c.Project.Services["other"]; ok {
		t.Error("docker-compose.yml loaded although compose.yaml exists")
	}
}

func TestNoComposeFile(t *testing.T) {
	root := writeTree(t, map[string]string{"compose.yaml": "services:\n  api:\n    image: x\n", "app/README": ""})
	err := loadErr(t, ComposeOptions{Root: root, Path: "app"})
	wantContains(t, err, "no compose file in app")
}

func TestInterpolationFromDotEnvOnly(t *testing.T) {
	t.Setenv("TAG", "from-os")
	t.Setenv("ONLY_OS", "leaked")
	root := writeTree(t, map[string]string{
		"app/compose.yaml": "services:\n  api:\n    image: x:${TAG}\n    environment:\n      OS: \"${ONLY_OS:-unset}\"\n      FROM_PROJECT:\n",
		"app/.env":         "TAG=1.2.3\nFROM_PROJECT=p\n",
	})
	c := mustLoad(t, ComposeOptions{Root: root, Path: "app"})
	api := c.Project.Services["api"]
	if api.Image != "x:1.2.3" {
		t.Errorf("image %q, want x:1.2.3 from .env", api.Image)
	}
	if got := *api.Environment["OS"]; got != "unset" {
		t.Errorf("OS environment reached interpolation: %q", got)
	}
	if v := api.Environment["FROM_PROJECT"]; v == nil || *v != "p" {
		t.Errorf("FROM_PROJECT = %v, want p from the project env", v)
	}
}

func TestExplicitEnvFilesInOrder(t *testing.T) {
	root := writeTree(t, map[string]string{
		"app/compose.yaml": "services:\n  api:\n    image: x:${TAG}-${OTHER}\n",
		"app/.env":         "TAG=dotenv\nOTHER=dotenv\n",
		"env/prod.env":     "TAG=prod\nOTHER=prod\n",
		"env/more.env":     "OTHER=more-${TAG}\n",
	})
	c := mustLoad(t, ComposeOptions{Root: root, Path: "app", EnvFiles: []string{"../env/prod.env", "../env/more.env"}})
	if got := c.Project.Services["api"].Image; got != "x:prod-more-prod" {
		t.Errorf("image %q", got)
	}
}

func TestServiceEnvFileResolved(t *testing.T) {
	files := map[string]string{
		"app/compose.yaml": "services:\n  api:\n    image: x\n    env_file: [api.env]\n    environment:\n      B: explicit\n",
		"app/api.env":      "A=1\nB=from-file\n",
	}
	root := writeTree(t, files)
	c := mustLoad(t, ComposeOptions{Root: root, Path: "app"})
	api := c.Project.Services["api"]
	if len(api.EnvFiles) != 0 {
		t.Errorf("env_file not cleared: %v", api.EnvFiles)
	}
	if *api.Environment["A"] != "1" || *api.Environment["B"] != "explicit" {
		t.Errorf("environment %v", api.Environment)
	}
	if len(c.Files["api"]) != 0 {
		t.Errorf("env files must not be listed: %v", c.Files["api"])
	}
	if err := os.WriteFile(filepath.Join(root, "app/api.env"), []byte("A=2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c = mustLoad(t, ComposeOptions{Root: root, Path: "app"})
	if got := *c.Project.Services["api"].Environment["A"]; got != "2" {
		t.Errorf("after env file change A = %q, want 2", got)
	}
}

func TestProfiles(t *testing.T) {
	root := writeTree(t, map[string]string{
		"app/compose.yaml": "services:\n  api:\n    image: x\n  debug:\n    image: d\n    profiles: [debug]\n",
	})
	c := mustLoad(t, ComposeOptions{Root: root, Path: "app"})
	if got := c.Project.ServiceNames(); !slices.Equal(got, []string{"api"}) {
		t.Errorf("services %v, want [api]", got)
	}
	c = mustLoad(t, ComposeOptions{Root: root, Path: "app", Profiles: []string{"debug"}})
	if got := c.Project.ServiceNames(); !slices.Equal(got, []string{"api", "debug"}) {
		t.Errorf("services %v, want [api debug]", got)
	}
	if err := os.WriteFile(filepath.Join(root, "app/.env"), []byte("COMPOSE_PROFILES=debug\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c = mustLoad(t, ComposeOptions{Root: root, Path: "app"})
	if got := c.Project.ServiceNames(); !slices.Equal(got, []string{"api", "debug"}) {
		t.Errorf("COMPOSE_PROFILES from .env: services %v", got)
	}
}

func TestYAMLSyntaxErrorNamesFileAndLine(t *testing.T) {
	root := writeTree(t, map[string]string{
		"app/compose.yaml": "services:\n  api:\n    image: x\n",
		"app/bad.yaml":     "services:\n  api:\n    image: [x\n    user: 1\n",
	})
	err := loadErr(t, ComposeOptions{Root: root, Path: "app", Files: []string{"compose.yaml", "bad.yaml"}})
	wantContains(t, err, "app/bad.yaml", "line ")
}

func TestSchemaErrorNamesFile(t *testing.T) {
	root := writeTree(t, map[string]string{"app/compose.yaml": "services:\n  api:\n    image: x\n    ports: {a: b}\n"})
	err := loadErr(t, ComposeOptions{Root: root, Path: "app"})
	wantContains(t, err, "app/compose.yaml")
}

func TestInvalidOptions(t *testing.T) {
	root := writeTree(t, map[string]string{"app/compose.yaml": "services:\n  api:\n    image: x\n"})
	for name, opts := range map[string]ComposeOptions{
		"no project":    {Root: root, Path: "app", Project: ""},
		"bad project":   {Root: root, Path: "app", Project: "Bad Name"},
		"relative root": {Root: "rel", Path: "app", Project: "p"},
		"absolute path": {Root: root, Path: "/app", Project: "p"},
		"path escapes":  {Root: root, Path: "../x", Project: "p"},
	} {
		if _, err := LoadCompose(t.Context(), opts); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
