package docker

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/shipwatch/shipwatch/drivers"
)

// addSidecar adds a service "agent" that joins api's network and IPC namespaces, with the
// depends_on entry compose-go adds for them when it loads a file; api's IPC is shareable,
// which the Engine needs to let another container join it. "agent" sorts before "api", so
// only the references order it after api.
func addSidecar(c *manifestsCompose) {
	api := c.Project.Services["api"]
	api.Ipc = "shareable"
	c.Project.Services["api"] = api
	a := types.ServiceConfig{Name: "agent", Restart: "unless-stopped"}
	a.Image = "shop/agent:1"
	a.NetworkMode = "service:api"
	a.Ipc = "service:api"
	a.DependsOn = types.DependsOnConfig{"api": {Condition: types.ServiceConditionStarted, Restart: true, Required: true}}
	c.Project.Services["agent"] = a
}

func TestDesireNamespaceRefs(t *testing.T) {
	c := shopCompose()
	addSidecar(c)
	a := c.Project.Services["agent"]
	a.DependsOn = nil // a project not loaded by compose-go: the reference alone must order it
	a.Pid = "service:web"
	c.Project.Services["agent"] = a
	d := mustDesire(t, c)
	names := serviceNames(d)
	if slices.Index(names, "agent") < slices.Index(names, "web") {
		t.Fatalf("order %v: agent must come after api and web", names)
	}
	// The spec's hash is that of the file as written: `docker compose config --hash`.
	want, err := ServiceHash(c.Project.Services["agent"])
	if err != nil {
		t.Fatal(err)
	}
	spec := specOf(t, d, "agent")
	if spec.ConfigHash != want {
		t.Errorf("config hash %s, want %s", spec.ConfigHash, want)
	}
	if len(spec.Service.Networks) != 0 {
		t.Errorf("networks %v: a service in another's network namespace joins none", spec.Service.Networks)
	}
}

func TestDesireNamespaceRefChecks(t *testing.T) {
	cases := map[string]struct {
		mutate func(s *types.ServiceConfig)
		want   string
	}{
		"unknown network_mode": {func(s *types.ServiceConfig) { s.NetworkMode = "service:cache" }, "network_mode: service:cache: service cache is not in the project"},
		"unknown pid":          {func(s *types.ServiceConfig) { s.Pid = "service:cache" }, "pid: service:cache: service cache is not in the project"},
		"itself":               {func(s *types.ServiceConfig) { s.Ipc = "service:agent" }, "ipc: service:agent: a service cannot share its own namespace"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := shopCompose()
			addSidecar(c)
			a := c.Project.Services["agent"]
			tc.mutate(&a)
			c.Project.Services["agent"] = a
			_, err := Desire(testApp, c, DesireOptions{FilesDir: testFilesDir, SecretKey: testSecretKey})
			if err == nil || !strings.Contains(err.Error(), "service agent: "+tc.want) {
				t.Fatalf("err = %v, want one with %q", err, tc.want)
			}
		})
	}
}

func TestResolveNamespaceRefs(t *testing.T) {
	c := shopCompose()
	addSidecar(c)
	a := c.Project.Services["agent"]
	a.Pid = "service:db"
	a.VolumesFrom = []string{"db:ro"}
	c.Project.Services["agent"] = a
	spec := specOf(t, mustDesire(t, c), "agent")
	containers := map[string][]*ObservedContainer{
		"api": {{ID: "id-api-2", Name: "shop-api-2"}, {ID: "id-api-1", Name: "shop-api-1"}},
		"db":  {{ID: "id-db-1", Name: "shop-db-1"}},
	}
	first := func(svc string) (string, bool) { return firstByName(containers[svc]) }
	res, err := resolveRefs(spec, first)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"network_mode": "container:id-api-1", "ipc": "container:id-api-1", "pid": "container:id-db-1"} {
		if got := res.modes[key]; got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	// compose binds every reference before it hashes (volumes_from without the mode).
	bound := spec.Service
	bound.NetworkMode, bound.Ipc, bound.Pid = "container:id-api-1", "container:id-api-1", "container:id-db-1"
	bound.VolumesFrom = []string{"id-db-1"}
	want, err := ServiceHash(bound)
	if err != nil {
		t.Fatal(err)
	}
	if res.labelHash != want {
		t.Errorf("label hash %s, want %s", res.labelHash, want)
	}

	in := createInput{desired: &Desired{Project: "shop", App: "shop"}, spec: spec, number: 1, name: "shop-agent-1", imageID: "sha256:img", refs: res}
	opts, extra, err := createOptions(in)
	if err != nil {
		t.Fatal(err)
	}
	h := opts.HostConfig
	if h.NetworkMode != "container:id-api-1" || h.IpcMode != "container:id-api-1" || h.PidMode != "container:id-db-1" || len(extra) != 0 || opts.NetworkingConfig != nil {
		t.Errorf("network %q ipc %q pid %q, extra endpoints %v, networking %+v", h.NetworkMode, h.IpcMode, h.PidMode, extra, opts.NetworkingConfig)
	}
	if got := opts.Config.Labels[LabelConfigHash]; got != want {
		t.Errorf("config-hash label %s, want %s", got, want)
	}

	// Never the unbound "service:api", which the Engine would refuse.
	in.refs = resolvedRefs{}
	if _, _, err := createOptions(in); err == nil || !strings.Contains(err.Error(), "not bound") {
		t.Errorf("create options without bound references: err = %v", err)
	}
	delete(containers, "api")
	if _, err := resolveRefs(spec, first); err == nil || !strings.Contains(err.Error(), "network_mode: service api has no container") {
		t.Errorf("err = %v, want one saying api has no container", err)
	}
}

// Plain modes pass through as compose sends them.
func TestCreateOptionsPlainNamespaceModes(t *testing.T) {
	c := shopCompose()
	api := c.Project.Services["api"]
	api.Ipc, api.Pid = "shareable", "host"
	c.Project.Services["api"] = api
	d := mustDesire(t, c)
	spec := specOf(t, d, "api")
	opts, _, err := createOptions(createInput{desired: d, spec: spec, number: 1, name: "shop-api-1", imageID: "sha256:img"})
	if err != nil {
		t.Fatal(err)
	}
	if h := opts.HostConfig; h.IpcMode != "shareable" || h.PidMode != "host" {
		t.Errorf("ipc %q pid %q", h.IpcMode, h.PidMode)
	}
	if got := opts.Config.Labels[LabelConfigHash]; got != spec.ConfigHash {
		t.Errorf("config-hash label %s, want the service's %s", got, spec.ConfigHash)
	}
}

func TestPlanNamespaceCascade(t *testing.T) {
	c := shopCompose()
	addSidecar(c)
	d := mustDesire(t, c)
	cases := map[string]refCase{
		"in sync": {action: drivers.ActionUnchanged},
		"shared container dead and recreated": {live: func(o *Observed) { liveContainer(o, "shop-api-1").State = "dead" },
			action: drivers.ActionRecreate, reasonPart: "network_mode, ipc: service api is recreated"},
		"shared container missing": {live: func(o *Observed) {
			o.Containers = slices.DeleteFunc(o.Containers, func(c ObservedContainer) bool { return c.Name == "shop-api-1" })
		}, action: drivers.ActionRecreate, reasonPart: "ipc, network_mode: the container of service api changed"},
		"shared container only restarted": {live: func(o *Observed) {
			c := liveContainer(o, "shop-api-1")
			c.State, c.ExitCode = "exited", 0
		}, action: drivers.ActionUnchanged},
		"created by compose with the file's hash": {live: func(o *Observed) {
			liveContainer(o, "shop-agent-1").Labels[LabelConfigHash] = specOf(t, d, "agent").ConfigHash
		}, action: drivers.ActionRecreate, reasonPart: "the container of service api changed"},
	}
	runRefCases(t, d, "api", "agent", cases)
}

// refCase is one live state of a project where one service uses another's container.
type refCase struct {
	live       func(o *Observed)
	action     drivers.Action
	reasonPart string
}

// runRefCases plans d against each case's live state and checks the dependent service's
// action and reason, and that a step replacing the parent comes before the dependent's.
func runRefCases(t *testing.T, d *Desired, parent, dependent string, cases map[string]refCase) {
	t.Helper()
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			o := observedFrom(d)
			if tc.live != nil {
				tc.live(o)
			}
			p := BuildPlan(testApp, d, o)
			checkPlanInvariants(t, p)
			got := planChange(t, p, "service/"+dependent)
			if got.Action != tc.action || !strings.Contains(got.Reason, tc.reasonPart) {
				t.Fatalf("service/%s = %s (%s), want %s (…%s…)\n%s", dependent, got.Action, got.Reason, tc.action, tc.reasonPart, golden(p))
			}
			steps := p.Payload.(*Payload).Steps
			at := func(name string) int {
				return slices.IndexFunc(steps, func(s Step) bool { return s.Service != nil && s.Service.Name == name })
			}
			if pi, di := at(parent), at(dependent); pi >= 0 && di >= 0 && di < pi {
				t.Errorf("%s is replaced before %s:\n%s", dependent, parent, StepsText(p))
			}
		})
	}
}

// The loader's value rules have a twin here for projects built in code.
func TestDesireRefusesContainerNamespace(t *testing.T) {
	c := shopCompose()
	api := c.Project.Services["api"]
	api.Pid = "container:legacy"
	c.Project.Services["api"] = api
	if _, err := Desire(testApp, c, DesireOptions{FilesDir: testFilesDir}); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "pid") {
		t.Fatalf("err = %v, want ErrUnsupported naming pid", err)
	}
}

// The Engine refuses these on a container in another's network namespace; plan time says so.
func TestDesireRefusesKeysOnSharedNetwork(t *testing.T) {
	c := shopCompose()
	addSidecar(c)
	a := c.Project.Services["agent"]
	a.Ports = []types.ServicePortConfig{{Target: 8080, Published: "8081"}}
	a.Hostname = "agent"
	c.Project.Services["agent"] = a
	_, err := Desire(testApp, c, DesireOptions{FilesDir: testFilesDir})
	if !errors.Is(err, drivers.ErrInvalidSpec) || !strings.Contains(err.Error(), "ports, hostname") ||
		!strings.Contains(err.Error(), "service agent") {
		t.Fatalf("err = %v, want ErrInvalidSpec naming service agent and ports, hostname", err)
	}
	a.Ports, a.Hostname = nil, ""
	c.Project.Services["agent"] = a
	if _, err := Desire(testApp, c, DesireOptions{FilesDir: testFilesDir}); err != nil {
		t.Fatalf("without the conflicting keys: %v", err)
	}
}
