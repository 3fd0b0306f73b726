package docker

import (
	"cmp"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/manifests"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/plans")

// observedFrom is the live state Apply would leave behind for d: every network, volume and
// replica present, labelled as ours, containers running. A plan of d against it is a no-op.
func observedFrom(d *Desired) *Observed {
	o := &Observed{}
	for _, n := range d.Networks {
		if n.Config.External {
			continue
		}
		o.Networks = append(o.Networks, ObservedNetwork{ID: "net-" + n.Key, Name: n.Name, Labels: map[string]string{
			LabelProject: d.Project, LabelNetwork: n.Key, LabelConfigHash: n.Hash, LabelApp: d.App,
		}})
	}
	for _, v := range d.Volumes {
		if v.Config.External {
			continue
		}
		o.Volumes = append(o.Volumes, ObservedVolume{Name: v.Name, Labels: map[string]string{
			LabelProject: d.Project, LabelVolume: v.Key, LabelConfigHash: v.Hash, LabelApp: d.App,
		}})
	}
	for _, s := range d.Services {
		for n := 1; n <= s.Replicas; n++ {
			name := fmt.Sprintf("%s-%s-%d", d.Project, s.Name, n)
			o.Containers = append(o.Containers, ObservedContainer{
				ID: "id-" + name, Name: name, State: "running", RestartPolicy: cmp.Or(s.Service.Restart, "no"),
				Labels: map[string]string{
					LabelProject: d.Project, LabelService: s.Name, LabelNumber: strconv.Itoa(n),
					LabelConfigHash: s.ConfigHash, LabelSpecHash: s.SpecHash,
					LabelDesired: string(s.Canonical), LabelApp: d.App, LabelRevision: d.Revision,
					LabelDependsOn: dependsOnValue(s.Service.DependsOn),
				},
			})
			if s.Build != nil {
				o.Containers[len(o.Containers)-1].Labels[LabelBuildDigest] = s.Build.Digest
			}
		}
	}
	setRefLabels(d, o)
	attach(d, o)
	for _, b := range desiredBuilds(d) {
		o.Images = append(o.Images, ObservedImage{ID: "sha256:img-" + b.Image, Tags: []string{normalTag(b.Image)},
			Labels: map[string]string{LabelBuildDigest: b.Digest, LabelApp: d.App}})
	}
	return o
}

// attach records, as the container list reports them, the attachments of every container
// to the networks of its service.
func attach(d *Desired, o *Observed) {
	for i := range o.Networks {
		n := &o.Networks[i]
		for _, c := range o.Containers {
			for _, s := range d.Services {
				if s.Name != c.Labels[LabelService] || s.Service.NetworkMode != "" {
					continue
				}
				if _, ok := s.Service.Networks[n.Labels[LabelNetwork]]; ok {
					n.Containers = append(n.Containers, c.Name)
				}
			}
		}
	}
}

// dependsOnValue is compose's depends_on label: service:condition:restart, comma-separated.
func dependsOnValue(deps types.DependsOnConfig) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(deps)) {
		parts = append(parts, fmt.Sprintf("%s:%s:%t", name, deps[name].Condition, deps[name].Restart))
	}
	return strings.Join(parts, ",")
}

func liveContainer(o *Observed, name string) *ObservedContainer {
	for i := range o.Containers {
		if o.Containers[i].Name == name {
			return &o.Containers[i]
		}
	}
	panic("no container " + name)
}

type manifestsCompose = manifests.Compose

// planCase builds the observed state from one compose fixture and the desired state from
// another (or the same), so each case states only what differs.
type planCase struct {
	name string
	// live shapes the compose the observed state is derived from; nil = no observed state.
	live func(t *testing.T) *Observed
	// want shapes the desired compose; nil desired means the empty bundle.
	want func(t *testing.T) *Desired
}

func baseDesired(t *testing.T) *Desired { return mustDesire(t, shopCompose()) }

func baseObserved(t *testing.T) *Observed { return observedFrom(baseDesired(t)) }

func desiredWith(mutate func(c *manifestsCompose)) func(t *testing.T) *Desired {
	return func(t *testing.T) *Desired {
		c := shopCompose()
		mutate(c)
		return mustDesire(t, c)
	}
}

func observedWith(mutate func(c *manifestsCompose), live func(o *Observed)) func(t *testing.T) *Observed {
	return func(t *testing.T) *Observed {
		c := shopCompose()
		if mutate != nil {
			mutate(c)
		}
		o := observedFrom(mustDesire(t, c))
		if live != nil {
			live(o)
		}
		return o
	}
}

// replicas scales a service. Its host ports become random ones: replicas cannot share a
// fixed host port (Desire refuses that, as the Engine would).
func replicas(name string, n int) func(c *manifestsCompose) {
	return func(c *manifestsCompose) {
		s := c.Project.Services[name]
		s.Deploy = &types.DeployConfig{Replicas: ptr(n)}
		for i := range s.Ports {
			s.Ports[i].Published = ""
		}
		c.Project.Services[name] = s
	}
}

func planCases() []planCase {
	return append([]planCase{
		{name: "first-deploy", live: func(*testing.T) *Observed { return nil }, want: baseDesired},
		{name: "noop", live: baseObserved, want: baseDesired},
		{name: "service-changed", live: baseObserved, want: desiredWith(func(c *manifestsCompose) {
			s := c.Project.Services["api"]
			s.Image = "shop/api:1.1"
			c.Project.Services["api"] = s
		})},
		{name: "service-removed", live: baseObserved, want: desiredWith(func(c *manifestsCompose) {
			delete(c.Project.Services, "web")
		})},
		{name: "replicas-2-to-3", live: observedWith(replicas("api", 2), nil), want: desiredWith(replicas("api", 3))},
		{name: "replicas-3-to-1", live: observedWith(replicas("api", 3), nil), want: desiredWith(replicas("api", 1))},
		{name: "stopped-unless-stopped", live: observedWith(nil, func(o *Observed) {
			c := liveContainer(o, "shop-web-1")
			c.State, c.ExitCode = "exited", 0
		}), want: baseDesired},
		{name: "one-shot-exited-0", live: observedWith(addMigrate, func(o *Observed) {
			c := liveContainer(o, "shop-migrate-1")
			c.State, c.ExitCode = "exited", 0
		}), want: desiredWith(addMigrate)},
		{name: "env-file-changed", live: baseObserved, want: desiredWith(func(c *manifestsCompose) {
			// env_file values are resolved into environment by the loader: a changed
			// shared.env line reaches exactly the services that load it (api here).
			s := c.Project.Services["api"]
			s.Environment = cloneEnv(s.Environment)
			s.Environment["LOG_LEVEL"] = ptr("debug")
			c.Project.Services["api"] = s
		})},
		{name: "bind-file-changed", live: baseObserved, want: desiredWith(func(c *manifestsCompose) {
			c.Files["api"][0].Digest = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
		})},
		{name: "foreign-container", live: observedWith(replicas("web", 1), func(o *Observed) {
			o.Containers = append(o.Containers, ObservedContainer{
				ID: "id-adminer", Name: "shop-adminer-1", State: "running",
				Labels: map[string]string{LabelProject: "shop", LabelService: "adminer", LabelNumber: "1"},
			}, ObservedContainer{
				// Started by hand with `docker compose up --scale web=2`: number 2 is taken.
				ID: "id-web-2", Name: "shop-web-2", State: "running",
				Labels: map[string]string{LabelProject: "shop", LabelService: "web", LabelNumber: "2"},
			})
		}), want: desiredWith(replicas("web", 2))},
		{name: "network-changed", live: baseObserved, want: desiredWith(func(c *manifestsCompose) {
			c.Project.Networks["backend"] = types.NetworkConfig{Internal: true}
		})},
		{name: "empty-desired", live: baseObserved, want: func(t *testing.T) *Desired { return mustDesire(t, nil) }},
		{name: "memory-limit-added", live: baseObserved, want: desiredWith(func(c *manifestsCompose) {
			s := c.Project.Services["api"]
			s.Deploy = &types.DeployConfig{Resources: types.Resources{Limits: &types.Resource{MemoryBytes: 256 << 20}}}
			c.Project.Services["api"] = s
		})},
		{name: "memory-changed-by-hand", live: inspected(apiMemory(512<<20), func(o *Observed) {
			rt := liveContainer(o, "shop-api-1").Runtime
			rt.Memory, rt.MemorySwap = 1<<30, 2<<30 // docker update --memory 1g --memory-swap 2g
		}), want: desiredWith(apiMemory(512 << 20))},
		{name: "restart-changed-by-hand", live: inspected(nil, func(o *Observed) {
			liveContainer(o, "shop-web-1").Runtime.RestartPolicy = "always" // docker update --restart always
			liveContainer(o, "shop-db-1").Runtime.PidsLimit = ptr(int64(100))
		}), want: baseDesired},
		{name: "memory-limit-set-by-hand", live: inspected(nil, func(o *Observed) {
			rt := liveContainer(o, "shop-db-1").Runtime
			rt.Memory, rt.MemorySwap = 256<<20, 512<<20
		}), want: baseDesired},
		{name: "build-first-deploy", live: func(*testing.T) *Observed { return nil }, want: desiredWith(addBuilt)},
		{name: "build-unchanged-new-revision", live: observedWith(addBuilt, func(o *Observed) {
			for i := range o.Containers {
				o.Containers[i].Labels[LabelRevision] = "fedcba987654"
			}
		}), want: desiredWith(addBuilt)},
		{name: "build-context-changed", live: observedWith(addBuilt, nil), want: desiredWith(func(c *manifestsCompose) {
			addBuilt(c)
			b := c.Builds["worker"]
			b.Digest = "sha256:5555555555555555555555555555555555555555555555555555555555555555"
			c.Builds["worker"] = b
		})},
		{name: "volumes-from-first-deploy", live: func(*testing.T) *Observed { return nil }, want: desiredWith(addBackup)},
		{name: "volumes-from-noop", live: observedWith(addBackup, nil), want: desiredWith(addBackup)},
		{name: "volumes-from-parent-recreated", live: observedWith(addBackup, nil), want: desiredWith(func(c *manifestsCompose) {
			addBackup(c)
			db := c.Project.Services["db"]
			db.Image = "postgres:16.1"
			c.Project.Services["db"] = db
		})},
		{name: "volumes-from-parent-replaced-outside", live: observedWith(addBackup, func(o *Observed) {
			// db-1 was removed by hand and started again by a later pass: a new ID.
			liveContainer(o, "shop-db-1").ID = "id-shop-db-1-new"
		}), want: desiredWith(addBackup)},
		{name: "namespace-first-deploy", live: func(*testing.T) *Observed { return nil }, want: desiredWith(addSidecar)},
		{name: "namespace-noop", live: observedWith(addSidecar, nil), want: desiredWith(addSidecar)},
		{name: "namespace-parent-recreated", live: observedWith(addSidecar, nil), want: desiredWith(func(c *manifestsCompose) {
			addSidecar(c)
			api := c.Project.Services["api"]
			api.Image = "shop/api:2"
			c.Project.Services["api"] = api
		})},
		{name: "namespace-parent-replaced-outside", live: observedWith(addSidecar, func(o *Observed) {
			liveContainer(o, "shop-api-1").ID = "id-shop-api-1-new"
		}), want: desiredWith(addSidecar)},
		{name: "secret-file-changed", live: observedWith(addDBSecret, nil), want: desiredWith(func(c *manifestsCompose) {
			addDBSecret(c)
			rotateDBSecret(c)
		})},
	}, leftoverPlanCases()...)
}

// apiMemory gives api a memory limit through deploy.resources.
func apiMemory(bytes int64) func(c *manifestsCompose) {
	return func(c *manifestsCompose) {
		s := c.Project.Services["api"]
		s.Deploy = &types.DeployConfig{Resources: types.Resources{Limits: &types.Resource{MemoryBytes: types.UnitBytes(bytes)}}}
		c.Project.Services["api"] = s
	}
}

// inspected is observedWith where every container was inspected, with the runtime settings
// the Engine reports for a fresh container, before live changes them by hand.
func inspected(mutate func(c *manifestsCompose), live func(o *Observed)) func(t *testing.T) *Observed {
	return func(t *testing.T) *Observed {
		c := shopCompose()
		if mutate != nil {
			mutate(c)
		}
		d := mustDesire(t, c)
		o := observedFrom(d)
		for i := range o.Containers {
			svc := o.Containers[i].Labels[LabelService]
			o.Containers[i].Runtime = engineRuntime(t, d.Services[slices.IndexFunc(d.Services, func(s ServiceSpec) bool { return s.Name == svc })].Service)
		}
		if live != nil {
			live(o)
		}
		return o
	}
}

// addBuilt adds two services built from the repository: worker (image named by compose's
// rule) and cron (image named in the file, one build arg that must never show).
func addBuilt(c *manifestsCompose) {
	w := types.ServiceConfig{Name: "worker", Restart: "always"}
	w.Build = &types.BuildConfig{Context: "/repo/shop/worker", Dockerfile: "Dockerfile"}
	w.Networks = map[string]*types.ServiceNetworkConfig{"backend": nil}
	c.Project.Services["worker"] = w
	cron := types.ServiceConfig{Name: "cron", Restart: "always"}
	cron.Image = "shop/cron:dev"
	cron.Build = &types.BuildConfig{Context: "/repo/shop/cron", Dockerfile: "build/Dockerfile",
		Args: types.MappingWithEquals{"TOKEN": ptr("s3cret-token")}, Target: "run"}
	cron.Networks = map[string]*types.ServiceNetworkConfig{"backend": nil}
	c.Project.Services["cron"] = cron
	c.Builds = map[string]manifests.BuildContext{
		"worker": {Root: "/repo", Dir: "shop/worker", Rel: "shop/worker", Dockerfile: "Dockerfile",
			Digest: "sha256:1111111111111111111111111111111111111111111111111111111111111111"},
		"cron": {Root: "/repo", Dir: "shop/cron", Rel: "shop/cron", Dockerfile: "build/Dockerfile",
			Digest: "sha256:2222222222222222222222222222222222222222222222222222222222222222"},
	}
}

func addMigrate(c *manifestsCompose) {
	m := types.ServiceConfig{Name: "migrate", Restart: "no"}
	m.Image = "shop/api:1.0"
	m.Command = types.ShellCommand{"migrate", "up"}
	m.Networks = map[string]*types.ServiceNetworkConfig{"backend": nil}
	c.Project.Services["migrate"] = m
}

func cloneEnv(e types.MappingWithEquals) types.MappingWithEquals {
	out := types.MappingWithEquals{}
	for k, v := range e {
		out[k] = v
	}
	return out
}

// golden is what a golden file holds: the plan as users see it, then the steps Apply runs.
func golden(p *drivers.Plan) string {
	return PlanText(p) + "\nsteps:\n" + StepsText(p)
}

func TestPlanGolden(t *testing.T) {
	for _, tc := range planCases() {
		t.Run(tc.name, func(t *testing.T) {
			plan := BuildPlan(testApp, tc.want(t), tc.live(t))
			checkPlanInvariants(t, plan)
			got := golden(plan)
			path := filepath.Join("testdata", "plans", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden (run with -update to create): %v", err)
			}
			if got != string(want) {
				t.Errorf("plan differs from %s (run with -update after review):\n%s", path, plainDiffText(string(want), got))
			}
		})
	}
}

// plainDiffText shows both texts for test failure messages.
func plainDiffText(want, got string) string {
	return "--- want\n" + want + "\n+++ got\n" + got
}

// checkPlanInvariants holds for every plan: steps point at real changes, and nothing the
// app does not own is ever acted on.
func checkPlanInvariants(t *testing.T, p *drivers.Plan) {
	t.Helper()
	payload := p.Payload.(*Payload)
	for i, s := range payload.Steps {
		if s.Change < 0 || s.Change >= len(p.Changes) {
			t.Fatalf("step %d: change index %d out of range", i, s.Change)
		}
		if s.Existing != nil && s.Existing.Labels[LabelApp] != testApp.Name {
			t.Errorf("step %d acts on foreign container %s", i, s.Existing.Name)
		}
		if s.Replaced != nil && s.Replaced.Labels[LabelApp] != testApp.Name {
			t.Errorf("step %d removes foreign container %s", i, s.Replaced.Name)
		}
		if s.ExistingNetwork != nil && s.ExistingNetwork.Labels[LabelApp] != testApp.Name {
			t.Errorf("step %d acts on foreign network %s", i, s.ExistingNetwork.Name)
		}
		if p.Changes[s.Change].Action == drivers.ActionUnchanged {
			t.Errorf("step %d (%s) belongs to an unchanged change", i, s.Kind)
		}
	}
	for _, c := range p.Changes {
		if strings.Contains(c.Diff+c.Reason, "s3cret") {
			t.Errorf("%s: diff leaks an environment value", c.Ref)
		}
	}
}

func TestPlanNoopIsInSync(t *testing.T) {
	d := baseDesired(t)
	p := BuildPlan(testApp, d, observedFrom(d))
	if !p.InSync() || len(p.Payload.(*Payload).Steps) != 0 {
		t.Fatalf("no-op plan is not in sync:\n%s", golden(p))
	}
}

func TestPlanIsDeterministic(t *testing.T) {
	for _, tc := range planCases() {
		first := golden(BuildPlan(testApp, tc.want(t), tc.live(t)))
		for range 5 {
			if again := golden(BuildPlan(testApp, tc.want(t), tc.live(t))); again != first {
				t.Fatalf("%s: plan output varies between runs", tc.name)
			}
		}
	}
}

func planChange(t *testing.T, p *drivers.Plan, ref string) drivers.Change {
	t.Helper()
	for _, c := range p.Changes {
		if c.Ref.String() == ref {
			return c
		}
	}
	t.Fatalf("no change for %s in:\n%s", ref, p)
	return drivers.Change{}
}

func TestPlanEdgeCases(t *testing.T) {
	cases := []struct {
		name       string
		compose    func(c *manifestsCompose)
		live       func(o *Observed)
		ref        string
		action     drivers.Action
		reasonPart string
	}{
		{name: "dead container is recreated", live: func(o *Observed) { liveContainer(o, "shop-db-1").State = "dead" },
			ref: "service/db", action: drivers.ActionRecreate, reasonPart: "shop-db-1 is dead"},
		{name: "created container is started", live: func(o *Observed) { liveContainer(o, "shop-db-1").State = "created" },
			ref: "service/db", action: drivers.ActionUpdate, reasonPart: "never started"},
		{name: "non-zero exit under restart no is started", live: func(o *Observed) {
			c := liveContainer(o, "shop-db-1")
			c.State, c.ExitCode, c.RestartPolicy = "exited", 137, "no"
		}, ref: "service/db", action: drivers.ActionUpdate, reasonPart: "exited with code 137"},
		{name: "changed volume is never recreated", live: func(o *Observed) { o.Volumes[0].Labels[LabelConfigHash] = "old" },
			ref: "volume/data", action: drivers.ActionUnchanged, reasonPart: "volumes are never recreated"},
		{name: "foreign network is used as is", live: func(o *Observed) {
			delete(o.Networks[0].Labels, LabelApp)
			o.Networks[0].Labels[LabelConfigHash] = "other"
		}, ref: "network/backend", action: drivers.ActionUnchanged, reasonPart: "used as is"},
		{name: "external network is only marked", compose: func(c *manifestsCompose) {
			c.Project.Networks["backend"] = types.NetworkConfig{External: true}
		}, ref: "network/backend", action: drivers.ActionUnchanged, reasonPart: "external"},
		{name: "network deleted by hand recreates attached containers", live: func(o *Observed) {
			o.Networks = o.Networks[1:] // shop_backend gone
		}, ref: "service/api", action: drivers.ActionRecreate, reasonPart: "network backend created"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := shopCompose()
			if tc.compose != nil {
				tc.compose(c)
			}
			d := mustDesire(t, c)
			o := observedFrom(d)
			if tc.live != nil {
				tc.live(o)
			}
			p := BuildPlan(testApp, d, o)
			checkPlanInvariants(t, p)
			got := planChange(t, p, tc.ref)
			if got.Action != tc.action || !strings.Contains(got.Reason, tc.reasonPart) {
				t.Fatalf("%s = %s (%s), want %s (…%s…)", tc.ref, got.Action, got.Reason, tc.action, tc.reasonPart)
			}
		})
	}
}

func TestPlanStringFormat(t *testing.T) {
	p := &drivers.Plan{
		App: drivers.App{Name: "a", Project: "p", Revision: "short"},
		Changes: drivers.ChangeSet{
			{Ref: drivers.Ref{Kind: "service", Name: "x"}, Action: drivers.ActionRecreate, Reason: "why", Diff: "--- a\n+++ b\n\n-x\n"},
			{Ref: drivers.Ref{Kind: "volume", Name: "v"}, Action: drivers.ActionUnchanged},
		},
	}
	want := "plan for app a (project p, revision short)\n" +
		"  recreate  service/x  (why)\n    --- a\n    +++ b\n\n    -x\n" +
		"  unchanged volume/v\n"
	if got := p.String(); got != want {
		t.Fatalf("got:\n%q\nwant:\n%q", got, want)
	}
}

// setRefLabels gives the containers of services that point at other services' containers
// (volumes_from, network_mode/ipc/pid "service:x") the config-hash label Apply writes: the
// hash with each reference bound to the container's ID.
func setRefLabels(d *Desired, o *Observed) {
	for i := range d.Services {
		s := &d.Services[i]
		res, err := resolveRefs(s, func(svc string) (string, bool) {
			var cs []*ObservedContainer
			for j := range o.Containers {
				if o.Containers[j].Labels[LabelService] == svc {
					cs = append(cs, &o.Containers[j])
				}
			}
			return firstByName(cs)
		})
		if err != nil {
			panic(err)
		}
		for j := range o.Containers {
			if o.Containers[j].Labels[LabelService] == s.Name {
				o.Containers[j].Labels[LabelConfigHash] = res.labelHash
			}
		}
	}
}

// addBackup adds a service that reads db's volumes read-only, with the depends_on entry
// compose-go adds for it when it loads a file.
func addBackup(c *manifestsCompose) {
	b := types.ServiceConfig{Name: "backup", Restart: "unless-stopped"}
	b.Image = "shop/backup:1"
	b.VolumesFrom = []string{"db:ro"}
	b.DependsOn = types.DependsOnConfig{"db": {Condition: types.ServiceConditionStarted, Required: true}}
	b.Networks = map[string]*types.ServiceNetworkConfig{"backend": nil}
	c.Project.Services["backup"] = b
}
