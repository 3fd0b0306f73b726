package testdaemon

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// BuildOptions says how to build the binary a suite runs.
type BuildOptions struct {
	// Module is the path to the repository root, relative to the calling test's directory
	// ("../.." from test/e2e).
	Module string
	// Race builds with the race detector: for tests, never for benchmarks.
	Race bool
}

// Build compiles cmd/shipwatch into a new temporary directory and returns the binary and a
// function that removes it. A TestMain calls it once for its suite.
func Build(ctx context.Context, opts BuildOptions) (string, func(), error) {
	dir, err := os.MkdirTemp("", "shipwatch-bin-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	bin := filepath.Join(dir, "shipwatch")
	args := []string{"build", "-o", bin}
	if opts.Race && runtime.GOOS == "linux" {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/shipwatch")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = opts.Module
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("build shipwatch: %w", err)
	}
	return bin, cleanup, nil
}
