// Package testimage builds small Docker images for tests: a FROM scratch image holding one
// static Go binary, built through the Engine API with the classic builder, because tests
// cannot pull from a registry.
package testimage

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/client"
)

// dockerfile runs the binary as the entrypoint, so a compose `command` only passes flags.
const dockerfile = `FROM scratch
COPY app /app
EXPOSE 8080
ENTRYPOINT ["/app"]
`

// Build makes sure the image tag exists, building it from the Go source prog (Program when
// empty) if it does not. The tag is the cache key: callers change the tag when they change
// prog. It fails the test on error.
func Build(ctx context.Context, t testing.TB, cli *client.Client, tag string, prog string) {
	t.Helper()
	if err := Ensure(ctx, cli, tag, prog); err != nil {
		t.Fatalf("build test image %s: %v", tag, err)
	}
}

// Ensure is Build for callers without a testing.TB (TestMain).
func Ensure(ctx context.Context, cli *client.Client, tag string, prog string) error {
	if _, err := cli.ImageInspect(ctx, tag); err == nil {
		return nil
	} else if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("inspect image %s: %w", tag, err)
	}
	if prog == "" {
		prog = Program
	}
	dir, err := os.MkdirTemp("", "testimage-*")
	if err != nil {
		return fmt.Errorf("make build dir: %w", err)
	}
	defer os.RemoveAll(dir)
	bin, err := compile(ctx, dir, prog)
	if err != nil {
		return err
	}
	buildCtx, err := contextTar(bin)
	if err != nil {
		return err
	}
	res, err := cli.ImageBuild(ctx, buildCtx, client.ImageBuildOptions{
		Tags:        []string{tag},
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1,
	})
	if err != nil {
		return fmt.Errorf("build image %s: %w", tag, err)
	}
	defer res.Body.Close()
	return readBuildOutput(res.Body, tag)
}

// compile builds prog as a static linux binary and returns its bytes.
func compile(ctx context.Context, dir, prog string) ([]byte, error) {
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(prog), 0o644); err != nil {
		return nil, fmt.Errorf("write program: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module testapp\n\ngo 1.22\n"), 0o644); err != nil {
		return nil, fmt.Errorf("write go.mod: %w", err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", "app", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build test program: %w: %s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "app"))
	if err != nil {
		return nil, fmt.Errorf("read test binary: %w", err)
	}
	return bin, nil
}

// contextTar is the build context: the Dockerfile and the binary.
func contextTar(bin []byte) (io.Reader, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte(dockerfile)},
		{"app", 0o755, bin},
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			return nil, fmt.Errorf("tar %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("tar %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close build context: %w", err)
	}
	return &buf, nil
}

// readBuildOutput drains the build stream; the classic builder reports failure inside the
// stream, not in the HTTP status.
func readBuildOutput(r io.Reader, tag string) error {
	dec := json.NewDecoder(r)
	for {
		var msg struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read build output of %s: %w", tag, err)
		}
		if msg.Error != "" {
			return fmt.Errorf("build image %s: %s", tag, msg.Error)
		}
	}
}
