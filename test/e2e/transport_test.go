package e2e

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const sshdPath = "/usr/sbin/sshd"

// webCompose is a one-service app; changing msg changes the service's config hash.
func webCompose(msg string) string {
	return fmt.Sprintf("services:\n  web:\n    image: %s\n    environment:\n      MESSAGE: %q\n", image, msg)
}

// bareClone makes a bare copy of src named deploy.git, the "server side" the daemon
// reads; commits reach it with `git push`, as they would in production.
func bareClone(t *testing.T, src *gitRepo) string {
	t.Helper()
	bare := filepath.Join(t.TempDir(), "deploy.git")
	src.git("clone", "-q", "--bare", src.dir, bare)
	return bare
}

// writeAuthConfig is writeConfig with an auth block; auth maps a config key
// (usernameFile, sshKeyFile...) to a file path.
func writeAuthConfig(t *testing.T, repoURL, addr string, auth map[string]string, app appConfig) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "stateDir: %s\nlisten: %q\nrepos:\n  - name: deploy\n    url: %s\n    interval: 1s\n    auth:\n",
		filepath.Join(dir, "state"), addr, repoURL)
	keys := make([]string, 0, len(auth))
	for k := range auth {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "      %s: %s\n", k, auth[k])
	}
	fmt.Fprintf(&b, "apps:\n  - name: %s\n    repo: deploy\n    compose: {project: %s}\n    drift: %s\n    prune: %t\n    healthTimeout: 60s\n",
		app.name, app.project, app.drift, app.prune)
	p := filepath.Join(dir, "shipwatch.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func randomSecret(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// metricsText returns the whole /metrics page.
func (d *daemon) metricsText() string {
	d.t.Helper()
	resp, err := http.Get("http://" + d.addr + "/metrics")
	if err != nil {
		d.t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		d.t.Fatalf("read /metrics: %v", err)
	}
	return string(b)
}

// assertNoSecret fails when secret appears in the daemon's logs or metrics.
func assertNoSecret(t *testing.T, d *daemon, secret string) {
	t.Helper()
	if strings.Contains(d.logs.String(), secret) {
		t.Errorf("a credential appears in the daemon's logs")
	}
	if strings.Contains(d.metricsText(), secret) {
		t.Errorf("a credential appears in /metrics")
	}
}

// serveGitHTTP serves the bare repository through the real `git http-backend` behind basic
// auth on a loopback port, and returns its clone URL.
func serveGitHTTP(t *testing.T, bare, user, password string) string {
	t.Helper()
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	backend := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(bare), "GIT_HTTP_EXPORT_ALL=1"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || subtle.ConstantTimeCompare([]byte(p), []byte(password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/" + filepath.Base(bare)
}

func TestDeployOverSmartHTTPWithBasicAuth(t *testing.T) {
	const user = "deployer"
	password := randomSecret("pw-")
	work := newRepo(t, map[string]string{"compose.yaml": webCompose("v1")})
	bare := bareClone(t, work)
	url := serveGitHTTP(t, bare, user, password)

	t.Run("deploys and follows pushes", func(t *testing.T) {
		project := uniqueProject(t)
		addr := freeAddr(t)
		auth := map[string]string{"usernameFile": writeFile(t, user), "passwordFile": writeFile(t, password)}
		cfg := writeAuthConfig(t, url, addr, auth, appConfig{name: "web-http", project: project, drift: "heal", prune: true})
		d := startDaemon(t, cfg, addr)

		eventually(t, 60*time.Second, "first deploy over HTTP", func() bool {
			return len(containers(t, project)["web"]) == 1 &&
				d.metric("shipwatch_app_sync_status", map[string]string{"app": "web-http", "status": "Synced"}) == 1
		})
		first := containers(t, project)["web"][0]

		work.commit("v2", map[string]string{"compose.yaml": webCompose("v2")})
		work.git("push", "-q", bare, "main")
		eventually(t, 30*time.Second, "pushed commit deployed", func() bool {
			ids := containers(t, project)["web"]
			return len(ids) == 1 && ids[0] != first
		})
		if n := d.metric("shipwatch_git_requests_total", map[string]string{"repo": "deploy", "op": "fetch", "result": "success"}); n < 1 {
			t.Errorf("successful fetches = %v, want ≥ 1", n)
		}
		assertNoSecret(t, d, password)
	})

	t.Run("a wrong password deploys nothing", func(t *testing.T) {
		project := uniqueProject(t)
		addr := freeAddr(t)
		wrong := randomSecret("wrong-")
		auth := map[string]string{"usernameFile": writeFile(t, user), "passwordFile": writeFile(t, wrong)}
		cfg := writeAuthConfig(t, url, addr, auth, appConfig{name: "web-denied", project: project, drift: "heal", prune: true})
		d := startDaemon(t, cfg, addr)

		eventually(t, 30*time.Second, "git and reconcile errors reported", func() bool {
			return d.metric("shipwatch_git_requests_total", map[string]string{"repo": "deploy", "result": "error"}) > 0 &&
				d.metric("shipwatch_reconcile_total", map[string]string{"app": "web-denied", "result": "error"}) > 0
		})
		if n := d.metric("shipwatch_git_requests_total", map[string]string{"repo": "deploy", "op": "fetch", "result": "success"}); n != 0 {
			t.Errorf("successful fetches with a wrong password = %v", n)
		}
		if cs := containers(t, project); len(cs) != 0 {
			t.Errorf("a wrong password deployed %v", cs)
		}
		assertNoSecret(t, d, wrong)
		assertNoSecret(t, d, password)
	})
}

// sshServer is a real OpenSSH sshd on a loopback port letting one key log in as root.
type sshServer struct {
	port      int
	hostKey   string // "ssh-ed25519 AAAA..."
	clientKey string // private key path
}

// sshKeygen writes a new ed25519 key pair at path and returns the public key's type and base64.
func sshKeygen(t *testing.T, path string) string {
	t.Helper()
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(pub))
	if len(fields) < 2 {
		t.Fatalf("unexpected public key %q", pub)
	}
	return fields[0] + " " + fields[1]
}

func startSSHD(t *testing.T) *sshServer {
	t.Helper()
	if _, err := os.Stat(sshdPath); err != nil {
		t.Fatalf("%s missing: install openssh-server (apt-get install -y openssh-server): %v", sshdPath, err)
	}
	dir := t.TempDir()
	s := &sshServer{clientKey: filepath.Join(dir, "client_key")}
	hostKeyPath := filepath.Join(dir, "host_key")
	s.hostKey = sshKeygen(t, hostKeyPath)
	authorized := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authorized, []byte(sshKeygen(t, s.clientKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(freeAddr(t))
	s.port, _ = strconv.Atoi(port)
	conf := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`ListenAddress 127.0.0.1:%d
HostKey %s
AuthorizedKeysFile %s
PidFile %s
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
`, s.port, hostKeyPath, authorized, filepath.Join(dir, "sshd.pid"))), 0o600); err != nil {
		t.Fatal(err)
	}
	// sshd refuses to start without its privilege separation directory.
	_ = os.MkdirAll("/run/sshd", 0o755)

	logs := &lockedBuffer{}
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", conf)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("sshd log:\n%s", logs.String())
		}
	})
	hostPort := net.JoinHostPort("127.0.0.1", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("sshd exited: %v\n%s", err, logs.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", hostPort, time.Second); err == nil {
			_ = c.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not listen on %s:\n%s", hostPort, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// knownHosts writes a known_hosts file pinning hostKey for the server's address.
func (s *sshServer) knownHosts(t *testing.T, hostKey string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(p, []byte(fmt.Sprintf("[127.0.0.1]:%d %s\n", s.port, hostKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDeployOverSSHWithPinnedHostKey(t *testing.T) {
	srv := startSSHD(t)
	work := newRepo(t, map[string]string{"compose.yaml": webCompose("ssh-v1")})
	bare := bareClone(t, work)
	url := fmt.Sprintf("ssh://root@127.0.0.1:%d%s", srv.port, bare)

	project := uniqueProject(t)
	addr := freeAddr(t)
	auth := map[string]string{"sshKeyFile": srv.clientKey, "knownHostsFile": srv.knownHosts(t, srv.hostKey)}
	cfg := writeAuthConfig(t, url, addr, auth, appConfig{name: "web-ssh", project: project, drift: "heal", prune: true})
	d := startDaemon(t, cfg, addr)
	eventually(t, 60*time.Second, "first deploy over ssh", func() bool {
		return len(containers(t, project)["web"]) == 1 &&
			d.metric("shipwatch_app_sync_status", map[string]string{"app": "web-ssh", "status": "Synced"}) == 1
	})
	if n := d.metric("shipwatch_git_requests_total", map[string]string{"repo": "deploy", "op": "fetch", "result": "success"}); n < 1 {
		t.Errorf("successful fetches = %v, want ≥ 1", n)
	}
	if strings.Contains(d.logs.String(), "PRIVATE KEY") {
		t.Errorf("the daemon logged private key material")
	}

	t.Run("a different pinned host key is refused", func(t *testing.T) {
		other := sshKeygen(t, filepath.Join(t.TempDir(), "impostor"))
		project := uniqueProject(t)
		auth := map[string]string{"sshKeyFile": srv.clientKey, "knownHostsFile": srv.knownHosts(t, other)}
		cfg := writeAuthConfig(t, url, "", auth, appConfig{name: "web-ssh", project: project, drift: "heal", prune: true})
		code, out := runCLI(t, "validate", "--config", cfg)
		if code != 2 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "host key") {
			t.Errorf("validate with a different host key = %d, want 2 naming the host key:\n%s", code, out)
		}
		if cs := containers(t, project); len(cs) != 0 {
			t.Errorf("a refused host key deployed %v", cs)
		}
	})
}
