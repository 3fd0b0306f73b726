package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shipwatch/shipwatch/internal/testdaemon"
	"github.com/shipwatch/shipwatch/internal/testgit"
	"github.com/shipwatch/shipwatch/reconciler"
)

// webCompose is a one-service app; changing msg changes the service's config hash.
func webCompose(msg string) string {
	return fmt.Sprintf("services:\n  web:\n    image: %s\n    environment:\n      MESSAGE: %q\n", image, msg)
}

// bareClone makes a bare copy of src named deploy.git, the "server side" the daemon
// reads; commits reach it with `git push`, as they would in production.
func bareClone(t *testing.T, src *testgit.Repo) string {
	t.Helper()
	bare := filepath.Join(t.TempDir(), "deploy.git")
	src.Git("clone", "-q", "--bare", src.Dir, bare)
	return bare
}

func randomSecret(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// assertNoSecret fails when secret appears in the daemon's logs or metrics.
func assertNoSecret(t *testing.T, d *testdaemon.Daemon, secret string) {
	t.Helper()
	if strings.Contains(d.Logs(t), secret) {
		t.Errorf("a credential appears in the daemon's logs")
	}
	if strings.Contains(string(d.Get(t, "/metrics")), secret) {
		t.Errorf("a credential appears in /metrics")
	}
}

func TestDeployOverSmartHTTPWithBasicAuth(t *testing.T) {
	const user = "deployer"
	password := randomSecret("pw-")
	work := newRepo(t, map[string]string{"compose.yaml": webCompose("v1")})
	bare := bareClone(t, work)
	url := testgit.StartHTTP(t, bare, testgit.HTTPAuth{User: user, Password: password})

	t.Run("deploys and follows pushes", func(t *testing.T) {
		project := uniqueProject(t)
		addr := testdaemon.FreeAddr(t)
		auth := map[string]string{"usernameFile": testgit.SecretFile(t, user), "passwordFile": testgit.SecretFile(t, password)}
		cfg := pollConfig{repoURL: url, addr: addr, auth: auth, apps: []appConfig{{name: "web-http", project: project, drift: "heal", prune: true}}}.write(t)
		d := startDaemon(t, cfg, addr)

		eventually(t, 60*time.Second, "first deploy over HTTP", func() bool {
			return len(containers(t, project)["web"]) == 1 &&
				d.Metric(t, "shipwatch_app_sync_status", map[string]string{"app": "web-http", "status": "Synced"}) == 1
		})
		first := containers(t, project)["web"][0]

		work.Commit("v2", map[string]string{"compose.yaml": webCompose("v2")})
		work.Git("push", "-q", bare, "main")
		eventually(t, 30*time.Second, "pushed commit deployed", func() bool {
			ids := containers(t, project)["web"]
			return len(ids) == 1 && ids[0] != first
		})
		if n := d.Metric(t, "shipwatch_git_requests_total", map[string]string{"repo": "deploy", "op": "fetch", "result": "success"}); n < 1 {
			t.Errorf("successful fetches = %v, want ≥ 1", n)
		}
		assertNoSecret(t, d, password)
	})

	t.Run("a wrong password deploys nothing", func(t *testing.T) {
		project := uniqueProject(t)
		addr := testdaemon.FreeAddr(t)
		wrong := randomSecret("wrong-")
		auth := map[string]string{"usernameFile": testgit.SecretFile(t, user), "passwordFile": testgit.SecretFile(t, wrong)}
		cfg := pollConfig{repoURL: url, addr: addr, auth: auth, apps: []appConfig{{name: "web-denied", project: project, drift: "heal", prune: true}}}.write(t)
		d := startDaemon(t, cfg, addr)

		// A rejected credential is stalled, not retried with backoff: it waits an interval.
		eventually(t, 30*time.Second, "git errors reported and the pass stalled", func() bool {
			return d.Metric(t, "shipwatch_git_requests_total", map[string]string{"repo": "deploy", "result": "error"}) > 0 &&
				d.Metric(t, "shipwatch_reconcile_total", map[string]string{"app": "web-denied", "result": "stalled"}) > 0
		})
		if st := d.Status(t, "web-denied"); st.LastError == nil || st.LastError.Class != reconciler.ClassStalled || st.LastError.Stage != reconciler.StageFetch {
			t.Errorf("last error = %+v, want a stalled FetchFailed", st.LastError)
		}
		if n := d.Metric(t, "shipwatch_git_requests_total", map[string]string{"repo": "deploy", "op": "fetch", "result": "success"}); n != 0 {
			t.Errorf("successful fetches with a wrong password = %v", n)
		}
		if cs := containers(t, project); len(cs) != 0 {
			t.Errorf("a wrong password deployed %v", cs)
		}
		assertNoSecret(t, d, wrong)
		assertNoSecret(t, d, password)
	})
}

func TestDeployOverSSHWithPinnedHostKey(t *testing.T) {
	srv := testgit.StartSSHD(t, "127.0.0.1", 0)
	work := newRepo(t, map[string]string{"compose.yaml": webCompose("ssh-v1")})
	bare := bareClone(t, work)
	url := fmt.Sprintf("ssh://root@%s%s", srv.Addr, bare)

	project := uniqueProject(t)
	addr := testdaemon.FreeAddr(t)
	auth := map[string]string{"sshKeyFile": srv.ClientKey, "knownHostsFile": srv.KnownHosts}
	cfg := pollConfig{repoURL: url, addr: addr, auth: auth, apps: []appConfig{{name: "web-ssh", project: project, drift: "heal", prune: true}}}.write(t)
	d := startDaemon(t, cfg, addr)
	eventually(t, 60*time.Second, "first deploy over ssh", func() bool {
		return len(containers(t, project)["web"]) == 1 &&
			d.Metric(t, "shipwatch_app_sync_status", map[string]string{"app": "web-ssh", "status": "Synced"}) == 1
	})
	if n := d.Metric(t, "shipwatch_git_requests_total", map[string]string{"repo": "deploy", "op": "fetch", "result": "success"}); n < 1 {
		t.Errorf("successful fetches = %v, want ≥ 1", n)
	}
	if strings.Contains(d.Logs(t), "PRIVATE KEY") {
		t.Errorf("the daemon logged private key material")
	}

	t.Run("a different pinned host key is refused", func(t *testing.T) {
		impostor, _ := testgit.NewKey(t)
		project := uniqueProject(t)
		auth := map[string]string{"sshKeyFile": srv.ClientKey, "knownHostsFile": testgit.WriteKnownHosts(t, impostor, srv.Addr)}
		cfg := pollConfig{repoURL: url, auth: auth, apps: []appConfig{{name: "web-ssh", project: project, drift: "heal", prune: true}}}.write(t)
		code, out := runCLI(t, "validate", "--config", cfg)
		if code != 2 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "host key") {
			t.Errorf("validate with a different host key = %d, want 2 naming the host key:\n%s", code, out)
		}
		if cs := containers(t, project); len(cs) != 0 {
			t.Errorf("a refused host key deployed %v", cs)
		}
	})
}
