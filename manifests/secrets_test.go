package manifests

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// secretValue is the content of the test secret file: no error may ever contain it.
const secretValue = "hunter2-s3cr3t-value\n"

const secretsCompose = `
services:
  api:
    image: x
    mem_reservation: 64m
    deploy:
      resources:
        limits: {cpus: "0.5", memory: 128m, pids: 50}
        reservations: {cpus: "0.25", memory: 64m}
    secrets:
      - db_password
      - source: api_key
        target: key.txt
  web:
    image: x
    secrets: [api_key]
  plain:
    image: x
secrets:
  db_password:
    file: ./secrets/db.txt
  api_key:
    file: ./secrets/api.txt
`

func TestLoadSecretsAndResources(t *testing.T) {
	root := writeTree(t, map[string]string{
		"app/compose.yaml":     secretsCompose,
		"app/secrets/db.txt":   secretValue,
		"app/secrets/api.txt":  "api-key\n",
		"app/secrets/else.txt": "unused\n",
	})
	c := mustLoad(t, ComposeOptions{Root: root, Path: "app"})

	api := c.Project.Services["api"]
	limits, res := api.Deploy.Resources.Limits, api.Deploy.Resources.Reservations
	if limits == nil || limits.NanoCPUs != 0.5 || limits.MemoryBytes != 128<<20 || limits.Pids != 50 {
		t.Errorf("limits = %+v", limits)
	}
	if res == nil || res.NanoCPUs != 0.25 || res.MemoryBytes != 64<<20 || api.MemReservation != 64<<20 {
		t.Errorf("reservations = %+v, mem_reservation = %d", res, api.MemReservation)
	}
	want := []types.ServiceSecretConfig{{Source: "db_password"}, {Source: "api_key", Target: "key.txt"}}
	if len(api.Secrets) != 2 || api.Secrets[0].Source != want[0].Source || api.Secrets[1].Target != want[1].Target {
		t.Errorf("api secrets = %+v, want %+v", api.Secrets, want)
	}
	if got, wantPath := c.Project.Secrets["db_password"].File, filepath.Join(root, "app/secrets/db.txt"); got != wantPath {
		t.Errorf("secret file = %q, want the confined absolute path %q", got, wantPath)
	}

	// Each service lists exactly the secret files it mounts, with their digests.
	rels := func(service string) []string {
		var out []string
		for _, f := range c.Files[service] {
			out = append(out, f.Rel)
		}
		return out
	}
	if got := strings.Join(rels("api"), ","); got != "app/secrets/api.txt,app/secrets/db.txt" {
		t.Errorf("api files = %s", got)
	}
	if got := strings.Join(rels("web"), ","); got != "app/secrets/api.txt" {
		t.Errorf("web files = %s", got)
	}
	if len(c.Files["plain"]) != 0 {
		t.Errorf("plain reads no file, got %+v", c.Files["plain"])
	}
	sum := sha256.New()
	sum.Write([]byte("644\x00" + secretValue))
	if got := c.Files["api"][1].Digest; got != "sha256:"+hex.EncodeToString(sum.Sum(nil)) {
		t.Errorf("db secret digest = %s", got)
	}
}

func TestSecretFileOutsideCheckoutRefused(t *testing.T) {
	cases := map[string]struct{ file, ref string }{
		"parent":   {"../../outside.txt", "../outside.txt"},
		"absolute": {"/etc/hostname", ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			root := writeTree(t, map[string]string{
				"app/compose.yaml": "services:\n  api:\n    image: x\n    secrets: [s]\nsecrets:\n  s:\n    file: " + tc.file + "\n",
			})
			if err := os.WriteFile(filepath.Join(filepath.Dir(root), "outside.txt"), []byte(secretValue), 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.ref == "" {
				tc.ref, _ = filepath.Rel(root, tc.file)
			}
			err := loadErr(t, ComposeOptions{Root: root, Path: "app"})
			wantEscape(t, err, tc.ref)
			wantContains(t, err, "secrets.s.file", tc.ref)
			if strings.Contains(err.Error(), strings.TrimSpace(secretValue)) {
				t.Errorf("error leaks the secret: %v", err)
			}
		})
	}
}

func TestSecretFileSymlinkLeavingCheckoutRefused(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "token"), []byte(secretValue), 0o644); err != nil {
		t.Fatal(err)
	}
	root := writeTree(t, map[string]string{
		"app/compose.yaml": "services:\n  api:\n    image: x\n    secrets: [s]\nsecrets:\n  s:\n    file: ./link/token\n",
	})
	symlink(t, outside, filepath.Join(root, "app/link"))
	err := loadErr(t, ComposeOptions{Root: root, Path: "app"})
	var ee *EscapeError
	if !errors.As(err, &ee) || ee.Via == "" || ee.Key != "secrets.s.file" {
		t.Fatalf("want a symlink EscapeError for secrets.s.file, got %v", err)
	}
	wantContains(t, err, "app/link/token")
}

func TestMissingSecretFileNamesIt(t *testing.T) {
	root := writeTree(t, map[string]string{
		"app/compose.yaml": "services:\n  api:\n    image: x\n    secrets: [s]\nsecrets:\n  s:\n    file: ./missing.txt\n",
	})
	err := loadErr(t, ComposeOptions{Root: root, Path: "app"})
	wantContains(t, err, "app/missing.txt", "does not exist")
}
