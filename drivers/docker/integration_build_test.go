package docker

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/internal/testimage"
	"github.com/shipwatch/shipwatch/manifests"
)

const buildCompose = `
services:
  api:
    build:
      context: ./svc
      args:
        GREETING: s3cret-arg
      labels:
        team: shop
    environment:
      MESSAGE: built
  plain:
    image: IMAGE
`

const buildDockerfile = `FROM scratch
ARG GREETING
COPY app /app
COPY version.txt /version.txt
ENTRYPOINT ["/app"]
`

// compileApp builds the test program as a static binary, as internal/testimage does, so the
// build context holds a real FROM scratch application.
func compileApp(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{"main.go": testimage.Program, "go.mod": "module testapp\n\ngo 1.22\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(t.Context(), "go", "build", "-trimpath", "-ldflags=-s -w", "-o", "app", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "app"))
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// writeCheckout writes files (relative path -> content) into the fixture's checkout.
func (f *fixture) writeCheckout(files map[string]string, mode os.FileMode) {
	f.t.Helper()
	for rel, content := range files {
		p := filepath.Join(f.dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			f.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f *fixture) load(revision string) *manifests.Bundle {
	f.t.Helper()
	c, err := manifests.LoadCompose(f.t.Context(), manifests.ComposeOptions{Root: f.dir, Path: ".", Project: f.project})
	if err != nil {
		f.t.Fatalf("load: %v", err)
	}
	f.app.Revision = revision
	return &manifests.Bundle{Revision: revision, Compose: c}
}

// removeImages deletes the images this test's app built, found by the ownership label.
func (f *fixture) removeImages() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f.removeAll() // containers first: an image in use is only untagged
	res, err := f.cli.ImageList(ctx, client.ImageListOptions{Filters: client.Filters{}.Add("label", LabelApp+"="+f.app.Name)})
	if err != nil {
		f.t.Logf("list built images: %v", err)
		return
	}
	for _, img := range res.Items {
		if _, err := f.cli.ImageRemove(ctx, img.ID, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil {
			f.t.Logf("remove image %s: %v", img.ID, err)
		}
	}
}

func (f *fixture) imageID(ref string) string {
	f.t.Helper()
	res, err := f.cli.ImageInspect(f.t.Context(), ref)
	if err != nil {
		f.t.Fatalf("inspect %s: %v", ref, err)
	}
	return res.ID
}

func TestBuildOnEngine(t *testing.T) {
	f := newFixture(t)
	t.Cleanup(f.removeImages)
	f.writeCheckout(map[string]string{
		"compose.yaml":      strings.ReplaceAll(buildCompose, "IMAGE", testImageTag()),
		"svc/Dockerfile":    buildDockerfile,
		"svc/version.txt":   "1",
		"svc/.dockerignore": "*.md\n",
		"svc/NOTES.md":      "ignored",
		"README.md":         "outside the context",
	}, 0o644)
	f.writeCheckout(map[string]string{"svc/app": string(compileApp(t))}, 0o755)
	image := f.project + "-api"

	// First deploy: one build, then both services created from their images.
	plan := f.plan(f.load("rev1"))
	if c := changeOf(plan.Changes, "image/"+image); c.Action != drivers.ActionCreate {
		t.Fatalf("image change = %s (%s), want create", c.Action, c.Reason)
	}
	assertNoSecret(t, plan)
	f.apply(plan, drivers.ApplyOptions{Prune: true})
	first := f.inspect(f.name("api"))
	if first.Image != f.imageID(image) || !first.State.Running {
		t.Fatalf("api runs image %s (running %v), want the built %s", first.Image, first.State.Running, f.imageID(image))
	}
	img, err := f.cli.ImageInspect(t.Context(), image)
	if err != nil {
		t.Fatal(err)
	}
	labels := img.Config.Labels
	if labels[LabelBuildDigest] == "" || labels["team"] != "shop" || labels[LabelProject] != f.project || labels[LabelApp] != f.app.Name {
		t.Errorf("image labels = %v", labels)
	}
	plainID := f.inspect(f.name("plain")).ID

	// Something outside the context (and an ignored file in it) changes: nothing is built or recreated.
	f.writeCheckout(map[string]string{"README.md": "changed", "svc/NOTES.md": "changed too"}, 0o644)
	plan = f.plan(f.load("rev2"))
	if !plan.InSync() {
		t.Fatalf("unchanged context at a new revision is not in sync:\n%s", plan)
	}

	// A file in the context changes: one rebuild, only api recreated.
	f.writeCheckout(map[string]string{"svc/version.txt": "2"}, 0o644)
	plan = f.plan(f.load("rev3"))
	if c := changeOf(plan.Changes, "image/"+image); c.Action != drivers.ActionRecreate || !strings.Contains(c.Reason, "build context changed") {
		t.Fatalf("image change = %s (%s)", c.Action, c.Reason)
	}
	if c := changeOf(plan.Changes, "service/plain"); c.Action != drivers.ActionUnchanged {
		t.Fatalf("plain = %s (%s): it is not built from the context", c.Action, c.Reason)
	}
	f.apply(plan, drivers.ApplyOptions{Prune: true})
	second := f.inspect(f.name("api"))
	if second.ID == first.ID || second.Image == first.Image || second.Image != f.imageID(image) || !second.State.Running {
		t.Fatalf("api not recreated from the rebuilt image: %s -> %s", first.Image, second.Image)
	}
	if f.inspect(f.name("plain")).ID != plainID {
		t.Error("plain was recreated")
	}
	if plan := f.plan(f.load("rev3")); !plan.InSync() {
		t.Fatalf("not in sync after the rebuild:\n%s", plan)
	}
}

func TestBuildFailureIsStalled(t *testing.T) {
	f := newFixture(t)
	t.Cleanup(f.removeImages)
	f.writeCheckout(map[string]string{
		"compose.yaml":   "services:\n  api:\n    build: ./svc\n",
		"svc/Dockerfile": "FROM scratch\nCOPY missing.txt /missing.txt\n",
	}, 0o644)
	plan := f.plan(f.load("rev1"))
	_, err := f.drv.Apply(t.Context(), plan, drivers.ApplyOptions{})
	if !errors.Is(err, ErrBuildFailed) || !errors.Is(err, drivers.ErrInvalidSpec) {
		t.Fatalf("err = %v, want ErrBuildFailed (invalid spec)", err)
	}
	if !strings.Contains(err.Error(), "Step 2/") || !strings.Contains(err.Error(), "svc/Dockerfile") {
		t.Errorf("error does not name the step and Dockerfile: %v", err)
	}
}

func assertNoSecret(t *testing.T, p *drivers.Plan) {
	t.Helper()
	for _, c := range p.Changes {
		if strings.Contains(c.Reason+c.Diff, "s3cret") {
			t.Errorf("%s leaks a build arg", c.Ref)
		}
	}
	if strings.Contains(p.String(), "s3cret") {
		t.Error("plan text leaks a build arg")
	}
}
