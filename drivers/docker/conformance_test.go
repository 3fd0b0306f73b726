package docker

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/drivers/drivertest"
	"github.com/shipwatch/shipwatch/manifests"
)

// conformance adapts the shared driver suite to the Docker Engine: resources are compose
// services, removed by hand with a forced container remove.
type conformance struct {
	cli *client.Client
	drv *Driver
}

func TestConformance(t *testing.T) {
	cli, _ := engineClient(t)
	drv, err := New(Options{Client: cli, FilesDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	drivertest.Run(t, &conformance{cli: cli, drv: drv})
}

func (c *conformance) Driver() drivers.Driver { return c.drv }

func (c *conformance) App(t *testing.T) drivers.App {
	project := strings.ToLower("swconf-" + rand.Text()[:10])
	f := &fixture{t: t, cli: c.cli, project: project}
	t.Cleanup(f.removeAll)
	return drivers.App{Name: "app-" + project, Project: project, Revision: "rev1"}
}

func (c *conformance) Bundle(t *testing.T, app drivers.App, v drivertest.Variant) *manifests.Bundle {
	t.Helper()
	aMessage := "a-1"
	if v == drivertest.ChangedA {
		aMessage = "a-2"
	}
	doc := "services:\n" + service("a", aMessage)
	if v != drivertest.WithoutB {
		doc += service("b", "b-1")
	}
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "compose.yaml"), []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	comp, err := manifests.LoadCompose(t.Context(), manifests.ComposeOptions{Root: root, Path: ".", Project: app.Project})
	if err != nil {
		t.Fatal(err)
	}
	return &manifests.Bundle{Revision: app.Revision, Compose: comp}
}

func service(name, message string) string {
	return "  " + name + ":\n    image: " + testImageTag() + "\n    restart: unless-stopped\n" +
		"    environment:\n      MESSAGE: " + message + "\n"
}

func (c *conformance) Ref(name string) drivers.Ref { return drivers.Ref{Kind: "service", Name: name} }

func (c *conformance) Remove(t *testing.T, app drivers.App, name string) {
	t.Helper()
	if _, err := c.cli.ContainerRemove(t.Context(), app.Project+"-"+name+"-1", client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatalf("docker rm -f: %v", err)
	}
}
