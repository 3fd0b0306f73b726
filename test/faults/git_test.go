package faults

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shipwatch/shipwatch/internal/testdaemon"
	"github.com/shipwatch/shipwatch/internal/testgit"
	"github.com/shipwatch/shipwatch/internal/testproject"
	"github.com/shipwatch/shipwatch/internal/testproxy"
	"github.com/shipwatch/shipwatch/reconciler"
)

// oneService is a compose app of one long-running service whose environment says which
// commit it came from.
func oneService(message string) map[string]string {
	return map[string]string{"compose.yaml": fmt.Sprintf(
		"services:\n  web:\n    image: %s\n    environment: {MESSAGE: %q}\n    restart: unless-stopped\n", image, message)}
}

// gitApp is a daemon polling a repo served over smart HTTP through a proxy the test can take
// down, every second.
type gitApp struct {
	repo    *testgit.Repo
	proxy   *testproxy.Proxy
	daemon  *testdaemon.Daemon
	project string
	// config and apiToken are the daemon's config file and its API token file.
	config, apiToken string
}

func startGitApp(t *testing.T) *gitApp {
	t.Helper()
	a := &gitApp{repo: testgit.New(t), project: uniqueProject(t)}
	a.repo.Commit("first", oneService("one"))
	const token = "tok-faults-git"
	served, err := url.Parse(testgit.StartHTTP(t, a.repo.Dir, testgit.HTTPAuth{Token: token}))
	if err != nil {
		t.Fatal(err)
	}
	a.proxy = testproxy.Start(t, "tcp", "tcp", served.Host)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	a.apiToken = filepath.Join(dir, "api-token")
	for file, content := range map[string]string{tokenFile: token, a.apiToken: "api-tok"} {
		if err := os.WriteFile(file, []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr := testdaemon.FreeAddr(t)
	a.config = filepath.Join(dir, "shipwatch.yaml")
	doc := fmt.Sprintf(`stateDir: %s
listen: %q
api: {tokenFile: %s}
repos:
  - name: deploy
    url: http://%s%s
    interval: 1s
    auth: {tokenFile: %s}
apps:
  - {name: app, repo: deploy, compose: {project: %s}, healthTimeout: 60s}
`, filepath.Join(dir, "state"), addr, a.apiToken, a.proxy.Addr, served.Path, tokenFile, a.project)
	if err := os.WriteFile(a.config, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	a.daemon = startDaemon(t, a.config, addr)
	a.waitDeployed(t, a.repo.Git("rev-parse", "HEAD"))
	return a
}

// waitDeployed waits until rev is applied, Synced, with one web container.
func (a *gitApp) waitDeployed(t *testing.T, rev string) {
	t.Helper()
	eventually(t, 90*time.Second, "revision "+rev[:12]+" deployed and Synced", func() bool {
		st := a.daemon.Status(t, "app")
		return st.AppliedRevision == rev && st.Sync == reconciler.SyncSynced &&
			len(testproject.Containers(t, engine, a.project, false)["web"]) == 1
	})
}

func (a *gitApp) webID(t *testing.T) string {
	t.Helper()
	ids := testproject.Containers(t, engine, a.project, true)["web"]
	if len(ids) != 1 {
		t.Fatalf("web containers: %v, want exactly one", ids)
	}
	return ids[0]
}

func (a *gitApp) gitErrors(t *testing.T) float64 {
	return a.daemon.Metric(t, "shipwatch_git_requests_total", map[string]string{"repo": "deploy", "result": "error"})
}

// TestGitServerDownForTenPolls: with the Git server gone for ten polls nothing is written,
// the running revision is kept, the outage is visible (metric, status not Synced), and the
// commit pushed meanwhile is deployed within one interval of the server's return.
func TestGitServerDownForTenPolls(t *testing.T) {
	a := startGitApp(t)
	running := a.webID(t)
	before := a.gitErrors(t)

	a.proxy.Down()
	eventually(t, 60*time.Second, "ten failed polls", func() bool { return a.gitErrors(t)-before >= 10 })
	st := a.daemon.Status(t, "app")
	if st.Sync == reconciler.SyncSynced || st.LastError == nil || st.LastError.Stage != reconciler.StageFetch {
		t.Errorf("status during the outage = sync %s, last error %+v; want not Synced, FetchFailed", st.Sync, st.LastError)
	}
	if id := a.webID(t); id != running {
		t.Errorf("the running container changed during the outage: %s -> %s", running, id)
	}
	next := a.repo.Commit("during the outage", oneService("two"))

	a.proxy.Up()
	back := time.Now()
	eventually(t, 30*time.Second, "the new commit seen", func() bool { return a.daemon.Status(t, "app").DesiredRevision == next })
	seen := time.Since(back)
	a.waitDeployed(t, next)
	deployed := time.Since(back)
	if seen > 5*time.Second {
		t.Errorf("the new commit was seen %s after Git came back, want within about one interval (1s)", seen)
	}
	lost := 0
	if id := a.webID(t); id == running {
		lost++ // the new commit did not reach the container
	}
	record(t, Outcome{Fault: "Git server down for 10 polls", Injected: 10, Runs: 1, Converged: 1, Lost: lost,
		Notes: []string{fmt.Sprintf("seen-after=%s deployed-after=%s", seen.Round(100*time.Millisecond), deployed.Round(100*time.Millisecond))}})
}

// TestForcePushRemovesTheDeployedCommit: the branch is rewritten so the running commit is in
// no history any more; the daemon deploys the new head, and a rollback to the removed
// commit is refused by name rather than deployed from a stale cache.
func TestForcePushRemovesTheDeployedCommit(t *testing.T) {
	a := startGitApp(t)
	first := a.repo.Git("rev-parse", "HEAD")
	second := a.repo.Commit("second", oneService("two"))
	a.waitDeployed(t, second)

	a.repo.Git("reset", "-q", "--hard", first)
	rewritten := a.repo.Commit("rewritten", oneService("three"))
	a.repo.Git("reflog", "expire", "--expire=now", "--all")
	a.repo.Git("gc", "-q", "--prune=now")
	a.waitDeployed(t, rewritten)

	code, out := runCLI(t, "rollback", "app", "--config", a.config, "--token-file", a.apiToken, "--to", second)
	if code == 0 || !strings.Contains(out, "cannot roll back to that revision") {
		t.Errorf("rollback to the force-pushed-away commit: exit %d\n%s\nwant a refusal naming it", code, out)
	}
	st := a.daemon.Status(t, "app")
	converged := 0
	if st.AppliedRevision == rewritten && st.Sync == reconciler.SyncSynced && st.Pin == nil {
		converged = 1
	}
	record(t, Outcome{Fault: "force-push removing the deployed commit", Injected: 1, Runs: 1, Converged: converged})
}
