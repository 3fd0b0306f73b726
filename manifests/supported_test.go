package manifests

import (
	"errors"
	"slices"
	"testing"
)

func TestUnsupportedKeys(t *testing.T) {
	cases := []struct {
		name, service, key, value, yaml string
	}{
		{"build ssh", "api", "build.ssh", "", `
services:
  api:
    image: x
    build:
      context: .
      ssh: [default]
`},
		{"build cache_from", "api", "build.cache_from", "", `
services:
  api:
    image: x
    build:
      context: .
      cache_from: [x:cache]
`},
		{"secret uid", "api", "secrets[].uid", "", `
services:
  api:
    image: x
    secrets:
      - source: s
        uid: "1000"
secrets:
  s:
    file: ./s.txt
`},
		{"secret mode", "api", "secrets[].mode", "", `
services:
  api:
    image: x
    secrets:
      - source: s
        mode: 0400
secrets:
  s:
    file: ./s.txt
`},
		{"deploy.resources devices", "api", "deploy.resources.reservations.devices", "", `
services:
  api:
    image: x
    deploy:
      resources:
        reservations:
          devices:
            - capabilities: [gpu]
`},
		{"deploy.placement", "api", "deploy.placement", "", `
services:
  api:
    image: x
    deploy:
      placement:
        constraints: [node.role==manager]
`},
		{"configs mode", "api", "configs[].mode", "", `
services:
  api:
    image: x
    configs:
      - source: c
        mode: 0440
configs:
  c:
    file: ./c.txt
`},
		{"ipv4_address", "api", "networks.front.ipv4_address", "", `
services:
  api:
    image: x
    networks:
      front: {ipv4_address: 10.0.0.2}
networks:
  front: {}
`},
		{"network_mode container", "api", "network_mode", "container:abc", `
services:
  api:
    image: x
    network_mode: "container:abc"
`},
		{"ipc container", "api", "ipc", "container:abc", `
services:
  api:
    image: x
    ipc: "container:abc"
`},
		{"pid container", "api", "pid", "container:abc", `
services:
  api:
    image: x
    pid: "container:abc"
`},
		{"ipc unknown mode", "api", "ipc", "sharable", `
services:
  api:
    image: x
    ipc: sharable
`},
		{"volumes_from mode z", "api", "volumes_from[]", "db:z", `
services:
  db:
    image: x
  api:
    image: x
    volumes_from: ["db:z"]
`},
		{"volumes_from container without name", "api", "volumes_from[]", "container:", `
services:
  api:
    image: x
    volumes_from: ["container:"]
`},
		{"pull_policy always", "api", "pull_policy", "always", `
services:
  api:
    image: x
    pull_policy: always
`},
		{"volume type image", "api", "volumes[].type", "image", `
services:
  api:
    image: x
    volumes:
      - type: image
        source: other/image:1
        target: /data
`},
		{"secret from environment", "", "secrets.s.environment", "", `
services:
  api:
    image: x
    secrets: [s]
secrets:
  s:
    environment: TOKEN
`},
		{"external secret", "", "secrets.s.external", "", `
services:
  api:
    image: x
    secrets: [s]
secrets:
  s:
    external: true
`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := writeTree(t, map[string]string{"app/compose.yaml": tc.yaml, "app/s.txt": "s"})
			err := loadErr(t, ComposeOptions{Root: root, Path: "app"})
			var ue *UnsupportedError
			if !errors.As(err, &ue) {
				t.Fatalf("error %v is not an *UnsupportedError", err)
			}
			var all []*UnsupportedError
			for _, e := range flatten(err) {
				if errors.As(e, &ue) {
					all = append(all, ue)
				}
			}
			if !slices.ContainsFunc(all, func(u *UnsupportedError) bool {
				return u.Service == tc.service && u.Key == tc.key && u.Value == tc.value
			}) {
				t.Fatalf("no UnsupportedError{Service:%q Key:%q Value:%q} in %v", tc.service, tc.key, tc.value, err)
			}
			wantContains(t, err, "app/compose.yaml:", tc.key)
		})
	}
}

func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestUnsupportedBuildMessage(t *testing.T) {
	root := writeTree(t, map[string]string{"apps/web/compose.yaml": `services:
  api:
    image: x
    build:
      context: .
      secrets: [npmrc]
`})
	err := loadErr(t, ComposeOptions{Root: root, Path: "apps/web"})
	want := `apps/web/compose.yaml:4: service "api": key "build.secrets" is not supported by shipwatch (` + buildHint + `)`
	if err.Error() != want {
		t.Errorf("error\n got %s\nwant %s", err, want)
	}
}

func TestUnsupportedKeyInOverrideNamesOverride(t *testing.T) {
	root := writeTree(t, map[string]string{
		"app/compose.yaml":  "services:\n  api:\n    image: x\n",
		"app/override.yaml": "services:\n  api:\n    gpus: all\n",
	})
	err := loadErr(t, ComposeOptions{Root: root, Path: "app", Files: []string{"compose.yaml", "override.yaml"}})
	wantContains(t, err, "app/override.yaml:3", `service "api"`, `key "gpus"`)
}

func TestExtensionsAllowed(t *testing.T) {
	root := writeTree(t, map[string]string{"app/compose.yaml": `
x-defaults: &defaults
  restart: always
services:
  api:
    <<: *defaults
    image: x
    x-shipwatch: {note: hi}
    labels:
      x-not-an-extension-but-a-label: "1"
`})
	c := mustLoad(t, ComposeOptions{Root: root, Path: "app"})
	if c.Project.Services["api"].Restart != "always" {
		t.Errorf("restart = %q", c.Project.Services["api"].Restart)
	}
}

func TestUnsupportedInDisabledProfileIgnored(t *testing.T) {
	root := writeTree(t, map[string]string{"app/compose.yaml": `
services:
  api:
    image: x
  dev:
    profiles: [dev]
    image: x
    gpus: all
`})
	mustLoad(t, ComposeOptions{Root: root, Path: "app"})
	err := loadErr(t, ComposeOptions{Root: root, Path: "app", Profiles: []string{"dev"}})
	wantContains(t, err, `service "dev"`, `key "gpus"`)
}

func TestMissingImage(t *testing.T) {
	root := writeTree(t, map[string]string{"app/compose.yaml": "services:\n  api:\n    command: [x]\n"})
	err := loadErr(t, ComposeOptions{Root: root, Path: "app"})
	wantContains(t, err, `service "api"`, "image")
}

func TestSupportedServiceKeysSorted(t *testing.T) {
	keys := SupportedServiceKeys()
	if !slices.IsSorted(keys) || !slices.Contains(keys, "image") || !slices.Contains(keys, "build.args.*") || slices.Contains(keys, "build.ssh") {
		t.Errorf("SupportedServiceKeys() = %v", keys)
	}
}

func TestVolumesFromSupported(t *testing.T) {
	root := writeTree(t, map[string]string{"app/compose.yaml": `
services:
  db:
    image: x
    volumes: [data:/data]
  backup:
    image: x
    volumes_from: ["db:ro", "container:legacy:rw"]
volumes:
  data: {}
`})
	c := mustLoad(t, ComposeOptions{Root: root, Path: "app"})
	b := c.Project.Services["backup"]
	if !slices.Equal(b.VolumesFrom, []string{"db:ro", "container:legacy:rw"}) {
		t.Errorf("volumes_from = %v", b.VolumesFrom)
	}
	// compose-go orders the shared service first through an implicit depends_on.
	if dep, ok := b.DependsOn["db"]; !ok || dep.Condition != "service_started" || dep.Restart || !dep.Required {
		t.Errorf("depends_on = %+v, want db: service_started, restart false, required", b.DependsOn)
	}
}

// compose-go orders the service whose namespace is shared first through an implicit
// depends_on with restart: true, for network_mode, ipc and pid alike.
func TestNamespaceServiceSupported(t *testing.T) {
	root := writeTree(t, map[string]string{"app/compose.yaml": `
services:
  first:
    image: x
    ipc: shareable
  second:
    image: x
    network_mode: service:first
  third:
    image: x
    ipc: service:first
    pid: service:second
`})
	c := mustLoad(t, ComposeOptions{Root: root, Path: "app"})
	want := map[string][]string{"second": {"first"}, "third": {"first", "second"}}
	for svc, deps := range want {
		s := c.Project.Services[svc]
		for _, d := range deps {
			if dep, ok := s.DependsOn[d]; !ok || dep.Condition != "service_started" || !dep.Restart || !dep.Required {
				t.Errorf("%s depends_on = %+v, want %s: service_started, restart true, required", svc, s.DependsOn, d)
			}
		}
		if len(s.DependsOn) != len(deps) {
			t.Errorf("%s depends_on = %+v, want only %v", svc, s.DependsOn, deps)
		}
	}
	if got := c.Project.Services["first"].Ipc; got != "shareable" {
		t.Errorf("first ipc = %q", got)
	}
}
