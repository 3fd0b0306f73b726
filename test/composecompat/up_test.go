package composecompat

import (
	"context"
	"fmt"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/drivers/docker"
	"github.com/shipwatch/shipwatch/internal/testimage"
	"github.com/shipwatch/shipwatch/internal/testproject"
	"github.com/shipwatch/shipwatch/manifests"
)

// compatImage is the image the test projects name; built locally, FROM scratch.
const compatImage = "shipwatch-compat/app:1"

// live is what the test compares before and after `docker-compose up -d`.
type live struct {
	containers map[string]string // container name -> ID
	hashes     map[string]string // container name -> config-hash label
	networks   map[string]string // network name -> ID
	volumes    []string          // volume names (volumes have no ID)
	// runtime is what the Engine runs a container with, as far as the test compares it
	// (resource limits, mount targets and modes), by container name.
	runtime map[string]string
}

// TestComposeUpKeepsShipwatchDeployment is the end-to-end form of the hash check: shipwatch
// deploys a project on the real Engine, then the real `docker-compose up -d` runs on the
// same project. Compose must find nothing to do: every container, network and volume keeps
// its ID. Services that read repo files are the documented exception: shipwatch mounts
// content-addressed copies, so their hash differs from the checkout's on purpose, and
// compose recreates them; the test checks that this happens exactly for them.
func TestComposeUpKeepsShipwatchDeployment(t *testing.T) {
	bin := composeBinary(t)
	if bin == "" {
		t.Skip("docker-compose CLI not built: run scripts/build-compose.sh")
	}
	ctx := t.Context()
	cli, err := docker.NewClient("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	if _, err := cli.Ping(ctx, client.PingOptions{}); err != nil {
		t.Skipf("no Docker Engine: %v", err)
	}
	testimage.Build(ctx, t, cli, compatImage, "")

	for _, p := range projects() {
		t.Run(p.name, func(t *testing.T) {
			root, dir := writeProject(t, p)
			name := "swcompat-" + p.name
			testproject.Clean(t, cli, name)

			withFiles := deployWithShipwatch(t, cli, root, name, p)
			before := observe(t, cli, name)
			if len(before.containers) == 0 {
				t.Fatal("shipwatch deployed no containers")
			}
			out := composeUp(t, bin, dir, name, p)
			after := observe(t, cli, name)
			checkUnchanged(t, name, before, after, withFiles, out)
		})
	}
}

// deployWithShipwatch deploys the project with the docker driver and returns the services
// that read repo files (their containers mount rewritten paths).
func deployWithShipwatch(t *testing.T, cli *client.Client, root, name string, p project) map[string]bool {
	t.Helper()
	ctx := t.Context()
	c, err := manifests.LoadCompose(ctx, manifests.ComposeOptions{
		Root: root, Path: "app", Files: p.compose, Profiles: p.profiles, Project: name,
	})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	drv, err := docker.New(docker.Options{Client: cli, FilesDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	app := drivers.App{Name: name, Project: name, Revision: "compat"}
	bundle := &manifests.Bundle{Revision: app.Revision, Compose: c}
	if len(c.Builds) > 0 {
		t.Cleanup(func() { removeBuiltImages(t, cli, name) })
	}
	plan, err := drv.Plan(ctx, app, bundle)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	if _, err := drv.Apply(ctx, plan, drivers.ApplyOptions{Prune: true}); err != nil {
		t.Fatalf("apply: %v\nplan:\n%s", err, plan)
	}
	withFiles := map[string]bool{}
	for svc, files := range c.Files {
		if len(files) > 0 {
			withFiles[svc] = true
		}
	}
	return withFiles
}

// composeUp runs `docker-compose up -d` the way a user would on the same checkout.
func composeUp(t *testing.T, bin, dir, name string, p project) string {
	t.Helper()
	args := []string{"-p", name, "--project-directory", dir}
	for _, f := range p.compose {
		args = append(args, "-f", filepath.Join(dir, f))
	}
	for _, prof := range p.profiles {
		args = append(args, "--profile", prof)
	}
	args = append(args, "up", "-d")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func observe(t *testing.T, cli *client.Client, project string) live {
	t.Helper()
	ctx := t.Context()
	filter := client.Filters{}.Add("label", docker.LabelProject+"="+project)
	l := live{containers: map[string]string{}, hashes: map[string]string{}, networks: map[string]string{}, runtime: map[string]string{}}
	cs, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filter})
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	for _, c := range cs.Items {
		n := strings.TrimPrefix(c.Names[0], "/")
		l.containers[n] = c.ID
		l.hashes[n] = c.Labels[docker.LabelConfigHash]
		l.runtime[n] = runtimeOf(t, cli, c.ID)
	}
	ns, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: filter})
	if err != nil {
		t.Fatalf("list networks: %v", err)
	}
	for _, n := range ns.Items {
		l.networks[n.Name] = n.ID
	}
	vs, err := cli.VolumeList(ctx, client.VolumeListOptions{Filters: filter})
	if err != nil {
		t.Fatalf("list volumes: %v", err)
	}
	for _, v := range vs.Items {
		l.volumes = append(l.volumes, v.Name)
	}
	slices.Sort(l.volumes)
	return l
}

// runtimeOf summarises the parts of a container's configuration that must be the same
// whether shipwatch or compose created it. Mount sources are left out: shipwatch mounts
// content-addressed copies where compose mounts the checkout.
func runtimeOf(t *testing.T, cli *client.Client, id string) string {
	t.Helper()
	res, err := cli.ContainerInspect(t.Context(), id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatalf("inspect container %s: %v", id, err)
	}
	c := res.Container
	r := c.HostConfig.Resources
	pids := "unset"
	if r.PidsLimit != nil {
		pids = fmt.Sprint(*r.PidsLimit)
	}
	mounts := make([]string, 0, len(c.Mounts))
	for _, m := range c.Mounts {
		mounts = append(mounts, fmt.Sprintf("%s %s rw=%t", m.Destination, m.Type, m.RW))
	}
	slices.Sort(mounts)
	return fmt.Sprintf("memory=%d reservation=%d nano-cpus=%d pids=%s mounts=[%s]",
		r.Memory, r.MemoryReservation, r.NanoCPUs, pids, strings.Join(mounts, ", "))
}

// checkUnchanged compares live state before and after compose ran. A container of a
// service in withFiles must have been recreated (its hash differs by design); every other
// container, network and volume must be untouched.
func checkUnchanged(t *testing.T, project string, before, after live, withFiles map[string]bool, out string) {
	t.Helper()
	failed := false
	for _, n := range slices.Sorted(maps.Keys(before.containers)) {
		svc := serviceOf(project, n)
		id, ok := after.containers[n]
		switch {
		case withFiles[svc] && ok && id != before.containers[n]:
			t.Logf("container %s recreated by compose, as designed: it mounts repo files (hash %s -> %s)", n, before.hashes[n], after.hashes[n])
			if before.runtime[n] != after.runtime[n] {
				t.Errorf("container %s runs differently when compose creates it:\n  shipwatch: %s\n  compose:   %s", n, before.runtime[n], after.runtime[n])
				failed = true
			}
		case withFiles[svc]:
			t.Errorf("container %s mounts repo files, so its hash should differ from compose's, yet compose kept it", n)
			failed = true
		case !ok:
			t.Errorf("container %s removed by compose", n)
			failed = true
		case id != before.containers[n]:
			t.Errorf("container %s recreated by compose: config-hash %s (shipwatch) -> %s (compose)", n, before.hashes[n], after.hashes[n])
			failed = true
		}
	}
	for n := range after.containers {
		if _, ok := before.containers[n]; !ok {
			t.Errorf("compose created container %s that shipwatch did not", n)
			failed = true
		}
	}
	if !maps.Equal(before.networks, after.networks) {
		t.Errorf("networks changed: shipwatch %v, after compose %v", before.networks, after.networks)
		failed = true
	}
	if !slices.Equal(before.volumes, after.volumes) {
		t.Errorf("volumes changed: shipwatch %v, after compose %v", before.volumes, after.volumes)
		failed = true
	}
	if failed {
		t.Logf("docker-compose output:\n%s", out)
	}
}

// serviceOf extracts the service from a compose container name <project>-<service>-<n>.
func serviceOf(project, container string) string {
	rest := strings.TrimPrefix(container, project+"-")
	if i := strings.LastIndex(rest, "-"); i >= 0 {
		return rest[:i]
	}
	return rest
}

// removeBuiltImages removes the project's containers and then the images shipwatch built
// for the app, found by its ownership label: nothing else is touched.
func removeBuiltImages(t *testing.T, cli *client.Client, app string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 2*time.Minute)
	defer cancel()
	if err := testproject.Remove(ctx, cli, app); err != nil {
		t.Errorf("clean project %s: %v", app, err)
	}
	res, err := cli.ImageList(ctx, client.ImageListOptions{Filters: client.Filters{}.Add("label", docker.LabelApp+"="+app)})
	if err != nil {
		t.Errorf("list images of %s: %v", app, err)
		return
	}
	for _, img := range res.Items {
		if _, err := cli.ImageRemove(ctx, img.ID, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil {
			t.Errorf("remove image %s: %v", img.ID, err)
		}
	}
}
