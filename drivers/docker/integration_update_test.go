package docker

import (
	"context"
	"strings"
	"testing"
	"time"

	ctr "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers"
)

const updatedServices = `
services:
  limited:
    image: IMAGE
    mem_limit: 64m
    restart: unless-stopped
  free:
    image: IMAGE
  hand:
    image: IMAGE
`

// TestDockerUpdateIsDriftHealedInPlace changes containers the way `docker update` does,
// through the Engine API, and checks the Watch marks them, the Plan names what changed and
// Apply heals it keeping the containers, except where the Engine cannot unset a limit.
func TestDockerUpdateIsDriftHealedInPlace(t *testing.T) {
	f := newFixture(t)
	b := f.bundle(updatedServices)
	f.apply(f.plan(b), drivers.ApplyOptions{Prune: true})
	before := f.containers()

	// A fresh deploy never shows as drifted, even when every container is inspected.
	fresh := f.freshDriver()
	f.calls.reset()
	if p, err := fresh.Plan(t.Context(), f.app, b); err != nil || !p.InSync() {
		t.Fatalf("fresh driver's first plan of a fresh deploy: %v\n%v", err, p)
	}
	if r := f.calls.reads.Load(); r != 3+3 {
		t.Errorf("first plan of a fresh driver made %d reads, want 3 + 3 inspects", r)
	}
	f.calls.reset()
	if p, err := fresh.Plan(t.Context(), f.app, b); err != nil || !p.InSync() {
		t.Fatalf("second plan: %v\n%v", err, p)
	}
	if r := f.calls.reads.Load(); r != 3 {
		t.Errorf("no-op plan after the first made %d reads, want 3 (no inspect)", r)
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	events, err := f.drv.Watch(ctx, f.app)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // let the subscriptions reach the Engine and settle
	f.calls.reset()
	f.plan(b)
	if r := f.calls.reads.Load(); r != 3+3 {
		t.Errorf("plan after the event stream came up made %d reads, want 3 + 3 inspects (updates may have been missed)", r)
	}

	always := &ctr.RestartPolicy{Name: ctr.RestartPolicyAlways}
	pids := int64(50)
	f.dockerUpdate("limited", client.ContainerUpdateOptions{RestartPolicy: always,
		Resources: &ctr.Resources{Memory: 128 << 20, MemorySwap: 256 << 20}})
	f.dockerUpdate("free", client.ContainerUpdateOptions{RestartPolicy: always, Resources: &ctr.Resources{PidsLimit: &pids}})
	f.dockerUpdate("hand", client.ContainerUpdateOptions{Resources: &ctr.Resources{Memory: 32 << 20, MemorySwap: 64 << 20}})
	waitUpdates(t, events, "limited", "free", "hand")

	f.calls.reset()
	p := f.plan(b)
	if r := f.calls.reads.Load(); r != 3+3 {
		t.Errorf("plan after three updates made %d reads, want 3 + 3 inspects", r)
	}
	for ref, want := range map[string]string{
		"service/limited": "update: changed outside Git: memory 128MiB -> 64MiB, restart always -> unless-stopped",
		"service/free":    "update: changed outside Git: pids limit 50 -> unlimited, restart always -> no",
		"service/hand":    "recreate: changed outside Git: memory 32MiB -> unlimited (docker update cannot unset memory)",
	} {
		if c := changeOf(p.Changes, ref); string(c.Action)+": "+c.Reason != want {
			t.Errorf("%s = %s: %s, want %s", ref, c.Action, c.Reason, want)
		}
	}
	// Held (drift: alert): no apply, no new event; the drift must stay in the next plans.
	for range 2 {
		if again := f.plan(b); len(again.Changes.Changed()) != 3 {
			t.Fatalf("a later plan of unhealed docker updates shows %d changes, want 3:\n%s", len(again.Changes.Changed()), again)
		}
	}
	p = f.plan(b)
	f.apply(p, drivers.ApplyOptions{Prune: true})

	after := f.containers()
	for _, svc := range []string{"limited", "free"} {
		if after[f.name(svc)].ID != before[f.name(svc)].ID {
			t.Errorf("%s was recreated to heal a docker update", svc)
		}
	}
	if after[f.name("hand")].ID == before[f.name("hand")].ID {
		t.Error("hand still has the memory limit set by hand: it must be recreated")
	}
	f.checkRuntime("limited", RuntimeSettings{Memory: 64 << 20, RestartPolicy: "unless-stopped"})
	f.checkRuntime("free", RuntimeSettings{RestartPolicy: "no"})
	f.checkRuntime("hand", RuntimeSettings{RestartPolicy: "no"})
	if p, err := f.freshDriver().Plan(t.Context(), f.app, b); err != nil || !p.InSync() {
		t.Fatalf("plan after healing, every container inspected: %v\n%v", err, p)
	}
}

// freshDriver is a second driver on the same Engine: a restarted daemon, `shipwatch diff`.
func (f *fixture) freshDriver() *Driver {
	f.t.Helper()
	d, err := New(Options{Client: f.cli, FilesDir: f.t.TempDir()})
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

func (f *fixture) dockerUpdate(service string, opts client.ContainerUpdateOptions) {
	f.t.Helper()
	if _, err := f.cli.ContainerUpdate(f.t.Context(), f.name(service), opts); err != nil {
		f.t.Fatalf("docker update %s: %v", service, err)
	}
}

// checkRuntime compares what the Engine reports for a service's container with want,
// normalised the way the planner compares.
func (f *fixture) checkRuntime(service string, want RuntimeSettings) {
	f.t.Helper()
	res, err := f.cli.ContainerInspect(f.t.Context(), f.name(service), client.ContainerInspectOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	live := runtimeFromHostConfig(res.Container.HostConfig)
	if d := compareRuntime(want, *live); len(d.Changes) > 0 {
		f.t.Errorf("%s after heal: %s", service, strings.Join(d.Changes, ", "))
	}
	if want.Memory > 0 && live.MemorySwap != 2*want.Memory {
		f.t.Errorf("%s: swap %d, want twice the memory as at create", service, live.MemorySwap)
	}
}

func waitUpdates(t *testing.T, events <-chan drivers.Event, services ...string) {
	t.Helper()
	missing := map[string]bool{}
	for _, s := range services {
		missing["service/"+s] = true
	}
	timeout := time.After(10 * time.Second)
	for len(missing) > 0 {
		select {
		case e := <-events:
			if e.Reason == "update" {
				delete(missing, e.Ref.String())
			}
		case <-timeout:
			t.Fatalf("no update event within 10s for %v", missing)
		}
	}
}
