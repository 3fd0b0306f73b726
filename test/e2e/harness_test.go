// Package e2e runs the shipwatch binary against the machine's real Docker Engine and real
// Git repositories made by the tests. Every test uses its own compose project name and
// removes only what carries that project's label.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shipwatch/shipwatch/internal/testproject"

	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers/docker"
	"github.com/shipwatch/shipwatch/internal/testimage"
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
	dir, err := os.MkdirTemp("", "shipwatch-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "shipwatch")
	build := exec.Command("go", "build", "-race", "-o", binary, "../../cmd/shipwatch")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build shipwatch:", err)
		return 1
	}
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
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	p := "swe2e-" + hex.EncodeToString(b)
	t.Cleanup(func() { removeProject(p) })
	return p
}

func removeProject(project string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = testproject.Remove(ctx, engine, project)
}

// containers maps service name to the IDs of its running containers.
func containers(t *testing.T, project string) map[string][]string {
	t.Helper()
	f := client.Filters{}.Add("label", docker.LabelProject+"="+project)
	cs, err := engine.ContainerList(t.Context(), client.ContainerListOptions{Filters: f})
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	out := map[string][]string{}
	for _, c := range cs.Items {
		svc := c.Labels[docker.LabelService]
		out[svc] = append(out[svc], c.ID)
	}
	return out
}

// gitRepo is a real repository on disk, changed with the git CLI.
type gitRepo struct {
	t   *testing.T
	dir string
}

func newRepo(t *testing.T, files map[string]string) *gitRepo {
	t.Helper()
	r := &gitRepo{t: t, dir: t.TempDir()}
	r.git("init", "-q", "-b", "main")
	r.commit("initial", files)
	return r
}

func (r *gitRepo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", append([]string{"-C", r.dir, "-c", "user.name=e2e", "-c", "user.email=e2e@example.test"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes files (an empty content removes the file) and commits them.
func (r *gitRepo) commit(msg string, files map[string]string) string {
	r.t.Helper()
	for name, content := range files {
		p := filepath.Join(r.dir, name)
		if content == "" {
			_ = os.Remove(p)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	r.git("add", "-A")
	r.git("commit", "-q", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

// daemon is a running `shipwatch serve`.
type daemon struct {
	t    *testing.T
	addr string
	logs *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// appConfig is one app in a generated config file.
type appConfig struct {
	name, project, drift string
	prune                bool
}

func writeConfig(t *testing.T, repoURL, addr string, apps ...appConfig) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "stateDir: %s\nlisten: %q\nrepos:\n  - name: deploy\n    url: %s\n    interval: 1s\napps:\n",
		filepath.Join(dir, "state"), addr, repoURL)
	for _, a := range apps {
		fmt.Fprintf(&b, "  - name: %s\n    repo: deploy\n    compose: {project: %s}\n    drift: %s\n    prune: %t\n    healthTimeout: 60s\n",
			a.name, a.project, a.drift, a.prune)
	}
	p := filepath.Join(dir, "shipwatch.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startDaemon runs `shipwatch serve` until the test ends.
func startDaemon(t *testing.T, configFile, addr string) *daemon {
	t.Helper()
	d := &daemon{t: t, addr: addr, logs: &lockedBuffer{}}
	cmd := exec.Command(binary, "serve", "--config", configFile, "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = d.logs, d.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("shipwatch logs:\n%s", d.logs.String())
		}
	})
	return d
}

// metric returns the value of the sample whose name and labels match, or 0 when absent.
func (d *daemon) metric(name string, labels map[string]string) float64 {
	d.t.Helper()
	resp, err := http.Get("http://" + d.addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	return findSample(resp.Body, name, labels)
}

func findSample(r io.Reader, name string, labels map[string]string) float64 {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for k, v := range labels {
			if !strings.Contains(line, fmt.Sprintf("%s=%q", k, v)) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			return f
		}
	}
	return 0
}

// eventually polls cond every 200ms until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for: %s", timeout, what)
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
