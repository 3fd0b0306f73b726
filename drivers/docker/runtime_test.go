package docker

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	ctr "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// engineRuntime is what Engine 20.10 reports in inspect for a container just created from
// s: swap derived as twice the memory, CPU shares 0, no pids limit when none was asked.
func engineRuntime(t *testing.T, s types.ServiceConfig) *RuntimeSettings {
	t.Helper()
	opts, _, err := createOptions(createInput{desired: &Desired{Project: "p"}, spec: &ServiceSpec{Name: s.Name, Service: s}, number: 1, name: "p-x-1"})
	if err != nil {
		t.Fatal(err)
	}
	hc := *opts.HostConfig
	if hc.Memory > 0 && hc.MemorySwap == 0 {
		hc.MemorySwap = 2 * hc.Memory
	}
	return runtimeFromHostConfig(&hc)
}

func limited(mem int64, restart string) types.ServiceConfig {
	return types.ServiceConfig{Name: "x", Restart: restart, ContainerSpec: types.ContainerSpec{MemLimit: types.UnitBytes(mem)}}
}

func TestFreshContainerHasNoRuntimeDrift(t *testing.T) {
	deploy := &types.DeployConfig{Resources: types.Resources{
		Limits:       &types.Resource{MemoryBytes: 256 << 20, NanoCPUs: 0.3, Pids: 20},
		Reservations: &types.Resource{MemoryBytes: 32 << 20, NanoCPUs: 0.25},
	}}
	services := map[string]types.ServiceConfig{
		"plain":           {Name: "x"},
		"memory":          limited(512<<20, "always"),
		"on-failure":      {Name: "x", Restart: "on-failure:3"},
		"deploy":          {Name: "x", Restart: "unless-stopped", Deploy: deploy},
		"service level":   {Name: "x", ContainerSpec: types.ContainerSpec{MemReservation: 64 << 20, CPUS: 1.5, PidsLimit: 100}},
		"unlimited pids":  {Name: "x", ContainerSpec: types.ContainerSpec{PidsLimit: -1}},
		"restart no":      {Name: "x", Restart: "no"},
		"odd memory size": limited(100_000_000, ""),
	}
	for name, s := range services {
		t.Run(name, func(t *testing.T) {
			want, err := desiredRuntime(s)
			if err != nil {
				t.Fatal(err)
			}
			if d := compareRuntime(want, *engineRuntime(t, s)); len(d.Changes) > 0 {
				t.Fatalf("fresh container drifted: %v", d.Changes)
			}
		})
	}
}

// TestRuntimeNormalisation covers the Engine's several spellings of "not set".
func TestRuntimeNormalisation(t *testing.T) {
	zero, minus := int64(0), int64(-1)
	want, err := desiredRuntime(types.ServiceConfig{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	for name, live := range map[string]RuntimeSettings{
		"pids 0":                 {PidsLimit: &zero, RestartPolicy: "no"},
		"pids -1":                {PidsLimit: &minus, RestartPolicy: "no"},
		"reservation -1":         {MemoryReservation: -1, RestartPolicy: "no"},
		"shares 1024":            {CPUShares: 1024, RestartPolicy: "no"},
		"restart empty":          {},
		"retry count without on": {RestartPolicy: "always", MaximumRetryCount: 5},
		"swap set by hand":       {MemorySwap: 1 << 30, RestartPolicy: "no"},
	} {
		if name == "retry count without on" {
			want.RestartPolicy = "always"
		} else {
			want.RestartPolicy = "no"
		}
		if d := compareRuntime(want, live); len(d.Changes) > 0 {
			t.Errorf("%s: drifted: %v", name, d.Changes)
		}
	}
}

func TestCompareRuntime(t *testing.T) {
	pids := func(n int64) *int64 { return &n }
	cases := []struct {
		name       string
		want       types.ServiceConfig
		live       RuntimeSettings
		reason     string
		unsettable string
		check      func(t *testing.T, d runtimeDrift)
	}{
		{name: "memory raised", want: limited(512<<20, ""),
			live:   RuntimeSettings{Memory: 1 << 30, MemorySwap: 2 << 30, RestartPolicy: "no"},
			reason: "memory 1GiB -> 512MiB",
			check: func(t *testing.T, d runtimeDrift) {
				r := d.Update.Resources
				if r == nil || r.Memory != 512<<20 || r.MemorySwap != 1<<30 || d.Update.RestartPolicy != nil {
					t.Fatalf("update = %+v", d.Update)
				}
			}},
		{name: "every field, fixed order", want: types.ServiceConfig{Name: "x", Restart: "always",
			ContainerSpec: types.ContainerSpec{MemLimit: 1536 << 20, MemReservation: 64 << 20, CPUS: 0.5, PidsLimit: 50}},
			live: RuntimeSettings{Memory: 256 << 20, MemoryReservation: 1000, NanoCPUs: 2e9, CPUShares: 512,
				CpusetCpus: "0", PidsLimit: pids(100), RestartPolicy: "on-failure", MaximumRetryCount: 3},
			reason: "memory 256MiB -> 1.5GiB, memory reservation 1000B -> 64MiB, cpus 2 -> 0.5, " +
				"cpu shares 512 -> default, cpuset 0 -> all, pids limit 100 -> 50, restart on-failure:3 -> always",
			unsettable: "cpuset"},
		{name: "limit added to unlimited service", want: types.ServiceConfig{Name: "x"},
			live:       RuntimeSettings{Memory: 512 << 20, MemorySwap: 1 << 30, NanoCPUs: 1e9, RestartPolicy: "no"},
			reason:     "memory 512MiB -> unlimited, cpus 1 -> unlimited",
			unsettable: "memory, cpus"},
		{name: "limits removed from a pids and reservation", want: types.ServiceConfig{Name: "x"},
			live:   RuntimeSettings{MemoryReservation: 64 << 20, PidsLimit: pids(10), CPUShares: 2048, RestartPolicy: "no"},
			reason: "memory reservation 64MiB -> none, cpu shares 2048 -> default, pids limit 10 -> unlimited",
			check: func(t *testing.T, d runtimeDrift) {
				r := d.Update.Resources
				if r.MemoryReservation != -1 || r.PidsLimit == nil || *r.PidsLimit != -1 || r.CPUShares != 1024 || r.Memory != 0 || r.NanoCPUs != 0 {
					t.Fatalf("update = %+v", r)
				}
			}},
		{name: "restart only", want: limited(0, "no"), live: RuntimeSettings{RestartPolicy: "always"},
			reason: "restart always -> no",
			check: func(t *testing.T, d runtimeDrift) {
				if d.Update.Resources != nil || d.Update.RestartPolicy == nil || d.Update.RestartPolicy.Name != ctr.RestartPolicyDisabled {
					t.Fatalf("update = %+v", d.Update)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want, err := desiredRuntime(tc.want)
			if err != nil {
				t.Fatal(err)
			}
			d := compareRuntime(want, tc.live)
			if got := strings.Join(d.Changes, ", "); got != tc.reason {
				t.Fatalf("changes = %q, want %q", got, tc.reason)
			}
			if got := strings.Join(d.Unsettable, ", "); got != tc.unsettable {
				t.Fatalf("unsettable = %q, want %q", got, tc.unsettable)
			}
			if tc.check != nil {
				tc.check(t, d)
			}
		})
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{
		0: "unlimited", 1: "1B", 1023: "1023B", 1024: "1KiB", 6 << 20: "6MiB", 1536 << 20: "1.5GiB",
		100_000_000: "95.37MiB", 1 << 40: "1TiB", 3 << 50: "3072TiB",
	} {
		if got := formatBytes(n, "unlimited"); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestPlanInspectedFreshIsInSync(t *testing.T) {
	for _, mutate := range []func(c *manifestsCompose){nil, apiMemory(512 << 20), replicas("api", 3)} {
		c := shopCompose()
		if mutate != nil {
			mutate(c)
		}
		d := mustDesire(t, c)
		p := BuildPlan(testApp, d, inspected(mutate, nil)(t))
		if !p.InSync() {
			t.Fatalf("freshly created, inspected containers plan as drifted:\n%s", golden(p))
		}
	}
}

func TestPlanRuntimeDriftOfOneReplicaNamesIt(t *testing.T) {
	o := inspected(replicas("api", 2), func(o *Observed) { liveContainer(o, "shop-api-2").Runtime.RestartPolicy = "no" })(t)
	p := BuildPlan(testApp, mustDesire(t, func() *manifestsCompose { c := shopCompose(); replicas("api", 2)(c); return c }()), o)
	checkPlanInvariants(t, p)
	got := planChange(t, p, "service/api")
	if got.Action != "update" || got.Reason != "shop-api-2 changed outside Git: restart no -> always" {
		t.Fatalf("service/api = %s (%s)", got.Action, got.Reason)
	}
}

// inspectCounter is an engine with two running containers that counts inspects, and
// fails the list call on demand.
type inspectCounter struct {
	engine
	inspected []string
	failList  bool
}

func (e *inspectCounter) ContainerList(context.Context, client.ContainerListOptions) (client.ContainerListResult, error) {
	if e.failList {
		return client.ContainerListResult{}, errors.New("engine down")
	}
	var items []ctr.Summary
	for _, id := range []string{"c1", "c2"} {
		items = append(items, ctr.Summary{ID: id, Names: []string{"/p-web-" + id}, State: ctr.StateRunning,
			Labels: map[string]string{LabelDesired: `{"restart":"always"}`}})
	}
	return client.ContainerListResult{Items: items}, nil
}

func (e *inspectCounter) ContainerInspect(_ context.Context, id string, _ client.ContainerInspectOptions) (client.ContainerInspectResult, error) {
	e.inspected = append(e.inspected, id)
	var res client.ContainerInspectResult
	res.Container.HostConfig = &ctr.HostConfig{RestartPolicy: ctr.RestartPolicy{Name: ctr.RestartPolicyAlways}}
	return res, nil
}

func (e *inspectCounter) NetworkList(context.Context, client.NetworkListOptions) (client.NetworkListResult, error) {
	return client.NetworkListResult{}, nil
}

func (e *inspectCounter) VolumeList(context.Context, client.VolumeListOptions) (client.VolumeListResult, error) {
	return client.VolumeListResult{}, nil
}

func TestRuntimeInspections(t *testing.T) {
	e := &inspectCounter{}
	d := &Driver{api: e, log: slog.New(slog.DiscardHandler)}
	observe := func(want ...string) {
		t.Helper()
		e.inspected = nil
		o, err := d.observe(t.Context(), "a", "p", nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(e.inspected, want) {
			t.Fatalf("inspected %v, want %v", e.inspected, want)
		}
		for _, c := range o.Containers {
			if (c.Runtime != nil) != slices.Contains(want, c.ID) {
				t.Fatalf("%s: runtime read = %v", c.ID, c.Runtime != nil)
			}
		}
	}
	observe("c1", "c2") // the first plan reads everything
	observe()           // then nothing
	d.markUpdated("a", "c2")
	d.markUpdated("other-app", "c1")
	observe("c2")
	observe() // marks are cleared once read

	d.markUpdated("a", "c1")
	e.failList = true
	if _, err := d.observe(t.Context(), "a", "p", nil); err == nil {
		t.Fatal("observe with a failing list succeeded")
	}
	e.failList = false
	observe("c1") // a failed plan keeps the marks

	d.forgetRuntime("a") // the event stream broke
	observe("c1", "c2")
}

// A restart policy turned off by hand must not make a stopped service look completed.
func TestPlanRestartTurnedOffByHandOnStoppedService(t *testing.T) {
	o := inspected(nil, func(o *Observed) {
		c := liveContainer(o, "shop-web-1")
		c.State, c.ExitCode, c.Runtime.RestartPolicy = "exited", 0, "no"
	})(t)
	p := BuildPlan(testApp, baseDesired(t), o)
	checkPlanInvariants(t, p)
	got := planChange(t, p, "service/web")
	want := "changed outside Git: restart no -> unless-stopped; start shop-web-1: exited with code 0, restart unless-stopped"
	if got.Action != "update" || got.Reason != want {
		t.Fatalf("service/web = %s (%s)", got.Action, got.Reason)
	}
	if steps := StepsText(p); !strings.Contains(steps, "1. update-container   shop-web-1") || !strings.Contains(steps, "2. start-container") {
		t.Fatalf("steps:\n%s", steps)
	}
}
