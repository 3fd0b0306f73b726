package manifests

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestEscapesAreRefused(t *testing.T) {
	cases := []struct {
		name    string
		files   map[string]string
		opts    ComposeOptions
		wantRef string
		wantKey string
	}{
		{"env_file", map[string]string{
			"app/compose.yaml": "services:\n  api:\n    image: x\n    env_file: ../../secret.env\n",
		}, ComposeOptions{}, "../secret.env", "services.api.env_file"},
		{"bind source", map[string]string{
			"app/compose.yaml": "services:\n  api:\n    image: x\n    volumes: [\"../../etc:/etc/host\"]\n",
		}, ComposeOptions{}, "../etc", "services.api.volumes"},
		{"config file", map[string]string{
			"app/compose.yaml": "services:\n  api:\n    image: x\n    configs: [c]\nconfigs:\n  c:\n    file: ../../../c.conf\n",
		}, ComposeOptions{}, "../../c.conf", "configs.c.file"},
		{"compose file", map[string]string{
			"app/compose.yaml": "services:\n  api:\n    image: x\n",
		}, ComposeOptions{Files: []string{"compose.yaml", "../../other.yaml"}}, "../other.yaml", "compose file"},
		{"interpolation env file", map[string]string{
			"app/compose.yaml": "services:\n  api:\n    image: x\n",
		}, ComposeOptions{EnvFiles: []string{"/etc/hostname"}}, "", "env file"},
		{"extends file", map[string]string{
			"app/compose.yaml": "services:\n  api:\n    extends: {file: ../../base.yaml, service: base}\n",
		}, ComposeOptions{}, "../base.yaml", "extends file"},
		{"local volume device", map[string]string{
			"app/compose.yaml": "services:\n  api:\n    image: x\n    volumes: [d:/d]\nvolumes:\n  d:\n    driver: local\n    driver_opts: {o: bind, type: none, device: ../../d}\n",
		}, ComposeOptions{}, "../d", "volumes.d.driver_opts.device"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := writeTree(t, tc.files)
			// Files just outside the checkout exist, so only confinement can refuse them.
			for _, f := range []string{"secret.env", "base.yaml", "other.yaml", "c.conf"} {
				if err := os.WriteFile(filepath.Join(filepath.Dir(root), f), []byte("services:\n  base:\n    image: x\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			tc.opts.Root, tc.opts.Path = root, "app"
			err := loadErr(t, tc.opts)
			if tc.wantRef == "" { // an absolute path is named relative to the checkout too
				tc.wantRef, _ = filepath.Rel(root, "/etc/hostname")
			}
			wantEscape(t, err, tc.wantRef)
			wantContains(t, err, tc.wantKey)
		})
	}
}

func TestSymlinkLeavingCheckoutRefused(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("S=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, compose := range map[string]string{
		"env_file":  "services:\n  api:\n    image: x\n    env_file: link/secret\n",
		"bind":      "services:\n  api:\n    image: x\n    volumes: [./link:/data]\n",
		"bind file": "services:\n  api:\n    image: x\n    volumes: [./link/secret:/data]\n",
		"config":    "services:\n  api:\n    image: x\n    configs: [c]\nconfigs:\n  c:\n    file: ./link/secret\n",
	} {
		t.Run(name, func(t *testing.T) {
			root := writeTree(t, map[string]string{"app/compose.yaml": compose})
			if err := os.Symlink(outside, filepath.Join(root, "app/link")); err != nil {
				t.Fatal(err)
			}
			err := loadErr(t, ComposeOptions{Root: root, Path: "app"})
			var ee *EscapeError
			if !errors.As(err, &ee) || ee.Via == "" {
				t.Fatalf("want a symlink EscapeError, got %v", err)
			}
			wantContains(t, err, "app/link")
		})
	}
}

func TestSymlinkedComposeFileRefused(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "compose.yaml"), []byte("services:\n  api:\n    image: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := writeTree(t, map[string]string{"app/README": ""})
	if err := os.Symlink(filepath.Join(outside, "compose.yaml"), filepath.Join(root, "app/compose.yaml")); err != nil {
		t.Fatal(err)
	}
	wantEscape(t, loadErr(t, ComposeOptions{Root: root, Path: "app"}), "app/compose.yaml")
}

func TestSymlinkInsideCheckoutAllowed(t *testing.T) {
	root := writeTree(t, map[string]string{
		"app/compose.yaml": "services:\n  api:\n    image: x\n    env_file: shared.env\n",
		"common/api.env":   "A=1\n",
	})
	if err := os.Symlink("../common/api.env", filepath.Join(root, "app/shared.env")); err != nil {
		t.Fatal(err)
	}
	c := mustLoad(t, ComposeOptions{Root: root, Path: "app"})
	if got := *c.Project.Services["api"].Environment["A"]; got != "1" {
		t.Errorf("A = %q", got)
	}
}

func TestAbsoluteHostBindAllowed(t *testing.T) {
	root := writeTree(t, map[string]string{
		"app/compose.yaml": "services:\n  api:\n    image: x\n    volumes:\n      - /var/run/docker.sock:/var/run/docker.sock\n      - type: bind\n        source: /etc/ssl/certs\n        target: /certs\n",
	})
	c := mustLoad(t, ComposeOptions{Root: root, Path: "app"})
	vols := c.Project.Services["api"].Volumes
	if vols[0].Source != "/var/run/docker.sock" || vols[1].Source != "/etc/ssl/certs" {
		t.Errorf("volumes %+v", vols)
	}
	if len(c.Files["api"]) != 0 {
		t.Errorf("host paths must not be listed or read: %+v", c.Files["api"])
	}
}

func TestExtendsInsideCheckout(t *testing.T) {
	root := writeTree(t, map[string]string{
		"app/compose.yaml":   "services:\n  api:\n    extends: {file: ../common/base.yaml, service: base}\n    environment: {B: app}\n",
		"common/base.yaml":   "services:\n  base:\n    image: base:1\n    environment: {A: base}\n    volumes: [./conf:/conf]\n",
		"common/conf/x.conf": "x",
	})
	c := mustLoad(t, ComposeOptions{Root: root, Path: "app"})
	api := c.Project.Services["api"]
	if api.Image != "base:1" || *api.Environment["A"] != "base" || *api.Environment["B"] != "app" {
		t.Errorf("api %+v", api)
	}
	if got := api.Volumes[0].Source; got != filepath.Join(root, "common/conf") {
		t.Errorf("extended bind source %q, want it relative to the base file", got)
	}
}

func TestIncludeAndRemoteRefused(t *testing.T) {
	root := writeTree(t, map[string]string{
		"app/compose.yaml": "include: [other.yaml]\nservices:\n  api:\n    image: x\n",
		"app/other.yaml":   "services:\n  o:\n    image: x\n",
		"app/remote.yaml":  "services:\n  api:\n    extends: {file: \"https://example.com/x.git\", service: b}\n",
	})
	err := loadErr(t, ComposeOptions{Root: root, Path: "app"})
	var ue *UnsupportedError
	if !errors.As(err, &ue) || ue.Key != "include" {
		t.Errorf("include: got %v", err)
	}
	wantContains(t, err, "app/compose.yaml:1")
	err = loadErr(t, ComposeOptions{Root: root, Path: "app", Files: []string{"remote.yaml"}})
	if !errors.Is(err, ErrRemoteResource) {
		t.Errorf("remote extends: got %v", err)
	}
}

func TestHomeRelativePathRefused(t *testing.T) {
	root := writeTree(t, map[string]string{"app/compose.yaml": "services:\n  api:\n    image: x\n    env_file: ~/x.env\n"})
	wantContains(t, loadErr(t, ComposeOptions{Root: root, Path: "app"}), "home-relative")
}
