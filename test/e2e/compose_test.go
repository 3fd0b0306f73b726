package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shipwatch/shipwatch/internal/testdaemon"
)

// composeFile renders the test app: web reads its own variable; api and worker share
// shared.env, so a change to shared.env must recreate exactly api and worker.
func composeFile(webMessage string, withWorker bool) string {
	s := fmt.Sprintf(`services:
  web:
    image: %[1]s
    environment:
      MESSAGE: %[2]q
    restart: unless-stopped
    healthcheck:
      test: ["CMD", "/app", "-healthcheck"]
      interval: 1s
      retries: 30
  api:
    image: %[1]s
    env_file: shared.env
    restart: unless-stopped
    depends_on:
      web:
        condition: service_healthy
`, image, webMessage)
	if withWorker {
		s += fmt.Sprintf(`  worker:
    image: %s
    env_file: shared.env
    restart: unless-stopped
`, image)
	}
	return s
}

func TestComposeGitOpsLifecycle(t *testing.T) {
	project := uniqueProject(t)
	repo := newRepo(t, map[string]string{
		"compose.yaml": composeFile("hello", true),
		"shared.env":   "MESSAGE=shared-1\n",
	})
	addr := testdaemon.FreeAddr(t)
	cfg := writeConfig(t, "file://"+repo.Dir, addr, appConfig{name: "shop", project: project, drift: "heal", prune: true})
	d := startDaemon(t, cfg, addr)

	running := func(want ...string) func() bool {
		return func() bool {
			cs := containers(t, project)
			for _, svc := range want {
				if len(cs[svc]) != 1 {
					return false
				}
			}
			return len(cs) == len(want)
		}
	}
	eventually(t, 90*time.Second, "first deploy: web, api, worker running and synced", func() bool {
		return running("web", "api", "worker")() &&
			d.Metric(t, "shipwatch_app_sync_status", map[string]string{"app": "shop", "status": "Synced"}) == 1 &&
			d.Metric(t, "shipwatch_app_health_status", map[string]string{"app": "shop", "status": "Healthy"}) == 1
	})
	before := containers(t, project)

	t.Run("a commit changing one service recreates only it", func(t *testing.T) {
		repo.Commit("web says bonjour", map[string]string{"compose.yaml": composeFile("bonjour", true)})
		eventually(t, 60*time.Second, "web recreated", func() bool {
			now := containers(t, project)
			return len(now["web"]) == 1 && now["web"][0] != before["web"][0]
		})
		now := containers(t, project)
		if !slices.Equal(now["api"], before["api"]) || !slices.Equal(now["worker"], before["worker"]) {
			t.Errorf("services that did not change were recreated: before %v, after %v", before, now)
		}
		before = now
	})

	t.Run("an env file change recreates the services that read it", func(t *testing.T) {
		repo.Commit("shared env", map[string]string{"shared.env": "MESSAGE=shared-2\n"})
		eventually(t, 60*time.Second, "api and worker recreated", func() bool {
			now := containers(t, project)
			return len(now["api"]) == 1 && now["api"][0] != before["api"][0] &&
				len(now["worker"]) == 1 && now["worker"][0] != before["worker"][0]
		})
		if now := containers(t, project); !slices.Equal(now["web"], before["web"]) {
			t.Errorf("web does not read shared.env but was recreated")
		}
		before = containers(t, project)
	})

	t.Run("a removed service is pruned", func(t *testing.T) {
		repo.Commit("drop worker", map[string]string{"compose.yaml": composeFile("bonjour", false)})
		eventually(t, 60*time.Second, "worker removed", running("web", "api"))
		now := containers(t, project)
		if !slices.Equal(now["web"], before["web"]) || !slices.Equal(now["api"], before["api"]) {
			t.Errorf("pruning worker touched other services: before %v, after %v", before, now)
		}
		before = now
	})

	t.Run("a removed container is healed under drift heal", func(t *testing.T) {
		removeContainer(t, before["api"][0])
		eventually(t, 60*time.Second, "api back", func() bool {
			now := containers(t, project)
			return len(now["api"]) == 1 && now["api"][0] != before["api"][0]
		})
		eventually(t, 10*time.Second, "drift counted", func() bool {
			return d.Metric(t, "shipwatch_drift_detected_total", map[string]string{"app": "shop", "policy": "heal"}) >= 1
		})
		before = containers(t, project)
	})

	t.Run("a broken compose file leaves the app running and names the file", func(t *testing.T) {
		repo.Commit("break it", map[string]string{"compose.yaml": "services:\n  web:\n    image: [unclosed\n"})
		eventually(t, 30*time.Second, "stalled reconcile", func() bool {
			return d.Metric(t, "shipwatch_reconcile_total", map[string]string{"app": "shop", "result": "stalled"}) >= 1
		})
		if !strings.Contains(d.Logs(t), "compose.yaml") {
			t.Errorf("no log names compose.yaml")
		}
		if now := containers(t, project); !slices.Equal(now["web"], before["web"]) || !slices.Equal(now["api"], before["api"]) {
			t.Errorf("a broken commit changed running containers: before %v, after %v", before, now)
		}
	})

	t.Run("an unchanged poll fetches nothing", func(t *testing.T) {
		fetches := d.Metric(t, "shipwatch_git_requests_total", map[string]string{"repo": "deploy", "op": "fetch", "result": "success"})
		lsRemotes := d.Metric(t, "shipwatch_git_requests_total", map[string]string{"repo": "deploy", "op": "ls-remote", "result": "success"})
		if fetches < 1 {
			t.Fatalf("no fetch was ever counted")
		}
		eventually(t, 30*time.Second, "three more polls", func() bool {
			return d.Metric(t, "shipwatch_git_requests_total", map[string]string{"repo": "deploy", "op": "ls-remote", "result": "success"}) >= lsRemotes+3
		})
		if got := d.Metric(t, "shipwatch_git_requests_total", map[string]string{"repo": "deploy", "op": "fetch", "result": "success"}); got != fetches {
			t.Errorf("fetches went from %v to %v across unchanged polls", fetches, got)
		}
	})
}

func TestDriftAlertReportsWithoutHealing(t *testing.T) {
	project := uniqueProject(t)
	repo := newRepo(t, map[string]string{
		"compose.yaml": composeFile("alert", false),
		"shared.env":   "MESSAGE=x\n",
	})
	addr := testdaemon.FreeAddr(t)
	cfg := writeConfig(t, "file://"+repo.Dir, addr, appConfig{name: "watched", project: project, drift: "alert", prune: true})
	d := startDaemon(t, cfg, addr)
	eventually(t, 90*time.Second, "deployed", func() bool {
		cs := containers(t, project)
		return len(cs["web"]) == 1 && len(cs["api"]) == 1 &&
			d.Metric(t, "shipwatch_app_sync_status", map[string]string{"app": "watched", "status": "Synced"}) == 1
	})
	web := containers(t, project)["web"][0]
	removeContainer(t, web)
	eventually(t, 30*time.Second, "drift reported", func() bool {
		return d.Metric(t, "shipwatch_app_drifted_resources", map[string]string{"app": "watched"}) > 0 &&
			d.Metric(t, "shipwatch_drift_detected_total", map[string]string{"app": "watched", "policy": "alert"}) == 1
	})
	polls := d.Metric(t, "shipwatch_git_requests_total", map[string]string{"repo": "deploy", "op": "ls-remote", "result": "success"})
	eventually(t, 30*time.Second, "three more polls", func() bool {
		return d.Metric(t, "shipwatch_git_requests_total", map[string]string{"repo": "deploy", "op": "ls-remote", "result": "success"}) >= polls+3
	})
	if cs := containers(t, project); len(cs["web"]) != 0 {
		t.Errorf("drift: alert healed web: %v", cs)
	}
	if got := d.Metric(t, "shipwatch_drift_detected_total", map[string]string{"app": "watched", "policy": "alert"}); got != 1 {
		t.Errorf("one drift episode counted %v times", got)
	}
	if got := d.Metric(t, "shipwatch_app_sync_status", map[string]string{"app": "watched", "status": "OutOfSync"}); got != 1 {
		t.Errorf("app not reported OutOfSync while drifted")
	}
}

func TestOneShotDiffAndSync(t *testing.T) {
	project := uniqueProject(t)
	repo := newRepo(t, map[string]string{
		"compose.yaml": composeFile("one", false),
		"shared.env":   "MESSAGE=s\n",
	})
	cfg := writeConfig(t, repo.Dir, "", appConfig{name: "cli", project: project, drift: "heal", prune: true})

	code, out := runCLI(t, "validate", "--config", cfg)
	if code != 0 || !strings.Contains(out, "app cli: ok") {
		t.Fatalf("validate = %d:\n%s", code, out)
	}
	code, out = runCLI(t, "diff", "--config", cfg)
	if code != 1 || !strings.Contains(out, "create") {
		t.Fatalf("diff before deploy = %d, want 1 with creates:\n%s", code, out)
	}
	code, out = runCLI(t, "sync", "--config", cfg)
	if code != 0 || !strings.Contains(out, "ok   create") || !strings.Contains(out, "health Healthy") {
		t.Fatalf("sync = %d:\n%s", code, out)
	}
	code, out = runCLI(t, "diff", "--config", cfg)
	if code != 0 {
		t.Fatalf("diff after sync = %d, want 0:\n%s", code, out)
	}

	// A pull request's worktree: diff shows what merging would change, env values masked.
	wt := newRepo(t, map[string]string{
		"compose.yaml": composeFile("two-secret-value", false),
		"shared.env":   "MESSAGE=s\n",
	})
	code, out = runCLI(t, "diff", "--config", cfg, "--worktree", wt.Dir)
	if code != 1 || !strings.Contains(out, "recreate") || !strings.Contains(out, "MESSAGE") {
		t.Fatalf("diff --worktree = %d, want 1 naming MESSAGE:\n%s", code, out)
	}
	if strings.Contains(out, "two-secret-value") {
		t.Errorf("diff shows an environment value:\n%s", out)
	}

	code, out = runCLI(t, "validate", "--config", cfg, "--worktree", t.TempDir())
	if code != 2 || !strings.Contains(out, "FAILED") {
		t.Errorf("validate of an empty worktree = %d, want 2:\n%s", code, out)
	}
}
