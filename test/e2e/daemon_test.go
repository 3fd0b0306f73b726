package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers/docker"
	"github.com/shipwatch/shipwatch/internal/testdaemon"
	"github.com/shipwatch/shipwatch/reconciler"
)

func simpleApp(message string) map[string]string {
	return map[string]string{"compose.yaml": fmt.Sprintf(`services:
  web:
    image: %s
    environment:
      MESSAGE: %q
    restart: unless-stopped
`, image, message)}
}

// deploySimpleApp runs a daemon (sync: auto, API token "t0k") on a new repository holding
// simpleApp(message) and waits until its one web container runs; it returns the compose
// project, the daemon and the container's ID.
func deploySimpleApp(t *testing.T, message, drift string) (string, *testdaemon.Daemon, string) {
	t.Helper()
	project := uniqueProject(t)
	repo := newRepo(t, simpleApp(message))
	addr := testdaemon.FreeAddr(t)
	cfg := testdaemon.Config{RepoURL: repo.Dir, Addr: addr, Project: project, Drift: drift, Sync: "auto", Token: "t0k"}.Write(t)
	d := startDaemon(t, cfg, addr)
	eventually(t, 60*time.Second, "deployed", func() bool {
		return len(containers(t, project)["web"]) == 1 && d.Status(t, "app").Sync == reconciler.SyncSynced
	})
	return project, d, containers(t, project)["web"][0]
}

func TestDriftIsSeenThroughEngineEvents(t *testing.T) {
	for _, policy := range []string{"heal", "alert"} {
		t.Run(policy, func(t *testing.T) {
			project, d, web := deploySimpleApp(t, "events", policy)

			// docker stop: the container is exited under restart: unless-stopped.
			if _, err := engine.ContainerStop(t.Context(), web, client.ContainerStopOptions{}); err != nil {
				t.Fatal(err)
			}
			if policy == "heal" {
				eventually(t, 20*time.Second, "stopped container started again", func() bool {
					return len(containers(t, project)["web"]) == 1
				})
			} else {
				eventually(t, 20*time.Second, "stop reported as drift", func() bool {
					st := d.Status(t, "app")
					return len(st.Drift) == 1 && st.Sync == reconciler.SyncOutOfSync
				})
				if n := len(containers(t, project)["web"]); n != 0 {
					t.Errorf("drift: alert restarted web")
				}
				if d.Post(t, "/api/v1/apps/app/sync", "t0k") != http.StatusOK {
					t.Fatalf("sync through the API failed")
				}
			}
			eventually(t, 20*time.Second, "in sync again", func() bool {
				return d.Status(t, "app").Sync == reconciler.SyncSynced && len(d.Status(t, "app").Drift) == 0
			})

			// A container started by hand into the project: reported, never removed.
			hand := startHandContainer(t, project)
			eventually(t, 20*time.Second, "hand-made container reported", func() bool {
				st := d.Status(t, "app")
				return len(st.Drift) == 1 && st.Drift[0].Unmanaged && st.Sync == reconciler.SyncOutOfSync &&
					d.Metric(t, "shipwatch_app_drifted_resources", map[string]string{"app": "app"}) == 1
			})
			if _, err := engine.ContainerInspect(t.Context(), hand, client.ContainerInspectOptions{}); err != nil {
				t.Errorf("the hand-made container was touched: %v", err)
			}
			want := 2.0
			if got := d.Metric(t, "shipwatch_drift_detected_total", map[string]string{"app": "app", "policy": policy}); got != want {
				t.Errorf("drift episodes = %v, want %v (stop, hand-made container)", got, want)
			}
			if got := d.Metric(t, "shipwatch_git_requests_total", map[string]string{"repo": "deploy", "op": "ls-remote", "result": "success"}); got > 2 {
				t.Errorf("%v ls-remotes: event-driven passes must not poll Git", got)
			}
		})
	}
}

// TestDockerUpdateIsHealedInPlace changes the restart policy by hand, as
// `docker update --restart no` does, which leaves every label alone: the Engine's update
// event makes the daemon inspect the container, and drift: heal puts the policy back on the
// same container.
func TestDockerUpdateIsHealedInPlace(t *testing.T) {
	project, d, web := deploySimpleApp(t, "update", "heal")
	_, err := engine.ContainerUpdate(t.Context(), web, client.ContainerUpdateOptions{
		RestartPolicy: &container.RestartPolicy{Name: container.RestartPolicyDisabled},
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "restart policy healed on the same container", func() bool {
		inspect, err := engine.ContainerInspect(t.Context(), web, client.ContainerInspectOptions{})
		return err == nil && inspect.Container.HostConfig.RestartPolicy.Name == container.RestartPolicyUnlessStopped &&
			d.Metric(t, "shipwatch_drift_detected_total", map[string]string{"app": "app", "policy": "heal"}) >= 1
	})
	if ids := containers(t, project)["web"]; len(ids) != 1 || ids[0] != web {
		t.Errorf("web was recreated: %v, want the same container %s", ids, web)
	}
}

// startHandContainer runs a container labelled into the project, as `docker run --label`
// by a human would, and removes it when the test ends.
func startHandContainer(t *testing.T, project string) string {
	t.Helper()
	ctx := t.Context()
	created, err := engine.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: image, Labels: map[string]string{docker.LabelProject: project}},
		Name:   project + "-debug-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = engine.ContainerRemove(context.WithoutCancel(ctx), created.ID, client.ContainerRemoveOptions{Force: true})
	})
	if _, err := engine.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	return created.ID
}

func TestManualSyncWaitsForTheAPI(t *testing.T) {
	project := uniqueProject(t)
	repo := newRepo(t, simpleApp("manual-1"))
	addr := testdaemon.FreeAddr(t)
	cfg := testdaemon.Config{RepoURL: repo.Dir, Addr: addr, Project: project, Drift: "heal", Sync: "manual", Token: "t0k"}.Write(t)
	d := startDaemon(t, cfg, addr)
	eventually(t, 30*time.Second, "planned and held", func() bool {
		st := d.Status(t, "app")
		return st.Planned && st.Sync == reconciler.SyncOutOfSync && st.DesiredRevision != ""
	})
	if n := len(containers(t, project)); n != 0 {
		t.Fatalf("sync: manual deployed by itself: %d services", n)
	}
	if code := d.Post(t, "/api/v1/apps/app/sync", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("sync with a wrong token = %d, want 401", code)
	}
	code, out := runCLI(t, "sync", "app", "--remote", "--config", cfg, "--server", "http://"+addr)
	if code != 2 || !strings.Contains(out, "401") {
		t.Errorf("sync --remote without a token = %d, want 2 with 401:\n%s", code, out)
	}
	t.Setenv("SHIPWATCH_TOKEN", "t0k")
	code, out = runCLI(t, "sync", "app", "--remote", "--config", cfg, "--server", "http://"+addr)
	if code != 0 || !strings.Contains(out, "Synced") {
		t.Fatalf("sync --remote = %d:\n%s", code, out)
	}
	if n := len(containers(t, project)["web"]); n != 1 {
		t.Fatalf("web not running after the API sync")
	}
	code, out = runCLI(t, "status", "--config", cfg, "--server", "http://"+addr, "-o", "json")
	var list []reconciler.Status
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].Health != "Healthy" {
		t.Errorf("status -o json = %d:\n%s", code, out)
	}
}

// engineProxy forwards a unix socket to the Engine's and can cut every connection, as an
// Engine restart would.
type engineProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startEngineProxy(t *testing.T) *engineProxy {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	p := &engineProxy{ln: ln}
	t.Cleanup(func() { _ = ln.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *engineProxy) host() string { return "unix://" + p.ln.Addr().String() }

func (p *engineProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("unix", "/var/run/docker.sock")
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
		go func() { _, _ = io.Copy(c, up); _ = c.Close() }()
	}
}

// cut closes every open connection, the event stream among them.
func (p *engineProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			continue
		}
	}
	p.conns = nil
}

func TestEventStreamIsReestablished(t *testing.T) {
	project := uniqueProject(t)
	repo := newRepo(t, simpleApp("reconnect"))
	addr := testdaemon.FreeAddr(t)
	proxy := startEngineProxy(t)
	cfg := testdaemon.Config{RepoURL: repo.Dir, Addr: addr, Project: project, Drift: "heal", Sync: "auto",
		Token: "t0k", DockerHost: proxy.host()}.Write(t)
	d := startDaemon(t, cfg, addr)
	eventually(t, 60*time.Second, "deployed", func() bool {
		return len(containers(t, project)["web"]) == 1 && d.Status(t, "app").Sync == reconciler.SyncSynced
	})
	before := d.Metric(t, "shipwatch_reconcile_total", map[string]string{"app": "app", "result": "success"})
	proxy.cut()
	eventually(t, 20*time.Second, "a full re-plan after the stream came back", func() bool {
		return d.Metric(t, "shipwatch_reconcile_total", map[string]string{"app": "app", "result": "success"}) > before
	})
	web := containers(t, project)["web"][0]
	removeContainer(t, web)
	eventually(t, 20*time.Second, "removal seen through the new stream and healed", func() bool {
		cs := containers(t, project)["web"]
		return len(cs) == 1 && cs[0] != web
	})
}
