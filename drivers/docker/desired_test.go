package docker

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/manifests"
)

const (
	testFilesDir = "/var/lib/shipwatch/files"
	digestAPI    = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	digestNginx  = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

// testSecretKey is fixed so golden plans of projects with secrets are stable.
var testSecretKey = []byte("0123456789abcdef0123456789abcdef")

var testApp = drivers.App{Name: "shop", Project: "shop", Revision: "0123456789abcdef0123456789abcdef01234567"}

func ptr[T any](v T) *T { return &v }

// shopCompose is the fixture most tests start from: db <- api <- web (depends_on), a
// "backend" network for db and api, web on default and backend, a data volume, a
// bind-mounted repo file for api and a file-based config for web. It is built fresh on
// every call so a test may change it freely.
func shopCompose() *manifests.Compose {
	dep := func(names ...string) types.DependsOnConfig {
		d := types.DependsOnConfig{}
		for _, n := range names {
			d[n] = types.ServiceDependency{Condition: types.ServiceConditionStarted, Required: true}
		}
		return d
	}
	backend := map[string]*types.ServiceNetworkConfig{"backend": nil}
	db := types.ServiceConfig{Name: "db", Restart: "unless-stopped"}
	db.Image = "postgres:16"
	db.Environment = types.MappingWithEquals{"POSTGRES_PASSWORD": ptr("s3cret-db")}
	db.Networks = backend
	db.Volumes = []types.ServiceVolumeConfig{{Type: types.VolumeTypeVolume, Source: "data", Target: "/var/lib/postgresql/data"}}

	api := types.ServiceConfig{Name: "api", Restart: "always"}
	api.Image = "shop/api:1.0"
	api.DependsOn = dep("db")
	api.Environment = types.MappingWithEquals{"DB_PASSWORD": ptr("s3cret-db"), "LOG_LEVEL": ptr("info")}
	api.Networks = backend
	api.Volumes = []types.ServiceVolumeConfig{{Type: types.VolumeTypeBind, Source: "/repo/shop/conf/api.yaml", Target: "/etc/api.yaml", ReadOnly: true}}

	web := types.ServiceConfig{Name: "web", Restart: "unless-stopped"}
	web.Image = "nginx:1.27"
	web.DependsOn = dep("api")
	web.Networks = map[string]*types.ServiceNetworkConfig{"default": nil, "backend": nil}
	web.Ports = []types.ServicePortConfig{{Target: 80, Published: "8080", Protocol: "tcp"}}
	web.Configs = []types.ServiceConfigObjConfig{{Source: "nginx_conf", Target: "/etc/nginx/nginx.conf"}}

	return &manifests.Compose{
		Project: &types.Project{
			Name:     "shop",
			Services: types.Services{"db": db, "api": api, "web": web},
			Networks: types.Networks{"backend": {}},
			Volumes:  types.Volumes{"data": {}},
			Configs:  types.Configs{"nginx_conf": {Name: "nginx_conf", File: "/repo/shop/nginx.conf"}},
		},
		Files: map[string][]manifests.RepoFile{
			"api": {{Path: "/repo/shop/conf/api.yaml", Rel: "shop/conf/api.yaml", Digest: digestAPI}},
			"web": {{Path: "/repo/shop/nginx.conf", Rel: "shop/nginx.conf", Digest: digestNginx}},
		},
	}
}

func mustDesire(t *testing.T, c *manifests.Compose) *Desired {
	t.Helper()
	d, err := Desire(testApp, c, DesireOptions{FilesDir: testFilesDir, SecretKey: testSecretKey})
	if err != nil {
		t.Fatalf("Desire: %v", err)
	}
	return d
}

func serviceNames(d *Desired) []string {
	var out []string
	for _, s := range d.Services {
		out = append(out, s.Name)
	}
	return out
}

func specOf(t *testing.T, d *Desired, name string) *ServiceSpec {
	t.Helper()
	for i := range d.Services {
		if d.Services[i].Name == name {
			return &d.Services[i]
		}
	}
	t.Fatalf("no service %s in desired", name)
	return nil
}

func TestDesireDependencyOrder(t *testing.T) {
	c := shopCompose()
	// Names sort the other way round from dependencies, so name order alone would fail.
	if got, want := serviceNames(mustDesire(t, c)), []string{"db", "api", "web"}; !slices.Equal(got, want) {
		t.Fatalf("order = %v, want %v", got, want)
	}
	// Ties go by name: two services without dependencies come alphabetically first.
	cache := types.ServiceConfig{Name: "cache"}
	cache.Image = "redis:7"
	c.Project.Services["cache"] = cache
	if got, want := serviceNames(mustDesire(t, c)), []string{"cache", "db", "api", "web"}; !slices.Equal(got, want) {
		t.Fatalf("order = %v, want %v", got, want)
	}
}

func TestDesireCycleIsAnErrorNamingServices(t *testing.T) {
	c := shopCompose()
	db := c.Project.Services["db"]
	db.DependsOn = types.DependsOnConfig{"web": {Required: true}}
	c.Project.Services["db"] = db
	_, err := Desire(testApp, c, DesireOptions{FilesDir: testFilesDir})
	if !errors.Is(err, ErrDependencyCycle) {
		t.Fatalf("err = %v, want ErrDependencyCycle", err)
	}
	if !strings.Contains(err.Error(), "api, db, web") {
		t.Fatalf("error %q does not name the services", err)
	}
}

func TestDesireRewritesRepoFilesToContentAddressedPaths(t *testing.T) {
	c := shopCompose()
	d := mustDesire(t, c)
	api := specOf(t, d, "api")
	wantAPI := filepath.Join(testFilesDir, strings.TrimPrefix(digestAPI, "sha256:"), "api.yaml")
	if got := api.Service.Volumes[0].Source; got != wantAPI {
		t.Fatalf("api bind source = %s, want %s", got, wantAPI)
	}
	if len(api.Files) != 1 || api.Files[0].Target != wantAPI || api.Files[0].Source.Rel != "shop/conf/api.yaml" {
		t.Fatalf("api files = %+v", api.Files)
	}
	web := specOf(t, d, "web")
	if len(web.Service.Configs) != 0 {
		t.Fatalf("web configs not turned into binds: %+v", web.Service.Configs)
	}
	wantWeb := types.ServiceVolumeConfig{
		Type: types.VolumeTypeBind, ReadOnly: true, Target: "/etc/nginx/nginx.conf",
		Source: filepath.Join(testFilesDir, strings.TrimPrefix(digestNginx, "sha256:"), "nginx.conf"),
	}
	if len(web.Service.Volumes) != 1 || web.Service.Volumes[0].Source != wantWeb.Source ||
		web.Service.Volumes[0].Target != wantWeb.Target || !web.Service.Volumes[0].ReadOnly {
		t.Fatalf("web volumes = %+v, want %+v", web.Service.Volumes, wantWeb)
	}
	// The input is untouched: Desire is pure.
	if got := c.Project.Services["api"].Volumes[0].Source; got != "/repo/shop/conf/api.yaml" {
		t.Fatalf("input service modified: %s", got)
	}
	if len(c.Project.Services["web"].Configs) != 1 {
		t.Fatal("input configs modified")
	}
}

func TestDesireFileChangeMovesOnlyItsServiceHash(t *testing.T) {
	before := mustDesire(t, shopCompose())
	c := shopCompose()
	c.Files["api"][0].Digest = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
	after := mustDesire(t, c)
	for _, name := range []string{"db", "api", "web"} {
		b, a := specOf(t, before, name), specOf(t, after, name)
		changed := b.ConfigHash != a.ConfigHash || b.SpecHash != a.SpecHash
		if changed != (name == "api") {
			t.Errorf("service %s: hash changed = %v", name, changed)
		}
	}
}

func TestDesireConfigDefaultTargetAndDefaultTargetDir(t *testing.T) {
	c := shopCompose()
	web := c.Project.Services["web"]
	web.Configs = []types.ServiceConfigObjConfig{{Source: "nginx_conf"}}
	c.Project.Services["web"] = web
	d := mustDesire(t, c)
	if got := specOf(t, d, "web").Service.Volumes[0].Target; got != "/nginx_conf" {
		t.Fatalf("config target = %s, want /nginx_conf (compose's convention)", got)
	}
}

func TestDesireNetworksAndVolumes(t *testing.T) {
	c := shopCompose()
	c.Project.Networks["edge"] = types.NetworkConfig{External: true}
	c.Project.Networks["named"] = types.NetworkConfig{Name: "custom-net"}
	c.Project.Volumes["shared"] = types.VolumeConfig{External: true, Name: "shared-vol"}
	d := mustDesire(t, c)
	var nets []string
	for _, n := range d.Networks {
		nets = append(nets, n.Key+"="+n.Name)
		if n.Hash == "" {
			t.Errorf("network %s has no hash", n.Key)
		}
	}
	// default is implicit: web names it, and compose creates it when any service uses it.
	want := []string{"backend=shop_backend", "default=shop_default", "edge=edge", "named=custom-net"}
	if !slices.Equal(nets, want) {
		t.Fatalf("networks = %v, want %v", nets, want)
	}
	var vols []string
	for _, v := range d.Volumes {
		vols = append(vols, v.Key+"="+v.Name)
	}
	if want := []string{"data=shop_data", "shared=shared-vol"}; !slices.Equal(vols, want) {
		t.Fatalf("volumes = %v, want %v", vols, want)
	}
}

func TestDesireImplicitDefaultNetworkForServiceWithoutNetworks(t *testing.T) {
	c := shopCompose()
	db := c.Project.Services["db"]
	db.Networks = nil
	c.Project.Services["db"] = db
	d := mustDesire(t, c)
	if _, ok := specOf(t, d, "db").Service.Networks["default"]; !ok {
		t.Fatal("db not attached to the default network")
	}
	if c.Project.Services["db"].Networks != nil {
		t.Fatal("input modified")
	}
}

func TestDesireReplicas(t *testing.T) {
	c := shopCompose()
	api := c.Project.Services["api"]
	api.Deploy = &types.DeployConfig{Replicas: ptr(3)}
	c.Project.Services["api"] = api
	web := c.Project.Services["web"]
	web.Scale = ptr(2)
	web.Ports = nil // two replicas cannot share web's fixed host port
	c.Project.Services["web"] = web
	d := mustDesire(t, c)
	for name, want := range map[string]int{"db": 1, "api": 3, "web": 2} {
		if got := specOf(t, d, name).Replicas; got != want {
			t.Errorf("%s replicas = %d, want %d", name, got, want)
		}
	}
}

func TestDesireRejectsUnsupported(t *testing.T) {
	cases := map[string]func(*types.ServiceConfig){
		"network_mode": func(s *types.ServiceConfig) { s.NetworkMode = "container:legacy" },
		"ipc":          func(s *types.ServiceConfig) { s.Ipc = "container:legacy" },
		"volumes_from": func(s *types.ServiceConfig) { s.VolumesFrom = []string{"db:z"} },
		"build": func(s *types.ServiceConfig) {
			s.Image = ""
			s.Build = &types.BuildConfig{Context: ".", Dockerfile: "Dockerfile", SSH: types.SSHConfig{{ID: "default"}}}
		},
	}
	for key, mutate := range cases {
		t.Run(key, func(t *testing.T) {
			c := shopCompose()
			api := c.Project.Services["api"]
			mutate(&api)
			c.Project.Services["api"] = api
			_, err := Desire(testApp, c, DesireOptions{FilesDir: testFilesDir})
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "api") {
				t.Fatalf("err = %v, want ErrUnsupported naming api and %s", err, key)
			}
		})
	}
}

func TestDesireNeedsAbsoluteFilesDir(t *testing.T) {
	_, err := Desire(testApp, shopCompose(), DesireOptions{FilesDir: "relative/dir"})
	if err == nil || !strings.Contains(err.Error(), "not absolute") {
		t.Fatalf("err = %v", err)
	}
}

func TestDesireNilComposeIsEmpty(t *testing.T) {
	d := mustDesire(t, nil)
	if len(d.Services)+len(d.Networks)+len(d.Volumes) != 0 || d.Project != "shop" {
		t.Fatalf("desired = %+v", d)
	}
}

func TestDesireBuild(t *testing.T) {
	c := shopCompose()
	addBuilt(c)
	d := mustDesire(t, c)
	worker, cron := specOf(t, d, "worker"), specOf(t, d, "cron")
	if worker.Image() != "shop-worker" || cron.Image() != "shop/cron:dev" {
		t.Errorf("images = %q, %q; want compose's <project>-<service> and the image key", worker.Image(), cron.Image())
	}
	if worker.Service.Image != "" {
		t.Error("the service's image must stay empty: compose hashes it so")
	}
	want, err := ServiceHash(c.Project.Services["worker"])
	if err != nil {
		t.Fatal(err)
	}
	if worker.ConfigHash != want {
		t.Errorf("config hash %s, want compose's %s", worker.ConfigHash, want)
	}
	if strings.Contains(string(cron.Canonical), "s3cret") || strings.Contains(string(cron.Canonical), "build") {
		t.Errorf("canonical JSON holds the build section:\n%s", cron.Canonical)
	}

	// A changed arg, target or label changes the digest and the spec hash, never the config hash.
	for name, mutate := range map[string]func(b *types.BuildConfig){
		"arg":    func(b *types.BuildConfig) { b.Args = types.MappingWithEquals{"TOKEN": ptr("other")} },
		"target": func(b *types.BuildConfig) { b.Target = "debug" },
		"label":  func(b *types.BuildConfig) { b.Labels = types.Labels{"a": "b"} },
	} {
		c2 := shopCompose()
		addBuilt(c2)
		s := c2.Project.Services["cron"]
		b := *s.Build
		mutate(&b)
		s.Build = &b
		c2.Project.Services["cron"] = s
		got := specOf(t, mustDesire(t, c2), "cron")
		if got.Build.Digest == cron.Build.Digest || got.SpecHash == cron.SpecHash || got.ConfigHash != cron.ConfigHash {
			t.Errorf("%s: digest/spec hash unchanged or config hash changed", name)
		}
	}
	// no_cache changes how, not what: nothing is rebuilt for it.
	c3 := shopCompose()
	addBuilt(c3)
	s := c3.Project.Services["worker"]
	b := *s.Build
	b.NoCache = true
	s.Build = &b
	c3.Project.Services["worker"] = s
	if specOf(t, mustDesire(t, c3), "worker").SpecHash != worker.SpecHash {
		t.Error("no_cache changed the spec hash")
	}
}

func TestDesireBuildShared(t *testing.T) {
	c := shopCompose()
	addBuilt(c)
	second := c.Project.Services["worker"]
	second.Name = "worker2"
	second.Image = "shop-worker"
	c.Project.Services["worker2"] = second
	c.Builds["worker2"] = c.Builds["worker"]
	d := mustDesire(t, c)
	b := specOf(t, d, "worker").Build
	if specOf(t, d, "worker2").Build != b || !slices.Equal(b.Services, []string{"worker", "worker2"}) {
		t.Errorf("one image built by two services must be one build; services %v", b.Services)
	}
	other := c.Builds["worker"]
	other.Digest = "sha256:9999999999999999999999999999999999999999999999999999999999999999"
	c.Builds["worker2"] = other
	if _, err := Desire(testApp, c, DesireOptions{FilesDir: testFilesDir, SecretKey: testSecretKey}); !errors.Is(err, drivers.ErrInvalidSpec) {
		t.Errorf("same tag from different inputs: err = %v, want ErrInvalidSpec", err)
	}
	delete(c.Builds, "worker2")
	if _, err := Desire(testApp, c, DesireOptions{FilesDir: testFilesDir, SecretKey: testSecretKey}); !errors.Is(err, drivers.ErrInvalidSpec) {
		t.Errorf("build without a loaded context: err = %v, want ErrInvalidSpec", err)
	}
}

func TestPlanImageEdgeCases(t *testing.T) {
	c := shopCompose()
	addBuilt(c)
	d := mustDesire(t, c)

	o := observedFrom(d)
	o.Images = o.Images[:0] // removed by hand while the containers still run
	p := BuildPlan(testApp, d, o)
	if got := planChange(t, p, "image/shop-worker"); got.Action != drivers.ActionCreate || !strings.Contains(got.Reason, "image missing") {
		t.Errorf("image/shop-worker = %s (%s)", got.Action, got.Reason)
	}
	if got := planChange(t, p, "service/worker"); got.Action != drivers.ActionUnchanged {
		t.Errorf("a rebuilt identical context must not recreate: %s (%s)", got.Action, got.Reason)
	}

	o = observedFrom(d)
	for i := range o.Images {
		delete(o.Images[i].Labels, LabelBuildDigest) // same tag, built by someone else
	}
	p = BuildPlan(testApp, d, o)
	if got := planChange(t, p, "image/shop/cron:dev"); got.Action != drivers.ActionRecreate || !strings.Contains(got.Reason, "not built by shipwatch") {
		t.Errorf("image/shop/cron:dev = %s (%s)", got.Action, got.Reason)
	}
	checkPlanInvariants(t, p)
}

func TestNormalTag(t *testing.T) {
	for in, want := range map[string]string{
		"shop-api": "shop-api:latest", "shop/cron:dev": "shop/cron:dev", "localhost:5000/x": "localhost:5000/x:latest",
		"docker.io/library/nginx": "nginx:latest", "x@sha256:ab": "x@sha256:ab",
	} {
		if got := normalTag(in); got != want {
			t.Errorf("normalTag(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDesiredLabelHoldsNoEnvironmentValue: the desired-state label is readable by anyone
// who can inspect the container; it holds keyed digests of environment values, and a diff
// of two of them still names the variable that changed.
func TestDesiredLabelHoldsNoEnvironmentValue(t *testing.T) {
	key := make([]byte, secretKeySize)
	opts := DesireOptions{FilesDir: "/var/lib/shipwatch/files", SecretKey: key}
	c := shopCompose()
	d, err := Desire(drivers.App{Name: "shop", Project: "shop", Revision: "r1"}, c, opts)
	if err != nil {
		t.Fatal(err)
	}
	api := specOf(t, d, "api")
	if strings.Contains(string(api.Canonical), "s3cret-db") || !strings.Contains(string(api.Canonical), sealedPrefix) {
		t.Fatalf("desired label of api:\n%s\nwant digests, not values", api.Canonical)
	}
	svc := c.Project.Services["api"]
	svc.Environment = types.MappingWithEquals{"DB_PASSWORD": ptr("s3cret-db"), "LOG_LEVEL": ptr("debug")}
	c.Project.Services["api"] = svc
	d2, err := Desire(drivers.App{Name: "shop", Project: "shop", Revision: "r2"}, c, opts)
	if err != nil {
		t.Fatal(err)
	}
	diff := MaskedDiff("api", api.Canonical, specOf(t, d2, "api").Canonical)
	if !strings.Contains(diff, `+    "LOG_LEVEL": "*** (changed)"`) || strings.Contains(diff, `"DB_PASSWORD": "*** (changed)"`) {
		t.Errorf("diff of sealed documents:\n%s\nwant LOG_LEVEL alone marked changed", diff)
	}
	if got := changedFields(api.Canonical, specOf(t, d2, "api").Canonical); !slices.Equal(got, []string{"environment"}) {
		t.Errorf("changed fields = %v", got)
	}
}
