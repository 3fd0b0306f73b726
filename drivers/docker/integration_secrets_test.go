package docker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	ctr "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/manifests"
)

const secretsAndLimits = `
services:
  web:
    image: IMAGE
    deploy:
      resources:
        limits: {cpus: "0.5", memory: 64m, pids: 64}
        reservations: {memory: 32m}
    secrets:
      - api_token
      - source: api_token
        target: token-copy
  other:
    image: IMAGE
    mem_limit: 48m
secrets:
  api_token:
    file: ./secrets/token.txt
`

// loadCheckout writes the secret and the compose file into the fixture's directory and
// loads it with shipwatch's own loader, which confines and digests the secret file.
func (f *fixture) loadCheckout(secret string) *manifests.Bundle {
	f.t.Helper()
	for rel, content := range map[string]string{
		"compose.yaml":      strings.ReplaceAll(secretsAndLimits, "IMAGE", testImageTag()),
		"secrets/token.txt": secret,
	} {
		p := filepath.Join(f.dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			f.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			f.t.Fatal(err)
		}
	}
	c, err := manifests.LoadCompose(f.t.Context(), manifests.ComposeOptions{Root: f.dir, Path: ".", Project: f.project})
	if err != nil {
		f.t.Fatalf("load: %v", err)
	}
	return &manifests.Bundle{Revision: f.app.Revision, Compose: c}
}

func (f *fixture) inspect(name string) ctr.InspectResponse {
	f.t.Helper()
	res, err := f.cli.ContainerInspect(f.t.Context(), name, client.ContainerInspectOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return res.Container
}

// secretMount checks that dest is a read-only mount of a copy under the files directory
// holding want, and returns its host source.
func (f *fixture) secretMount(c ctr.InspectResponse, dest, want string) string {
	f.t.Helper()
	for _, m := range c.Mounts {
		if m.Destination != dest {
			continue
		}
		if m.RW || !strings.HasPrefix(m.Source, f.drv.filesDir+string(filepath.Separator)) {
			f.t.Fatalf("%s: mount %+v, want a read-only copy under %s", dest, m, f.drv.filesDir)
		}
		if got, err := os.ReadFile(m.Source); err != nil || string(got) != want {
			f.t.Fatalf("%s: copy holds %q (%v), want the secret file's content", dest, got, err)
		}
		return m.Source
	}
	f.t.Fatalf("no mount at %s in %+v", dest, c.Mounts)
	return ""
}

func TestSecretAndResourceLimitsOnEngine(t *testing.T) {
	f := newFixture(t)
	t.Cleanup(func() { _ = removeTree(f.drv.filesDir) })
	f.apply(f.plan(f.loadCheckout("hunter2-one\n")), drivers.ApplyOptions{Prune: true})

	web := f.inspect(f.name("web"))
	if !web.State.Running {
		t.Fatalf("web not running: %+v", web.State)
	}
	r := web.HostConfig.Resources
	if r.Memory != 64<<20 || r.MemoryReservation != 32<<20 || r.NanoCPUs != 5e8 || r.PidsLimit == nil || *r.PidsLimit != 64 {
		t.Fatalf("web resources: memory %d, reservation %d, nano-CPUs %d, pids %v", r.Memory, r.MemoryReservation, r.NanoCPUs, r.PidsLimit)
	}
	src := f.secretMount(web, "/run/secrets/api_token", "hunter2-one\n")
	if copySrc := f.secretMount(web, "/run/secrets/token-copy", "hunter2-one\n"); copySrc != src {
		t.Errorf("one secret mounted from two copies: %s, %s", src, copySrc)
	}
	other := f.inspect(f.name("other"))
	if other.HostConfig.Memory != 48<<20 {
		t.Errorf("other: memory %d, want mem_limit 48m", other.HostConfig.Memory)
	}

	// The same content plans nothing; a new content recreates exactly the service reading it.
	if p := f.plan(f.loadCheckout("hunter2-one\n")); !p.InSync() {
		t.Fatalf("unchanged secret plans changes:\n%s", p)
	}
	p := f.plan(f.loadCheckout("hunter2-two\n"))
	if got := changeOf(p.Changes, "service/web").Action; got != drivers.ActionRecreate {
		t.Fatalf("rotated secret: service/web = %s, want recreate\n%s", got, p)
	}
	if got := changeOf(p.Changes, "service/other").Action; got != drivers.ActionUnchanged {
		t.Fatalf("rotated secret: service/other = %s, want unchanged\n%s", got, p)
	}
	if strings.Contains(p.String(), "hunter2") {
		t.Fatalf("plan shows the secret:\n%s", p)
	}
	f.apply(p, drivers.ApplyOptions{Prune: true})
	after := f.inspect(f.name("web"))
	if after.ID == web.ID || !after.State.Running {
		t.Fatalf("web not recreated and running: %s -> %s, %+v", web.ID, after.ID, after.State)
	}
	if newSrc := f.secretMount(after, "/run/secrets/api_token", "hunter2-two\n"); newSrc == src {
		t.Errorf("rotated secret mounted from the old copy %s", src)
	}
	if id := f.inspect(f.name("other")).ID; id != other.ID {
		t.Errorf("other recreated (%s -> %s) though it reads no secret", other.ID, id)
	}
}
