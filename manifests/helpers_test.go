package manifests

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeTree writes files (path relative to root -> content) into a fresh checkout dir.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func mustLoad(t *testing.T, opts ComposeOptions) *Compose {
	t.Helper()
	if opts.Project == "" {
		opts.Project = "web"
	}
	c, err := LoadCompose(t.Context(), opts)
	if err != nil {
		t.Fatalf("LoadCompose: %v", err)
	}
	return c
}

func loadErr(t *testing.T, opts ComposeOptions) error {
	t.Helper()
	if opts.Project == "" {
		opts.Project = "web"
	}
	c, err := LoadCompose(t.Context(), opts)
	if err == nil {
		t.Fatalf("LoadCompose succeeded, want an error; services: %v", c.Project.ServiceNames())
	}
	return err
}

func wantContains(t *testing.T, err error, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

func wantEscape(t *testing.T, err error, ref string) {
	t.Helper()
	var ee *EscapeError
	if !errors.As(err, &ee) {
		t.Fatalf("error %v is not an *EscapeError", err)
	}
	if ee.Ref != ref {
		t.Errorf("EscapeError.Ref = %q, want %q (%v)", ee.Ref, ref, err)
	}
}
