package testdaemon

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Config is the config file of a daemon deploying one compose app, named "app", from one
// repo, named "deploy". The repo is polled once an hour, so whatever the daemon does within
// seconds came through the Engine's events, a webhook or the API.
type Config struct {
	// RepoURL is the repo's url: a local path, file://, https:// or ssh://.
	RepoURL string
	// Addr is the listen address (host:port), e.g. from FreeAddr.
	Addr string
	// Project is the app's compose project.
	Project string
	// Drift is the app's drift policy: heal or alert.
	Drift string
	// Sync is the app's sync policy: auto or manual.
	Sync string
	// Token is the bearer token of the API's mutating calls; empty leaves the API read-only.
	Token string
	// WebhookSecret, when set, is the repo's webhook secret: signed pushes refresh it.
	WebhookSecret string
	// DockerHost, when set, is the Engine endpoint of the app's driver (a proxy in front of
	// the Engine, to time or cut its connections).
	DockerHost string
	// HealthTimeout is the app's healthTimeout (a duration); empty means 60s.
	HealthTimeout string
	// OnFailure is the app's onFailure policy (none, rollback); empty leaves the default.
	OnFailure string
	// Extra is top-level YAML appended verbatim (notify, webhooks, shutdownTimeout).
	Extra string
}

// Write writes the config file, and the secret files it names, into a new directory that
// also holds the daemon's state dir, and returns the config file's path.
func (c Config) Write(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "stateDir: %q\nlisten: %q\n", filepath.Join(dir, "state"), c.Addr)
	if c.Token != "" {
		fmt.Fprintf(&b, "api: {tokenFile: %q}\n", writeFile(t, dir, "token", c.Token+"\n"))
	}
	fmt.Fprintf(&b, "repos:\n  - name: deploy\n    url: %q\n    interval: 1h\n", c.RepoURL)
	if c.WebhookSecret != "" {
		fmt.Fprintf(&b, "    webhook: {secretFile: %q}\n", writeFile(t, dir, "hook-secret", c.WebhookSecret+"\n"))
	}
	healthTimeout := c.HealthTimeout
	if healthTimeout == "" {
		healthTimeout = "60s"
	}
	fmt.Fprintf(&b, "apps:\n  - name: app\n    repo: deploy\n    compose: {project: %q}\n    drift: %s\n    sync: %s\n    healthTimeout: %s\n",
		c.Project, c.Drift, c.Sync, healthTimeout)
	if c.OnFailure != "" {
		fmt.Fprintf(&b, "    onFailure: %s\n", c.OnFailure)
	}
	if c.DockerHost != "" {
		fmt.Fprintf(&b, "    docker: {host: %q}\n", c.DockerHost)
	}
	b.WriteString(c.Extra)
	return writeFile(t, dir, "shipwatch.yaml", b.String())
}

// StateDir is the state dir of a config file written by Config.Write: "state" beside it.
func StateDir(configFile string) string {
	return filepath.Join(filepath.Dir(configFile), "state")
}

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
	return p
}

// FreeAddr returns a 127.0.0.1 address nothing listens on now, for a daemon's listen.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
