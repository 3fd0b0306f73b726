package docker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shipwatch/shipwatch/internal/testproject"

	"github.com/compose-spec/compose-go/v2/cli"
	ctr "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/internal/testenv"
	"github.com/shipwatch/shipwatch/internal/testimage"
	"github.com/shipwatch/shipwatch/manifests"
)

// testImageTag changes with the program, so a changed program is rebuilt, not reused.
func testImageTag() string {
	sum := sha256.Sum256([]byte(testimage.Program))
	return "shipwatch-test/app:" + hex.EncodeToString(sum[:6])
}

// engineErr is why the Engine cannot be used; set once in TestMain, before any test runs.
var engineErr error

func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Short() {
		engineErr = prepareEngine()
	}
	os.Exit(m.Run())
}

func prepareEngine() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cli, err := NewClient("")
	if err != nil {
		return err
	}
	defer cli.Close()
	if _, err := cli.Ping(ctx, client.PingOptions{}); err != nil {
		return fmt.Errorf("docker engine not reachable: %w", err)
	}
	return testimage.Ensure(ctx, cli, testImageTag(), "")
}

// countingTransport counts the Engine calls a client makes, split into reads and writes.
type countingTransport struct {
	base          http.RoundTripper
	reads, writes atomic.Int64
	mu            sync.Mutex
	writeLog      []string
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet || req.Method == http.MethodHead {
		c.reads.Add(1)
	} else {
		c.writes.Add(1)
		c.mu.Lock()
		c.writeLog = append(c.writeLog, req.Method+" "+req.URL.Path)
		c.mu.Unlock()
	}
	return c.base.RoundTrip(req)
}

func (c *countingTransport) reset() {
	c.reads.Store(0)
	c.writes.Store(0)
	c.mu.Lock()
	c.writeLog = nil
	c.mu.Unlock()
}

// engineClient returns a client on the default socket whose calls are counted.
func engineClient(t *testing.T) (*client.Client, *countingTransport) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: integration tests against the Docker Engine skipped")
	}
	if engineErr != nil {
		testenv.Missing(t, "the Docker Engine is not reachable: %v", engineErr)
	}
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = client.DefaultDockerHost
	}
	u, err := client.ParseHostURL(host)
	if err != nil || (u.Scheme != "unix" && u.Scheme != "tcp") {
		// Counting needs our own dialer; TLS hosts and ssh:// are not supported here.
		testenv.Missing(t, "DOCKER_HOST %q: the integration tests need a unix:// or tcp:// Engine", host)
	}
	network := u.Scheme
	base := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, u.Host)
	}}
	ct := &countingTransport{base: base}
	c, err := client.New(client.WithHost(host), client.WithHTTPClient(&http.Client{Transport: ct}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, ct
}

type fixture struct {
	t       *testing.T
	cli     *client.Client
	calls   *countingTransport
	drv     *Driver
	app     drivers.App
	dir     string
	project string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	c, ct := engineClient(t)
	project := "swtest-" + rand.Text()[:10]
	project = strings.ToLower(project)
	drv, err := New(Options{Client: c, FilesDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, cli: c, calls: ct, drv: drv, dir: t.TempDir(), project: project,
		app: drivers.App{Name: "app-" + project, Project: project, Revision: "rev1"}}
	t.Cleanup(f.removeAll)
	return f
}

// removeAll deletes everything with the test's project label, and nothing else.
func (f *fixture) removeAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = testproject.Remove(ctx, f.cli, f.project)
}

// bundle loads compose YAML the way the CLI does, from a file in the fixture's directory.
func (f *fixture) bundle(yaml string) *manifests.Bundle {
	f.t.Helper()
	path := filepath.Join(f.dir, "compose.yaml")
	yaml = strings.ReplaceAll(yaml, "IMAGE", testImageTag())
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		f.t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{path}, cli.WithWorkingDirectory(f.dir), cli.WithName(f.project), cli.WithResolvedPaths(true))
	if err != nil {
		f.t.Fatal(err)
	}
	p, err := opts.LoadProject(f.t.Context())
	if err != nil {
		f.t.Fatalf("load compose: %v", err)
	}
	return &manifests.Bundle{Revision: f.app.Revision, Compose: &manifests.Compose{Project: p}}
}

func (f *fixture) plan(b *manifests.Bundle) *drivers.Plan {
	f.t.Helper()
	p, err := f.drv.Plan(f.t.Context(), f.app, b)
	if err != nil {
		f.t.Fatalf("plan: %v", err)
	}
	return p
}

func (f *fixture) apply(p *drivers.Plan, opts drivers.ApplyOptions) drivers.ChangeSet {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.t.Context(), 45*time.Second)
	defer cancel()
	cs, err := f.drv.Apply(ctx, p, opts)
	if err != nil {
		f.t.Fatalf("apply: %v\nplan:\n%s", err, StepsText(p))
	}
	return cs
}

// containers maps container name to its summary for the test's project.
func (f *fixture) containers() map[string]ctr.Summary {
	f.t.Helper()
	res, err := f.cli.ContainerList(f.t.Context(), client.ContainerListOptions{All: true, Filters: projectFilter(f.project)})
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]ctr.Summary{}
	for _, c := range res.Items {
		out[strings.TrimPrefix(c.Names[0], "/")] = c
	}
	return out
}

func (f *fixture) name(service string) string { return f.project + "-" + service + "-1" }

func changeOf(p drivers.ChangeSet, ref string) drivers.Change {
	for _, c := range p {
		if c.Ref.String() == ref {
			return c
		}
	}
	return drivers.Change{Action: "absent"}
}

const threeServices = `
services:
  api:
    image: IMAGE
    environment:
      MESSAGE: api
    healthcheck:
      test: ["CMD", "/app", "-healthcheck"]
      interval: 1s
      timeout: 2s
      retries: 5
  web:
    image: IMAGE
    environment:
      MESSAGE: WEB_MESSAGE
    depends_on:
      api:
        condition: service_healthy
  job:
    image: IMAGE
    command: ["-exit", "0"]
    restart: "no"
`

// TestLifecycle walks one app through deploy, no-op, change, drift, prune and delete,
// each phase starting from the live state the previous one left.
func TestLifecycle(t *testing.T) {
	f := newFixture(t)
	v1 := f.bundle(strings.ReplaceAll(threeServices, "WEB_MESSAGE", "one"))
	live := lifecycleDeploy(t, f, v1)
	lifecycleNoop(t, f, v1)
	v2 := f.bundle(strings.ReplaceAll(threeServices, "WEB_MESSAGE", "two"))
	lifecycleRecreate(t, f, v2, live)
	lifecycleHeal(t, f, v2)
	lifecyclePrune(t, f)
	lifecycleDelete(t, f)
}

func lifecycleDeploy(t *testing.T, f *fixture, v1 *manifests.Bundle) map[string]ctr.Summary {
	// First deploy: web must start only once api is healthy.
	p := f.plan(v1)
	for _, ref := range []string{"service/api", "service/web", "service/job", "network/default"} {
		if got := changeOf(p.Changes, ref).Action; got != drivers.ActionCreate {
			t.Fatalf("first plan: %s is %s, want create\n%s", ref, got, p.String())
		}
	}
	var apiHealthyAtWebStart atomic.Bool
	var progress []string
	f.apply(p, drivers.ApplyOptions{Prune: true, Progress: func(pr drivers.Progress) {
		progress = append(progress, fmt.Sprintf("%s:%t", pr.Change.Ref, pr.Done))
		if pr.Change.Ref.String() == "service/web" && pr.Done {
			api := f.containers()[f.name("api")]
			apiHealthyAtWebStart.Store(strings.Contains(api.Status, "(healthy)"))
		}
	}})
	if f.calls.writes.Load() == 0 {
		t.Error("the counting transport saw no writes during a first deploy")
	}
	if !apiHealthyAtWebStart.Load() {
		t.Errorf("web started before api was healthy")
	}
	if !slices.Contains(progress, "service/web:false") || !slices.Contains(progress, "service/web:true") {
		t.Errorf("progress missed web's start or end: %v", progress)
	}
	live := f.containers()
	assertFirstDeploy(t, f, live)

	return live
}

func lifecycleNoop(t *testing.T, f *fixture, v1 *manifests.Bundle) {
	// No-op: InSync, three reads to plan, zero writes to apply.
	f.calls.reset()
	p := f.plan(v1)
	if !p.InSync() {
		t.Fatalf("plan after deploy is not in sync:\n%s", p.String())
	}
	if r := f.calls.reads.Load(); r != 3 {
		t.Errorf("no-op plan made %d reads, want 3", r)
	}
	f.apply(p, drivers.ApplyOptions{Prune: true})
	if w := f.calls.writes.Load(); w != 0 {
		t.Errorf("no-op apply made %d writes: %v", w, f.calls.writeLog)
	}

}

func lifecycleRecreate(t *testing.T, f *fixture, v2 *manifests.Bundle, live map[string]ctr.Summary) {
	ctx := t.Context()
	// Changing web's environment recreates web only, under the same name.
	p := f.plan(v2)
	if got := changeOf(p.Changes, "service/web").Action; got != drivers.ActionRecreate {
		t.Fatalf("web is %s after env change, want recreate\n%s", got, p.String())
	}
	if n := len(p.Changes.Changed()); n != 1 {
		t.Fatalf("env change of web changes %d resources, want 1\n%s", n, p.String())
	}
	f.apply(p, drivers.ApplyOptions{Prune: true})
	after := f.containers()
	if len(after) != 3 {
		t.Fatalf("after recreate: %d containers, want 3 (no temporary left): %v", len(after), slices.Collect(mapKeys(after)))
	}
	for svc, same := range map[string]bool{"api": true, "job": true, "web": false} {
		if (after[f.name(svc)].ID == live[f.name(svc)].ID) != same {
			t.Errorf("%s: container ID unchanged=%t, want %t", svc, !same, same)
		}
	}
	inspect, err := f.cli.ContainerInspect(ctx, f.name("web"), client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(inspect.Container.Config.Env, "MESSAGE=two") || !inspect.Container.State.Running {
		t.Errorf("recreated web: env %v running %t", inspect.Container.Config.Env, inspect.Container.State.Running)
	}

}

func lifecycleHeal(t *testing.T, f *fixture, v2 *manifests.Bundle) {
	ctx := t.Context()
	// A container removed by hand is planned back and healed.
	if _, err := f.cli.ContainerRemove(ctx, f.name("web"), client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	p := f.plan(v2)
	if !strings.Contains(StepsText(p), string(StepCreateContainer)) || p.InSync() {
		t.Fatalf("plan after removing web does not create it:\n%s\n%s", p.String(), StepsText(p))
	}
	f.apply(p, drivers.ApplyOptions{Prune: true})
	if c, ok := f.containers()[f.name("web")]; !ok || c.State != ctr.StateRunning {
		t.Fatalf("web not healed: %+v", c)
	}
	waitHealthy(t, f)

}

func lifecyclePrune(t *testing.T, f *fixture) {
	// Removing a service from Git: skipped without prune, removed with it.
	v3 := f.bundle(strings.Split(strings.ReplaceAll(threeServices, "WEB_MESSAGE", "two"), "  job:")[0])
	p := f.plan(v3)
	if got := changeOf(p.Changes, "service/job").Action; got != drivers.ActionDelete {
		t.Fatalf("job is %s after removal from Git, want delete\n%s", got, p.String())
	}
	cs := f.apply(p, drivers.ApplyOptions{Prune: false})
	if c := changeOf(cs, "service/job"); !c.Skipped {
		t.Errorf("prune=false: job change %+v not skipped", c)
	}
	if _, ok := f.containers()[f.name("job")]; !ok {
		t.Fatalf("prune=false removed job")
	}
	f.apply(f.plan(v3), drivers.ApplyOptions{Prune: true})
	if _, ok := f.containers()[f.name("job")]; ok {
		t.Fatalf("prune=true left job")
	}
	if p := f.plan(v3); !p.InSync() {
		t.Fatalf("not in sync after prune:\n%s", p.String())
	}

}

func lifecycleDelete(t *testing.T, f *fixture) {
	ctx := t.Context()
	// An empty bundle removes everything the app owns.
	p := f.plan(&manifests.Bundle{})
	f.apply(p, drivers.ApplyOptions{Prune: true})
	if n := len(f.containers()); n != 0 {
		t.Fatalf("%d containers left after deleting the app", n)
	}
	nets, err := f.cli.NetworkList(ctx, client.NetworkListOptions{Filters: projectFilter(f.project)})
	if err != nil || len(nets.Items) != 0 {
		t.Fatalf("networks left after deleting the app: %v %v", nets.Items, err)
	}
	if h, err := f.drv.Health(ctx, f.app); err != nil || h.Status != drivers.HealthMissing {
		t.Fatalf("health of a deleted app: %+v %v, want Missing", h, err)
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func assertFirstDeploy(t *testing.T, f *fixture, live map[string]ctr.Summary) {
	t.Helper()
	if len(live) != 3 {
		t.Fatalf("got containers %v, want 3", slices.Collect(mapKeys(live)))
	}
	if c := live[f.name("api")]; c.State != ctr.StateRunning {
		t.Errorf("api: %s %s", c.State, c.Status)
	}
	if c := live[f.name("web")]; c.State != ctr.StateRunning {
		t.Errorf("web: %s %s", c.State, c.Status)
	}
	if c := live[f.name("job")]; c.State != ctr.StateExited || !strings.HasPrefix(c.Status, "Exited (0)") {
		t.Errorf("job: %s %s, want exited 0", c.State, c.Status)
	}
	img, err := f.cli.ImageInspect(t.Context(), testImageTag())
	if err != nil {
		t.Fatal(err)
	}
	web := live[f.name("web")].Labels
	want := map[string]string{
		LabelProject:     f.project,
		LabelService:     "web",
		LabelNumber:      "1",
		LabelOneoff:      "False",
		LabelImage:       img.ID,
		LabelDependsOn:   "api:service_healthy:false",
		LabelWorkingDir:  f.dir,
		LabelConfigFiles: filepath.Join(f.dir, "compose.yaml"),
		LabelVersion:     ComposeVersion,
		LabelApp:         f.app.Name,
		LabelRevision:    f.app.Revision,
	}
	for k, v := range want {
		if web[k] != v {
			t.Errorf("web label %s = %q, want %q", k, web[k], v)
		}
	}
	for _, k := range []string{LabelConfigHash, LabelSpecHash, LabelDesired} {
		if web[k] == "" {
			t.Errorf("web label %s is empty", k)
		}
	}
	nets, err := f.cli.NetworkList(t.Context(), client.NetworkListOptions{Filters: projectFilter(f.project)})
	if err != nil || len(nets.Items) != 1 {
		t.Fatalf("networks: %v %v", nets.Items, err)
	}
	n := nets.Items[0]
	if n.Name != f.project+"_default" || n.Labels[LabelNetwork] != "default" || n.Labels[LabelApp] != f.app.Name {
		t.Errorf("network %s labels %v", n.Name, n.Labels)
	}
}

// waitHealthy polls Health until Healthy: api's healthcheck needs a second or two.
func waitHealthy(t *testing.T, f *fixture) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		h, err := f.drv.Health(t.Context(), f.app)
		if err != nil {
			t.Fatal(err)
		}
		if h.Status == drivers.HealthHealthy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("app not healthy: %+v", h)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func TestWatchReportsKilledContainer(t *testing.T) {
	f := newFixture(t)
	b := f.bundle(`
services:
  web:
    image: IMAGE
    restart: "no"
`)
	f.apply(f.plan(b), drivers.ApplyOptions{Prune: true})
	ctx, cancel := context.WithCancel(t.Context())
	events, err := f.drv.Watch(ctx, f.app)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // let the subscription reach the Engine
	if _, err := f.cli.ContainerKill(t.Context(), f.name("web"), client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for got := false; !got; {
		select {
		case e := <-events:
			got = e.Ref.String() == "service/web" && e.Reason == "die"
		case <-timeout:
			t.Fatal("no die event for web within 10s")
		}
	}
	if h, err := f.drv.Health(t.Context(), f.app); err != nil || h.Status != drivers.HealthDegraded {
		t.Errorf("health of a killed service: %+v %v, want Degraded", h, err)
	}
	p := f.plan(b)
	if p.InSync() {
		t.Errorf("a killed service is in sync:\n%s", p.String())
	}
	cancel()
	for range events { // the channel must close once ctx ends
	}
}

func TestMissingImageIsStalled(t *testing.T) {
	f := newFixture(t)
	b := f.bundle("services:\n  web:\n    image: shipwatch-test/absent:none\n    pull_policy: never\n")
	_, err := f.drv.Apply(t.Context(), f.plan(b), drivers.ApplyOptions{Prune: true})
	if !errors.Is(err, ErrImageNotFound) || !errors.Is(err, drivers.ErrInvalidSpec) || !strings.Contains(err.Error(), "shipwatch-test/absent:none") {
		t.Fatalf("apply with a missing image under pull_policy never: %v, want ErrImageNotFound (an invalid spec) naming the image", err)
	}
}

// TestUnreachableRegistryIsRetried: a registry that does not answer may answer later, so the
// revision is retried, not stalled.
func TestUnreachableRegistryIsRetried(t *testing.T) {
	f := newFixture(t)
	// Nothing listens on port 1: the pull fails at once.
	const image = "127.0.0.1:1/shipwatch-test/absent:none"
	b := f.bundle("services:\n  web:\n    image: " + image + "\n")
	_, err := f.drv.Apply(t.Context(), f.plan(b), drivers.ApplyOptions{Prune: true})
	if !errors.Is(err, ErrImagePull) || errors.Is(err, drivers.ErrInvalidSpec) || !strings.Contains(err.Error(), image) {
		t.Fatalf("apply with an unreachable registry: %v, want ErrImagePull (transient) naming %s", err, image)
	}
}

func TestNeverDeletesForeignContainer(t *testing.T) {
	f := newFixture(t)
	// A container with the project's labels but another app's: as if started by hand.
	_, err := f.cli.ContainerCreate(t.Context(), client.ContainerCreateOptions{
		Name: f.project + "-old-1",
		Config: &ctr.Config{Image: testImageTag(), Labels: map[string]string{
			LabelProject: f.project, LabelService: "old", LabelNumber: "1", LabelApp: "someone-else",
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.apply(f.plan(&manifests.Bundle{}), drivers.ApplyOptions{Prune: true})
	if _, ok := f.containers()[f.project+"-old-1"]; !ok {
		t.Fatal("a container of another app was deleted")
	}
	// The last guard: a step aimed at it directly is refused.
	r := &applyRun{d: f.drv, app: f.app, desired: &Desired{Project: f.project}, log: f.drv.log}
	live := f.containers()[f.project+"-old-1"]
	err = r.removeContainer(t.Context(), &ObservedContainer{ID: live.ID, Name: f.project + "-old-1"})
	if !errors.Is(err, ErrNotOwned) {
		t.Fatalf("remove of a foreign container: %v, want ErrNotOwned", err)
	}
}

func TestRepoFileIsMaterialisedAndMounted(t *testing.T) {
	f := newFixture(t)
	conf := filepath.Join(f.dir, "app.conf")
	if err := os.WriteFile(conf, []byte("setting=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := f.bundle("services:\n  web:\n    image: IMAGE\n    volumes:\n      - ./app.conf:/etc/app.conf:ro\n")
	sum := sha256.Sum256([]byte("setting=1\n"))
	b.Compose.Files = map[string][]manifests.RepoFile{"web": {{Path: conf, Rel: "app.conf", Digest: "sha256:" + hex.EncodeToString(sum[:])}}}
	t.Cleanup(func() { _ = removeTree(f.drv.filesDir) })
	f.apply(f.plan(b), drivers.ApplyOptions{Prune: true})

	res, err := f.cli.ContainerInspect(t.Context(), f.name("web"), client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var src string
	for _, m := range res.Container.Mounts {
		if m.Destination == "/etc/app.conf" {
			src = m.Source
		}
	}
	if !strings.HasPrefix(src, f.drv.filesDir+string(filepath.Separator)) {
		t.Fatalf("app.conf mounted from %q, want a copy under %s", src, f.drv.filesDir)
	}
	if got, err := os.ReadFile(src); err != nil || string(got) != "setting=1\n" {
		t.Fatalf("materialised copy: %q %v", got, err)
	}
	if !res.Container.State.Running {
		t.Fatalf("web not running: %+v", res.Container.State)
	}
}
