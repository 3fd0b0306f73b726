package docker

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/manifests"
)

// loadText loads a compose file the way the daemon does.
func loadText(t *testing.T, compose string) *manifests.Compose {
	t.Helper()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "compose.yaml"), []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := manifests.LoadCompose(t.Context(), manifests.ComposeOptions{Root: root, Path: ".", Project: "chk"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestProjectsTheEngineWouldRefuseHalfWay: what the Engine refuses after creating part of a
// project is refused by Desire (so by validate and at plan time) as an invalid spec.
func TestProjectsTheEngineWouldRefuseHalfWay(t *testing.T) {
	cases := map[string]struct{ compose, want string }{
		"two services, one host port": {"services:\n  a: {image: x, ports: ['8080:80']}\n  b: {image: y, ports: ['8080:81']}\n",
			"services.b.ports: host port 8080/tcp is also published by service a"},
		"an address and all addresses": {"services:\n  a: {image: x, ports: ['127.0.0.1:9000:80']}\n  b: {image: y, ports: ['9000:80']}\n",
			"services.b.ports: host port 9000/tcp"},
		"replicas with a fixed port": {"services:\n  a: {image: x, ports: ['8080:80'], deploy: {replicas: 2}}\n",
			"services.a.ports: host port 8080/tcp is fixed but the service runs 2 replicas"},
		"one service twice": {"services:\n  a: {image: x, ports: ['8080:80', '8080:81']}\n",
			"also published by the same service twice"},
		"uppercase image": {"services:\n  a: {image: 'Nginx:latest'}\n", `services.a.image: "Nginx:latest"`},
		"bad tag":         {"services:\n  a: {image: 'nginx:bad tag'}\n", `services.a.image: "nginx:bad tag"`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Desire(drivers.App{Name: "chk", Project: "chk"}, loadText(t, c.compose), DesireOptions{FilesDir: t.TempDir()})
			if !errors.Is(err, drivers.ErrInvalidSpec) || !errors.Is(err, ErrInvalidProject) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want an invalid spec saying %q", err, c.want)
			}
		})
	}
	fine := map[string]string{
		"different protocols":  "services:\n  a: {image: x, ports: ['53:53/tcp']}\n  b: {image: y, ports: ['53:53/udp']}\n",
		"different addresses":  "services:\n  a: {image: x, ports: ['127.0.0.1:80:80']}\n  b: {image: y, ports: ['127.0.0.2:80:80']}\n",
		"random host ports":    "services:\n  a: {image: x, ports: ['80'], deploy: {replicas: 3}}\n  b: {image: y, ports: ['80']}\n",
		"a range for replicas": "services:\n  a: {image: x, ports: ['8000-8010:80'], deploy: {replicas: 3}}\n",
		"registry with a port": "services:\n  a: {image: '127.0.0.1:5000/team/app:1.2@sha256:" + strings.Repeat("a", 64) + "'}\n",
	}
	for name, compose := range fine {
		t.Run(name, func(t *testing.T) {
			if _, err := Desire(drivers.App{Name: "chk", Project: "chk"}, loadText(t, compose), DesireOptions{FilesDir: t.TempDir()}); err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}
}
