package docker

import (
	"slices"
	"strings"
	"testing"

	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers"
)

const sharedVolumesYAML = `
services:
  first:
    image: IMAGE
    environment:
      MESSAGE: FIRST_MESSAGE
    volumes: [data:/data]
  second:
    image: IMAGE
    volumes_from: ["first:ro"]
volumes:
  data: {}
`

// TestVolumesFromOnEngine: the second service mounts the first's volume read-only through
// HostConfig.VolumesFrom naming the first container's ID with the mode, and is replaced
// whenever the first container is, so it never points at a removed container.
func TestVolumesFromOnEngine(t *testing.T) {
	f := newFixture(t)
	v1 := f.bundle(strings.ReplaceAll(sharedVolumesYAML, "FIRST_MESSAGE", "one"))
	f.apply(f.plan(v1), drivers.ApplyOptions{Prune: true})
	firstID := f.checkVolumesFrom()
	if p, err := f.freshDriver().Plan(t.Context(), f.app, v1); err != nil || !p.InSync() {
		t.Fatalf("plan after deploy, every container inspected: %v\n%v", err, p)
	}

	// A change to the first service recreates it, and the second with it.
	v2 := f.bundle(strings.ReplaceAll(sharedVolumesYAML, "FIRST_MESSAGE", "two"))
	p := f.plan(v2)
	if c := changeOf(p.Changes, "service/second"); c.Action != drivers.ActionRecreate || c.Reason != "volumes_from: service first is recreated" {
		t.Fatalf("service/second = %s (%s), want a recreate because first is\n%s", c.Action, c.Reason, p)
	}
	secondID := f.containers()[f.name("second")].ID
	f.apply(p, drivers.ApplyOptions{Prune: true})
	if id := f.checkVolumesFrom(); id == firstID {
		t.Fatal("first was not recreated")
	}
	if f.containers()[f.name("second")].ID == secondID {
		t.Fatal("second still points at the removed first container")
	}
	if p := f.plan(v2); !p.InSync() {
		t.Fatalf("not in sync after the recreate:\n%s", p)
	}

	// The first container removed by hand: healing creates it and then replaces the second.
	if _, err := f.cli.ContainerRemove(t.Context(), f.name("first"), client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	p = f.plan(v2)
	if c := changeOf(p.Changes, "service/second"); c.Action != drivers.ActionRecreate || !strings.Contains(c.Reason, "volumes_from: the container of service first changed") {
		t.Fatalf("service/second = %s (%s)\n%s", c.Action, c.Reason, p)
	}
	f.apply(p, drivers.ApplyOptions{Prune: true})
	f.checkVolumesFrom()
	if p := f.plan(v2); !p.InSync() {
		t.Fatalf("not in sync after healing:\n%s", p)
	}
}

// checkVolumesFrom inspects the second container and returns the first's ID: VolumesFrom
// names the first container with ":ro", the volume is mounted read-only, and the
// config-hash label is compose's (entries bound to bare container IDs).
func (f *fixture) checkVolumesFrom() string {
	f.t.Helper()
	first, second := f.inspect(f.name("first")), f.inspect(f.name("second"))
	if got, want := second.HostConfig.VolumesFrom, []string{first.ID + ":ro"}; !slices.Equal(got, want) {
		f.t.Fatalf("second's VolumesFrom = %v, want %v", got, want)
	}
	var found bool
	for _, m := range second.Mounts {
		if m.Destination != "/data" {
			continue
		}
		found = true
		if m.RW || m.Name != f.project+"_data" {
			f.t.Errorf("second's /data mount = %+v, want volume %s_data read-only", m, f.project)
		}
	}
	if !found {
		f.t.Fatalf("second has no /data mount: %+v", second.Mounts)
	}
	for _, m := range first.Mounts {
		if m.Destination == "/data" && !m.RW {
			f.t.Errorf("first's /data mount is read-only: %+v", m)
		}
	}
	b := f.bundle(strings.ReplaceAll(sharedVolumesYAML, "FIRST_MESSAGE", "x"))
	svc := b.Compose.Project.Services["second"]
	unresolved, err := ServiceHash(svc)
	if err != nil {
		f.t.Fatal(err)
	}
	svc.VolumesFrom = []string{first.ID}
	want, err := ServiceHash(svc)
	if err != nil {
		f.t.Fatal(err)
	}
	if got := second.Config.Labels[LabelConfigHash]; got != want || got == unresolved {
		f.t.Errorf("second's config-hash label %s, want compose's %s (bound to %s)", got, want, first.ID)
	}
	return first.ID
}
