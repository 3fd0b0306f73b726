package composecompat

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/cli/cli/command"
	"github.com/docker/compose/v5/pkg/api"
	"github.com/docker/compose/v5/pkg/compose"

	"github.com/shipwatch/shipwatch/drivers/docker"
	"github.com/shipwatch/shipwatch/manifests"
)

// hashed is one service's config hash plus the model it was computed from, kept so a
// mismatch can be explained field by field instead of as two opaque digests.
type hashed struct {
	hash    string
	service *types.ServiceConfig
}

// TestServiceHashMatchesCompose is the compatibility check: for every test project, the
// hash shipwatch computes on the project its own loader produced must equal (1) the compose
// SDK's ServiceHash on the project as the SDK loads it, and (2) when the CLI binary built
// by scripts/build-compose.sh exists, `docker-compose config --hash '*'`.
func TestServiceHashMatchesCompose(t *testing.T) {
	bin := composeBinary(t)
	for _, p := range projects() {
		t.Run(p.name, func(t *testing.T) {
			root, dir := writeProject(t, p)
			name := "compat-" + p.name

			ours := shipwatchHashes(t, root, name, p)
			sdk := sdkHashes(t, dir, name, p)
			compare(t, "compose SDK", ours, sdk)

			if bin == "" {
				return
			}
			out := cliHashes(t, bin, dir, name, p)
			compare(t, "docker-compose CLI", ours, out)
		})
	}
}

// writeProject writes p into <tmp>/app and returns the checkout root and the app dir,
// both with symlinks resolved so every loader sees the same absolute paths.
func writeProject(t *testing.T, p project) (root, dir string) {
	t.Helper()
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(root, "app")
	for _, rel := range slices.Sorted(maps.Keys(p.files)) {
		abs := filepath.Join(dir, rel)
		if strings.HasSuffix(rel, "/") {
			if err := os.MkdirAll(abs, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(abs, []byte(p.files[rel]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root, dir
}

// shipwatchHashes loads the project with shipwatch's loader and hashes every service the
// way the docker driver stamps it. The driver's later bind-source rewrite (content-addressed
// copies) is deliberately not applied: compose never sees that form.
func shipwatchHashes(t *testing.T, root, name string, p project) map[string]hashed {
	t.Helper()
	c, err := manifests.LoadCompose(t.Context(), manifests.ComposeOptions{
		Root: root, Path: "app", Files: p.compose, Profiles: p.profiles, Project: name,
	})
	if err != nil {
		t.Fatalf("shipwatch LoadCompose: %v", err)
	}
	return hashAll(t, c.Project, docker.ServiceHash)
}

// sdkHashes loads the project through the compose SDK's LoadProject, as `docker compose`
// does, resolves the services' environment as `up` and `config --hash` do, and hashes
// with the SDK's own ServiceHash.
func sdkHashes(t *testing.T, dir, name string, p project) map[string]hashed {
	t.Helper()
	dockerCli, err := command.NewDockerCli()
	if err != nil {
		t.Fatalf("docker cli: %v", err)
	}
	svc, err := compose.NewComposeService(dockerCli)
	if err != nil {
		t.Fatalf("compose service: %v", err)
	}
	paths := make([]string, len(p.compose))
	for i, f := range p.compose {
		paths[i] = filepath.Join(dir, f)
	}
	proj, err := svc.LoadProject(t.Context(), api.ProjectLoadOptions{
		ProjectName:       name,
		ConfigPaths:       paths,
		WorkingDir:        dir,
		Profiles:          p.profiles,
		Offline:           true,
		ProjectOptionsFns: []cli.ProjectOptionsFn{cli.WithoutEnvironmentResolution},
	})
	if err != nil {
		t.Fatalf("compose SDK LoadProject: %v", err)
	}
	proj, err = proj.WithServicesEnvironmentResolved(true)
	if err != nil {
		t.Fatalf("compose SDK resolve environment: %v", err)
	}
	return hashAll(t, proj, compose.ServiceHash)
}

func hashAll(t *testing.T, p *types.Project, hash func(types.ServiceConfig) (string, error)) map[string]hashed {
	t.Helper()
	out := map[string]hashed{}
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		h, err := hash(s)
		if err != nil {
			t.Fatalf("hash service %s: %v", name, err)
		}
		out[name] = hashed{hash: h, service: &s}
	}
	return out
}

// cliHashes runs the real CLI. Variables that would change how it loads the project are
// removed from its environment; shipwatch never reads the daemon's environment either.
func cliHashes(t *testing.T, bin, dir, name string, p project) map[string]hashed {
	t.Helper()
	args := []string{"-p", name, "--project-directory", dir}
	for _, f := range p.compose {
		args = append(args, "-f", filepath.Join(dir, f))
	}
	for _, prof := range p.profiles {
		args = append(args, "--profile", prof)
	}
	args = append(args, "config", "--hash", "*")
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, stderr.String())
	}
	out := map[string]hashed{}
	sc := bufio.NewScanner(bytes.NewReader(stdout))
	for sc.Scan() {
		svc, h, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if !ok {
			t.Fatalf("unexpected config --hash line %q", sc.Text())
		}
		out[svc] = hashed{hash: h}
	}
	return out
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "COMPOSE_") || strings.HasPrefix(kv, "DOCKER_DEFAULT_PLATFORM=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// compare fails for every service whose hash differs, naming the top-level fields whose
// JSON differs when both models are at hand.
func compare(t *testing.T, oracle string, ours, theirs map[string]hashed) {
	t.Helper()
	if got, want := slices.Sorted(maps.Keys(ours)), slices.Sorted(maps.Keys(theirs)); !slices.Equal(got, want) {
		t.Errorf("services: shipwatch has %v, %s has %v", got, oracle, want)
	}
	for _, name := range slices.Sorted(maps.Keys(ours)) {
		o, th := ours[name], theirs[name]
		if th.hash == "" || o.hash == th.hash {
			continue
		}
		msg := fmt.Sprintf("service %s: shipwatch hash %s, %s hash %s", name, o.hash, oracle, th.hash)
		if th.service != nil {
			msg += "\n" + fieldDiff(t, o.service, th.service)
		}
		t.Error(msg)
	}
}

// fieldDiff lists the top-level keys whose JSON differs between two service models.
func fieldDiff(t *testing.T, ours, theirs *types.ServiceConfig) string {
	t.Helper()
	a, b := topLevel(t, ours), topLevel(t, theirs)
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var sb strings.Builder
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if !bytes.Equal(a[k], b[k]) {
			fmt.Fprintf(&sb, "  %s:\n    shipwatch: %s\n    compose:   %s\n", k, a[k], b[k])
		}
	}
	if sb.Len() == 0 {
		return "  (same JSON fields: the difference is in key order or hashing)"
	}
	return sb.String()
}

func topLevel(t *testing.T, s *types.ServiceConfig) map[string]json.RawMessage {
	t.Helper()
	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// composeBinary finds the CLI built by scripts/build-compose.sh; "" (and a log line) when it
// is missing or does not run, so the SDK comparison still runs on machines without it.
func composeBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("SHIPWATCH_COMPOSE_BIN")
	if bin == "" {
		env := os.Getenv("SHIPWATCH_TESTENV")
		if env == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				t.Logf("no home dir, skipping the CLI comparison: %v", err)
				return ""
			}
			env = filepath.Join(home, ".cache", "shipwatch-testenv")
		}
		bin = filepath.Join(env, "bin", "docker-compose")
	}
	out, err := exec.CommandContext(t.Context(), bin, "version").CombinedOutput()
	if err != nil {
		if os.Getenv("SHIPWATCH_REQUIRE_COMPOSE") != "" {
			t.Fatalf("docker-compose %s required but unusable: %v (run scripts/build-compose.sh)", bin, err)
		}
		t.Logf("docker-compose %s unusable, CLI comparison skipped (run scripts/build-compose.sh): %v", bin, err)
		return ""
	}
	t.Logf("oracle CLI: %s: %s", bin, strings.TrimSpace(string(out)))
	return bin
}
