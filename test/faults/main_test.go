// Package faults injects faults into a running shipwatch against the real backends (the
// Docker Engine, Git servers, a kube-apiserver) and checks that nothing is lost: every run
// converges to Git's state with no duplicate and no orphaned resource. Each test reports its
// figures with record; docs/reliability.md holds them.
package faults

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers/docker"
	"github.com/shipwatch/shipwatch/internal/testdaemon"
	"github.com/shipwatch/shipwatch/internal/testimage"
	"github.com/shipwatch/shipwatch/internal/testpoll"
	"github.com/shipwatch/shipwatch/internal/testproject"
)

// image is the test program's image, built locally (no registry is reachable).
const image = "shipwatch-faults:v1"

var (
	binary string // built once in TestMain, with the race detector
	engine *client.Client
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("faults: skipped with -short (they need the Docker Engine and a test cluster)")
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
	if engine, err = docker.NewClient(""); err != nil {
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
// it, now and when the test ends.
func uniqueProject(t *testing.T) string {
	t.Helper()
	return testproject.Unique(t, engine, "swfault")
}

// eventually polls cond every 200ms until it holds; it fails the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testpoll.Poll{Period: 200 * time.Millisecond, Timeout: timeout}.Until(t, what, cond)
}

// within polls cond every period until it holds (true) or timeout passes (false); unlike
// eventually it lets the caller count a failure instead of stopping the test.
func within(t *testing.T, period, timeout time.Duration, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if t.Context().Err() != nil || time.Now().After(deadline) {
			return false
		}
		select {
		case <-t.Context().Done():
		case <-time.After(period):
		}
	}
	return true
}

// startDaemon runs `shipwatch serve` until the test ends (or it is stopped or killed).
func startDaemon(t *testing.T, configFile, addr string) *testdaemon.Daemon {
	t.Helper()
	return testdaemon.Start(t, testdaemon.Options{Binary: binary, Config: configFile, Addr: addr, LogLevel: "debug"})
}

// runCLI runs a one-shot shipwatch verb and returns its exit code and combined output.
func runCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), binary, args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	case err != nil:
		t.Fatalf("run shipwatch %v: %v", args, err)
	}
	return 0, string(out)
}

// Outcome is what one fault test did and saw: how many faults it injected, in how many
// runs, how many runs converged to Git's state, and how many resources or records were
// lost (must be 0).
type Outcome struct {
	Fault     string
	Injected  int
	Runs      int
	Converged int
	Lost      int
	// Notes are extra figures ("max RSS 41 MiB").
	Notes []string
}

// record logs the outcome in one greppable line (docs/reliability.md is made from them)
// and fails the test when a run did not converge or something was lost.
func record(t *testing.T, o Outcome) {
	t.Helper()
	t.Logf("FAULT-OUTCOME fault=%q injected=%d runs=%d converged=%d lost=%d %s",
		o.Fault, o.Injected, o.Runs, o.Converged, o.Lost, strings.Join(o.Notes, " "))
	if o.Converged != o.Runs || o.Lost != 0 {
		t.Errorf("%s: %d of %d runs converged, %d lost", o.Fault, o.Converged, o.Runs, o.Lost)
	}
}
