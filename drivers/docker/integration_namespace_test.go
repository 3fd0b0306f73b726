package docker

import (
	"strings"
	"testing"

	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers"
)

// second serves on another port than first (they share one network namespace) and its
// healthcheck probes first's server on 127.0.0.1:8080, which it reaches only from inside
// first's network namespace. first's IPC must be shareable for the Engine to let second
// join it (the Engine's default is private).
const sharedNamespacesYAML = `
services:
  first:
    image: IMAGE
    environment:
      MESSAGE: FIRST_MESSAGE
    ipc: shareable
  second:
    image: IMAGE
    command: ["-addr", ":8081"]
    network_mode: service:first
    ipc: service:first
    pid: service:first
    healthcheck:
      test: ["CMD", "/app", "-healthcheck", "-addr", ":8080"]
      interval: 1s
      timeout: 2s
      retries: 5
`

// TestSharedNamespacesOnEngine: the second service joins the first's network, IPC and PID
// namespaces through "container:<first's ID>", carries compose's ID-bound config hash, and
// is replaced whenever the first container is, so it never stays in a removed container's
// namespaces.
func TestSharedNamespacesOnEngine(t *testing.T) {
	f := newFixture(t)
	v1 := f.bundle(strings.ReplaceAll(sharedNamespacesYAML, "FIRST_MESSAGE", "one"))
	f.apply(f.plan(v1), drivers.ApplyOptions{Prune: true})
	firstID := f.checkNamespaces()
	waitHealthy(t, f)
	if p, err := f.freshDriver().Plan(t.Context(), f.app, v1); err != nil || !p.InSync() {
		t.Fatalf("plan after deploy, every container inspected: %v\n%v", err, p)
	}

	// A change to the first service recreates it, and the second after it.
	v2 := f.bundle(strings.ReplaceAll(sharedNamespacesYAML, "FIRST_MESSAGE", "two"))
	p := f.plan(v2)
	if c := changeOf(p.Changes, "service/second"); c.Action != drivers.ActionRecreate || c.Reason != "network_mode, ipc, pid: service first is recreated" {
		t.Fatalf("service/second = %s (%s), want a recreate because first is\n%s", c.Action, c.Reason, p)
	}
	secondID := f.containers()[f.name("second")].ID
	f.apply(p, drivers.ApplyOptions{Prune: true})
	if id := f.checkNamespaces(); id == firstID {
		t.Fatal("first was not recreated")
	}
	if f.containers()[f.name("second")].ID == secondID {
		t.Fatal("second still runs in the removed first container's namespaces")
	}
	waitHealthy(t, f)
	if p := f.plan(v2); !p.InSync() {
		t.Fatalf("not in sync after the recreate:\n%s", p)
	}

	// The first container removed by hand: healing creates it and then replaces the second.
	if _, err := f.cli.ContainerRemove(t.Context(), f.name("first"), client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	p = f.plan(v2)
	if c := changeOf(p.Changes, "service/second"); c.Action != drivers.ActionRecreate || !strings.Contains(c.Reason, "ipc, network_mode, pid: the container of service first changed") {
		t.Fatalf("service/second = %s (%s)\n%s", c.Action, c.Reason, p)
	}
	f.apply(p, drivers.ApplyOptions{Prune: true})
	f.checkNamespaces()
	waitHealthy(t, f)
	if p, err := f.freshDriver().Plan(t.Context(), f.app, v2); err != nil || !p.InSync() {
		t.Fatalf("plan after healing, every container inspected: %v\n%v", err, p)
	}
}

// checkNamespaces inspects the second container and returns the first's ID: the network,
// IPC and PID modes name the first container by ID, the second joined no network of its
// own, and its config-hash label is compose's (references bound to the ID).
func (f *fixture) checkNamespaces() string {
	f.t.Helper()
	first, second := f.inspect(f.name("first")), f.inspect(f.name("second"))
	want := "container:" + first.ID
	h := second.HostConfig
	if string(h.NetworkMode) != want || string(h.IpcMode) != want || string(h.PidMode) != want {
		f.t.Fatalf("second's network %q ipc %q pid %q, want all %q", h.NetworkMode, h.IpcMode, h.PidMode, want)
	}
	if n := len(second.NetworkSettings.Networks); n != 0 {
		f.t.Errorf("second is attached to %d networks, want none: it lives in first's namespace", n)
	}
	if got := string(first.HostConfig.IpcMode); got != "shareable" {
		f.t.Errorf("first's ipc %q, want shareable", got)
	}
	b := f.bundle(strings.ReplaceAll(sharedNamespacesYAML, "FIRST_MESSAGE", "x"))
	svc := b.Compose.Project.Services["second"]
	unresolved, err := ServiceHash(svc)
	if err != nil {
		f.t.Fatal(err)
	}
	svc.NetworkMode, svc.Ipc, svc.Pid = want, want, want
	bound, err := ServiceHash(svc)
	if err != nil {
		f.t.Fatal(err)
	}
	if got := second.Config.Labels[LabelConfigHash]; got != bound || got == unresolved {
		f.t.Errorf("second's config-hash label %s, want compose's %s (bound to %s)", got, bound, first.ID)
	}
	return first.ID
}
