// Package bench holds shipwatch's benchmarks. They need a real Docker Engine and are run
// on purpose, never as part of `go test ./...` timing: see docs/benchmarks.md.
package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/drivers/docker"
	"github.com/shipwatch/shipwatch/internal/testimage"
	"github.com/shipwatch/shipwatch/internal/testproject"
	"github.com/shipwatch/shipwatch/manifests"
)

// benchImage is built locally (FROM scratch): no registry is reachable.
const benchImage = "shipwatch-bench/app:1"

var serviceCounts = []int{1, 10, 50}

// BenchmarkNoopReconcile measures the steady state of a daemon: the project is already
// deployed and nothing changed, so a reconcile must only read. One op is what a poll costs
// on the Docker side: load the compose files, Plan (observe live state, compare), check the
// plan is in sync and Apply it (which must do nothing). It is compared with `docker-compose
// up -d` on an identical, already running project, the manual equivalent.
//
// Metrics: ns/op, api-calls/op (Engine API requests), writes/op (requests other than GET
// and HEAD, expected 0). Run with a fixed count, e.g. -benchtime=20x.
func BenchmarkNoopReconcile(b *testing.B) {
	socket := engineSocket(b)
	for _, n := range serviceCounts {
		b.Run(fmt.Sprintf("shipwatch/services=%d", n), func(b *testing.B) {
			benchShipwatch(b, socket, n)
		})
	}
	for _, n := range serviceCounts {
		b.Run(fmt.Sprintf("compose/services=%d", n), func(b *testing.B) {
			benchCompose(b, socket, n)
		})
	}
}

func benchShipwatch(b *testing.B, socket string, n int) {
	ctx := b.Context()
	counter := newAPICounter()
	cli := countingClient(b, socket, counter)
	testimage.Build(ctx, b, cli, benchImage, "")

	project := fmt.Sprintf("swbench-shipwatch-%d", n)
	testproject.Clean(b, cli, project)
	root := writeProject(b, n)
	drv, err := docker.New(docker.Options{Client: cli, FilesDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	app := drivers.App{Name: project, Project: project, Revision: "bench"}
	load := func() *manifests.Bundle {
		c, err := manifests.LoadCompose(ctx, manifests.ComposeOptions{Root: root, Path: "app", Project: project})
		if err != nil {
			b.Fatalf("load compose: %v", err)
		}
		return &manifests.Bundle{Revision: app.Revision, Compose: c}
	}

	counter.reset() // the image check above is not part of the deploy
	start := time.Now()
	plan, err := drv.Plan(ctx, app, load())
	if err != nil {
		b.Fatalf("first plan: %v", err)
	}
	if _, err := drv.Apply(ctx, plan, drivers.ApplyOptions{Prune: true}); err != nil {
		b.Fatalf("first deploy: %v", err)
	}
	deployCalls, deployWrites := counter.totals()
	b.Logf("first deploy of %d services: %s, %d API calls (%d writes)", n, time.Since(start).Round(time.Millisecond), deployCalls, deployWrites)

	counter.reset()
	ops := 0
	for b.Loop() {
		plan, err := drv.Plan(ctx, app, load())
		if err != nil {
			b.Fatalf("plan: %v", err)
		}
		if !plan.InSync() {
			b.Fatalf("no-op plan is not in sync:\n%s", plan)
		}
		done, err := drv.Apply(ctx, plan, drivers.ApplyOptions{Prune: true})
		if err != nil {
			b.Fatalf("no-op apply: %v", err)
		}
		if changed := done.Changed(); len(changed) > 0 {
			b.Fatalf("no-op apply changed %d resources", len(changed))
		}
		ops++
	}
	counter.report(b, ops)
}

func benchCompose(b *testing.B, socket string, n int) {
	bin, label := composeCLI(b)
	ctx := b.Context()
	counter := newAPICounter()
	cli := countingClient(b, socket, newAPICounter())
	testimage.Build(ctx, b, cli, benchImage, "")

	project := fmt.Sprintf("swbench-compose-%d", n)
	testproject.Clean(b, cli, project)
	root := writeProject(b, n)
	host := countingProxy(b, socket, b.TempDir(), counter)
	up := func() {
		cmd := exec.CommandContext(ctx, bin, "-p", project, "-f", filepath.Join(root, "app", "compose.yaml"), "up", "-d")
		cmd.Dir = filepath.Join(root, "app")
		cmd.Env = append(composeEnv(), "DOCKER_HOST="+host)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%s up -d: %v\n%s", label, err, out)
		}
	}

	start := time.Now()
	up()
	deployCalls, deployWrites := counter.totals()
	b.Logf("%s: first deploy of %d services: %s, %d API calls (%d writes)", label, n, time.Since(start).Round(time.Millisecond), deployCalls, deployWrites)

	counter.reset()
	ops := 0
	for b.Loop() {
		up()
		ops++
	}
	counter.report(b, ops)
}

// composeCLI picks the compose CLI to compare with: SHIPWATCH_BENCH_COMPOSE if set, else
// the v5 binary from scripts/build-compose.sh, else Debian's docker-compose 1.29.
func composeCLI(b *testing.B) (bin, label string) {
	b.Helper()
	candidates := []string{os.Getenv("SHIPWATCH_BENCH_COMPOSE")}
	if env := os.Getenv("SHIPWATCH_TESTENV"); env != "" {
		candidates = append(candidates, filepath.Join(env, "bin", "docker-compose"))
	} else if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates, filepath.Join(home, ".cache", "shipwatch-testenv", "bin", "docker-compose"))
	}
	candidates = append(candidates, "/usr/bin/docker-compose")
	for _, c := range candidates {
		if c == "" {
			continue
		}
		out, err := exec.CommandContext(b.Context(), c, "version").CombinedOutput()
		if err != nil {
			continue
		}
		label = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
		b.Logf("compose CLI: %s (%s)", c, label)
		return c, label
	}
	b.Skip("no docker-compose found: run scripts/build-compose.sh")
	return "", ""
}

// composeEnv is the environment without variables that would change how compose loads.
func composeEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "COMPOSE_") || strings.HasPrefix(kv, "DOCKER_HOST=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// writeProject writes a compose project of n identical web services under <tmp>/app and
// returns the checkout root.
func writeProject(b *testing.B, n int) string {
	b.Helper()
	root := b.TempDir()
	var sb strings.Builder
	sb.WriteString("services:\n")
	for i := range n {
		fmt.Fprintf(&sb, "  web%02d:\n    image: %s\n    environment:\n      MESSAGE: hello-%d\n    restart: unless-stopped\n", i, benchImage, i)
	}
	dir := filepath.Join(root, "app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return root
}
