// Package e2e runs the shipwatch binary against the machine's real Docker Engine and real
// Git repositories made by the tests. Every test uses its own compose project name and
// removes only what carries that project's label.
package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers/docker"
	"github.com/shipwatch/shipwatch/internal/testdaemon"
	"github.com/shipwatch/shipwatch/internal/testgit"
	"github.com/shipwatch/shipwatch/internal/testimage"
	"github.com/shipwatch/shipwatch/internal/testpoll"
	"github.com/shipwatch/shipwatch/internal/testproject"
)

const image = "shipwatch-e2e:v1"

var (
	binary string // built once in TestMain
	engine *client.Client
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped with -short (they need the Docker Engine and a test cluster)")
		os.Exit(0)
	}
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	ctx := context.Background()
	bin, cleanup, err := testdaemon.Build(ctx, testdaemon.BuildOptions{Module: "../..", Race: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanup()
	binary = bin
	engine, err = docker.NewClient("")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer engine.Close()
	if err := testimage.Ensure(ctx, engine, image, ""); err != nil {
		fmt.Fprintln(os.Stderr, "build test image:", err)
		return 1
	}
	return m.Run()
}

// uniqueProject returns a fresh compose project name and removes everything labelled with
// it when the test ends.
func uniqueProject(t *testing.T) string {
	t.Helper()
	return testproject.Unique(t, engine, "swe2e")
}

// containers maps service name to the IDs of its running containers.
func containers(t *testing.T, project string) map[string][]string {
	t.Helper()
	return testproject.Containers(t, engine, project, false)
}

// newRepo makes a repository whose first commit holds files.
func newRepo(t *testing.T, files map[string]string) *testgit.Repo {
	t.Helper()
	r := testgit.New(t)
	r.Commit("initial", files)
	return r
}

// appConfig is one app in a generated config file.
type appConfig struct {
	name, project, drift string
	prune                bool
}

// pollConfig is a config file whose one repo, deploy, is polled every second.
type pollConfig struct {
	repoURL, addr string
	// auth is the repo's auth block: a config key (usernameFile, sshKeyFile...) -> file path.
	auth map[string]string
	apps []appConfig
}

func (c pollConfig) write(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "stateDir: %s\nlisten: %q\nrepos:\n  - name: deploy\n    url: %s\n    interval: 1s\n",
		filepath.Join(dir, "state"), c.addr, c.repoURL)
	if len(c.auth) > 0 {
		b.WriteString("    auth:\n")
		for _, k := range slices.Sorted(maps.Keys(c.auth)) {
			fmt.Fprintf(&b, "      %s: %s\n", k, c.auth[k])
		}
	}
	b.WriteString("apps:\n")
	for _, a := range c.apps {
		fmt.Fprintf(&b, "  - name: %s\n    repo: deploy\n    compose: {project: %s}\n    drift: %s\n    prune: %t\n    healthTimeout: 60s\n",
			a.name, a.project, a.drift, a.prune)
	}
	p := filepath.Join(dir, "shipwatch.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeConfig writes a pollConfig without repo auth.
func writeConfig(t *testing.T, repoURL, addr string, apps ...appConfig) string {
	t.Helper()
	return pollConfig{repoURL: repoURL, addr: addr, apps: apps}.write(t)
}

// startDaemon runs `shipwatch serve` (built with -race, logging at debug) until the test
// ends.
func startDaemon(t *testing.T, configFile, addr string) *testdaemon.Daemon {
	t.Helper()
	return testdaemon.Start(t, testdaemon.Options{Binary: binary, Config: configFile, Addr: addr, LogLevel: "debug"})
}

// eventually polls cond every 200ms until it holds; it fails the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testpoll.Poll{Period: 200 * time.Millisecond, Timeout: timeout}.Until(t, what, cond)
}

// runCLI runs a one-shot shipwatch verb and returns its exit code and output.
func runCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), binary, args...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatalf("run shipwatch %v: %v", args, err)
	}
	return 0, string(out)
}

func removeContainer(t *testing.T, id string) {
	t.Helper()
	if _, err := engine.ContainerRemove(t.Context(), id, client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatalf("docker rm -f %s: %v", id, err)
	}
}
