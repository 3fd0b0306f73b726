package docker

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/manifests"
)

const (
	dbSecretPath = "/repo/shop/secrets/db.txt"
	digestSecret = "sha256:4444444444444444444444444444444444444444444444444444444444444444"
	digestRotate = "sha256:5555555555555555555555555555555555555555555555555555555555555555"
)

// addDBSecret gives the shop fixture a file secret read by db (default target) and api
// (relative target); web does not read it.
func addDBSecret(c *manifests.Compose) {
	c.Project.Secrets = types.Secrets{"db_password": {Name: "db_password", File: dbSecretPath}}
	db := c.Project.Services["db"]
	db.Secrets = []types.ServiceSecretConfig{{Source: "db_password"}}
	c.Project.Services["db"] = db
	api := c.Project.Services["api"]
	api.Secrets = []types.ServiceSecretConfig{{Source: "db_password", Target: "db.txt"}}
	c.Project.Services["api"] = api
	f := manifests.RepoFile{Path: dbSecretPath, Rel: "shop/secrets/db.txt", Digest: digestSecret}
	c.Files["db"] = append(c.Files["db"], f)
	c.Files["api"] = append(c.Files["api"], f)
}

// rotateDBSecret changes the secret file's content (its digest), nothing else.
func rotateDBSecret(c *manifests.Compose) {
	for _, svc := range []string{"db", "api"} {
		for i := range c.Files[svc] {
			if c.Files[svc][i].Path == dbSecretPath {
				c.Files[svc][i].Digest = digestRotate
			}
		}
	}
}

func bindAt(t *testing.T, s *ServiceSpec, target string) types.ServiceVolumeConfig {
	t.Helper()
	for _, v := range s.Service.Volumes {
		if v.Target == target {
			return v
		}
	}
	t.Fatalf("service %s has no mount at %s: %+v", s.Name, target, s.Service.Volumes)
	return types.ServiceVolumeConfig{}
}

func TestDesireMountsSecretsLikeCompose(t *testing.T) {
	c := shopCompose()
	addDBSecret(c)
	web := c.Project.Services["web"]
	web.Secrets = []types.ServiceSecretConfig{{Source: "db_password", Target: "/etc/web/pw"}}
	c.Project.Services["web"] = web
	c.Files["web"] = append(c.Files["web"], manifests.RepoFile{Path: dbSecretPath, Rel: "shop/secrets/db.txt", Digest: digestSecret})
	d := mustDesire(t, c)

	db, api, webSpec := specOf(t, d, "db"), specOf(t, d, "api"), specOf(t, d, "web")
	// compose: no target -> /run/secrets/<source>; relative -> under /run/secrets; absolute kept.
	dbBind := bindAt(t, db, "/run/secrets/db_password")
	apiBind := bindAt(t, api, "/run/secrets/db.txt")
	webBind := bindAt(t, webSpec, "/etc/web/pw")
	for _, b := range []types.ServiceVolumeConfig{dbBind, apiBind, webBind} {
		if b.Type != types.VolumeTypeBind || !b.ReadOnly {
			t.Errorf("secret mount %+v is not a read-only bind", b)
		}
		if b.Source != dbBind.Source || filepath.Dir(filepath.Dir(b.Source)) != testFilesDir || filepath.Base(b.Source) != "db.txt" {
			t.Errorf("secret source %s, want one copy under %s named db.txt", b.Source, testFilesDir)
		}
	}
	if strings.Contains(dbBind.Source, strings.TrimPrefix(digestSecret, "sha256:")) {
		t.Errorf("secret copy %s is addressed by the plain digest of the secret", dbBind.Source)
	}
	if len(db.Service.Secrets) != 0 || !slices.ContainsFunc(db.Files, func(f MaterialisedFile) bool { return f.Target == dbBind.Source }) {
		t.Errorf("db: secrets %+v left in, or copy not scheduled: %+v", db.Service.Secrets, db.Files)
	}
	if len(c.Project.Services["db"].Secrets) != 1 {
		t.Error("input service modified")
	}
}

func TestDesireSecretAddressIsKeyedAndStable(t *testing.T) {
	desire := func(key []byte) *ServiceSpec {
		c := shopCompose()
		addDBSecret(c)
		d, err := Desire(testApp, c, DesireOptions{FilesDir: testFilesDir, SecretKey: key})
		if err != nil {
			t.Fatal(err)
		}
		return specOf(t, d, "db")
	}
	a, again, other := desire(testSecretKey), desire(testSecretKey), desire([]byte("another key, another address...."))
	if a.SpecHash != again.SpecHash || a.Files[0].Target != again.Files[0].Target {
		t.Fatal("same key and content give different addresses")
	}
	if a.Files[0].Target == other.Files[0].Target || a.SpecHash == other.SpecHash {
		t.Fatal("the address does not depend on the key")
	}
	// Without a key (validation), each call draws its own: never a fixed, public one.
	if x, y := desire(nil), desire(nil); x.Files[0].Target == y.Files[0].Target {
		t.Fatal("a nil key gives the same address twice")
	}
	// A file the secret also reaches as a plain bind is keyed there too.
	c := shopCompose()
	addDBSecret(c)
	web := c.Project.Services["web"]
	web.Volumes = []types.ServiceVolumeConfig{{Type: types.VolumeTypeBind, Source: dbSecretPath, Target: "/pw", ReadOnly: true}}
	c.Project.Services["web"] = web
	c.Files["web"] = append(c.Files["web"], manifests.RepoFile{Path: dbSecretPath, Rel: "shop/secrets/db.txt", Digest: digestSecret})
	if got := bindAt(t, specOf(t, mustDesire(t, c), "web"), "/pw").Source; got != a.Files[0].Target {
		t.Errorf("secret file bound as a volume at %s, want its keyed copy %s", got, a.Files[0].Target)
	}
}

func TestDesireSecretChangeMovesOnlyItsServices(t *testing.T) {
	c := shopCompose()
	addDBSecret(c)
	before := mustDesire(t, c)
	rotateDBSecret(c)
	after := mustDesire(t, c)
	for _, name := range []string{"db", "api", "web"} {
		changed := specOf(t, before, name).SpecHash != specOf(t, after, name).SpecHash
		if changed != (name != "web") {
			t.Errorf("service %s: spec hash changed = %v", name, changed)
		}
	}
}

func TestDesireRejectsUnsupportedSecrets(t *testing.T) {
	const value = "hunter2-env-secret"
	cases := []struct {
		name   string
		mutate func(c *manifests.Compose)
		want   error
		part   string
	}{
		{"environment source", func(c *manifests.Compose) {
			// compose-go resolves an environment source into Content: it must not leak.
			c.Project.Secrets["db_password"] = types.SecretConfig{Name: "db_password", Environment: "DB_PW", Content: value}
		}, ErrUnsupported, "environment"},
		{"external", func(c *manifests.Compose) {
			c.Project.Secrets["db_password"] = types.SecretConfig{Name: "db_password", External: true}
		}, ErrUnsupported, "external"},
		{"mode", func(c *manifests.Compose) {
			db := c.Project.Services["db"]
			db.Secrets[0].Mode = ptr(types.FileMode(0o400))
			c.Project.Services["db"] = db
		}, ErrUnsupported, "mode"},
		{"undefined", func(c *manifests.Compose) {
			db := c.Project.Services["db"]
			db.Secrets = []types.ServiceSecretConfig{{Source: "nope"}}
			c.Project.Services["db"] = db
		}, nil, "undefined secret nope"},
		{"target taken", func(c *manifests.Compose) {
			db := c.Project.Services["db"]
			db.Volumes = append(db.Volumes, types.ServiceVolumeConfig{Type: types.VolumeTypeTmpfs, Target: "/run/secrets/db_password"})
			c.Project.Services["db"] = db
		}, drivers.ErrInvalidSpec, "/run/secrets/db_password is already mounted"},
		{"device reservation", func(c *manifests.Compose) {
			db := c.Project.Services["db"]
			db.Deploy = &types.DeployConfig{Resources: types.Resources{Reservations: &types.Resource{
				Devices: []types.DeviceRequest{{Capabilities: []string{"gpu"}}},
			}}}
			c.Project.Services["db"] = db
		}, ErrUnsupported, "deploy.resources.reservations"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := shopCompose()
			addDBSecret(c)
			db := c.Project.Services["db"]
			db.Secrets = slices.Clone(db.Secrets)
			c.Project.Services["db"] = db
			tc.mutate(c)
			_, err := Desire(testApp, c, DesireOptions{FilesDir: testFilesDir, SecretKey: testSecretKey})
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.part) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.want, tc.part)
			}
			if !strings.Contains(err.Error(), "service db") {
				t.Errorf("error %q does not name the service", err)
			}
			if strings.Contains(err.Error(), value) {
				t.Errorf("error leaks the secret: %v", err)
			}
		})
	}
}

// TestPlanNeverShowsSecretContent loads a real checkout, plans a first deploy and then a
// rotation of the secret file, and looks for the secret and its plain digest everywhere a
// plan or a container shows configuration: plan text, diffs, labels, binds.
func TestPlanNeverShowsSecretContent(t *testing.T) {
	const v1, v2 = "hunter2-first-s3cret", "hunter3-second-s3cret"
	root := t.TempDir()
	write := func(rel, content string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("app/compose.yaml", "services:\n  db:\n    image: postgres:16\n    secrets: [pw]\n  web:\n    image: nginx:1.27\nsecrets:\n  pw:\n    file: ./pw.txt\n")
	load := func(value string) (*Desired, []string) {
		t.Helper()
		write("app/pw.txt", value)
		c, err := manifests.LoadCompose(t.Context(), manifests.ComposeOptions{Root: root, Path: "app", Project: "shop"})
		if err != nil {
			t.Fatal(err)
		}
		d := mustDesire(t, c)
		var forbidden []string
		for _, f := range c.Files["db"] {
			forbidden = append(forbidden, strings.TrimPrefix(f.Digest, "sha256:"))
		}
		return d, append(forbidden, value)
	}
	d1, bad1 := load(v1)
	d2, bad2 := load(v2)
	first := BuildPlan(testApp, d1, nil)
	rotate := BuildPlan(testApp, d2, observedFrom(d1))
	if got := planChange(t, rotate, "service/db"); got.Action != drivers.ActionRecreate || got.Diff == "" {
		t.Fatalf("rotating the secret: service/db = %s with diff %q, want a recreate with a diff", got.Action, got.Diff)
	}
	if got := planChange(t, rotate, "service/web").Action; got != drivers.ActionUnchanged {
		t.Fatalf("rotating the secret: service/web = %s, want unchanged", got)
	}

	shown := []string{first.String(), rotate.String()}
	for _, p := range []*drivers.Plan{first, rotate} {
		for _, ch := range p.Changes {
			shown = append(shown, ch.Diff, ch.Reason)
		}
	}
	for _, d := range []*Desired{d1, d2} {
		spec := specOf(t, d, "db")
		opts, _, err := createOptions(createInput{desired: d, spec: spec, number: 1, name: "shop-db-1"})
		if err != nil {
			t.Fatal(err)
		}
		shown = append(shown, string(spec.Canonical), spec.SpecHash, spec.ConfigHash, strings.Join(opts.HostConfig.Binds, " "))
		for k, v := range opts.Config.Labels {
			shown = append(shown, k+"="+v)
		}
	}
	for _, s := range shown {
		for _, secret := range append(bad1, bad2...) {
			if strings.Contains(s, secret) {
				t.Fatalf("%q shows the secret or its plain digest %q", s, secret)
			}
		}
	}
}

func TestSecretKeyPersistsAndIsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "files")
	newDriver := func() *Driver { return &Driver{filesDir: dir} }
	keys := make(chan []byte, 4)
	for range cap(keys) { // drivers racing on a fresh directory agree on one key
		go func() {
			k, err := newDriver().secretKey()
			if err != nil {
				t.Error(err)
			}
			keys <- k
		}()
	}
	first := <-keys
	for range cap(keys) - 1 {
		if k := <-keys; string(k) != string(first) || len(k) != secretKeySize {
			t.Fatalf("keys differ: %x, %x", first, k)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, secretKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode())
	}
	if k, err := newDriver().secretKey(); err != nil || string(k) != string(first) {
		t.Fatalf("key not kept across drivers: %x %v", k, err)
	}
	if err := os.WriteFile(filepath.Join(dir, secretKeyFile), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newDriver().secretKey(); !errors.Is(err, ErrBadSecretKey) {
		t.Fatalf("damaged key file: err = %v, want ErrBadSecretKey", err)
	}
}

// TestFilesDirIsPrivate: the copies of repo files (secrets among them) are out of reach of
// other local users, also when the directory existed with looser permissions.
func TestFilesDirIsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "files")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Client: &client.Client{}, FilesDir: dir}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("files directory mode = %v, %v; want 0700", fi.Mode(), err)
	}
}
