package manifests

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestOversizedInputIsRefused: every file shipwatch parses is bounded, and the refusal names
// the file and the limit instead of costing memory; it is ErrTooLarge, a stalled revision.
func TestOversizedInputIsRefused(t *testing.T) {
	big := "x-pad: \"" + strings.Repeat("a", MaxParsedFileBytes) + "\"\nservices: {web: {image: nginx}}\n"
	bigEnv := "A=" + strings.Repeat("b", MaxParsedFileBytes) + "\n"
	cases := map[string]struct {
		files map[string]string
		want  string
	}{
		"compose file": {map[string]string{"compose.yaml": big}, "compose file"},
		"env file":     {map[string]string{"compose.yaml": "services: {web: {image: nginx}}\n", ".env": bigEnv}, "env file"},
		"env_file":     {map[string]string{"compose.yaml": "services: {web: {image: nginx, env_file: big.env}}\n", "big.env": bigEnv}, "services.web.env_file big.env"},
		"extends file": {map[string]string{"compose.yaml": "services: {web: {extends: {file: base.yaml, service: b}}}\n", "base.yaml": big}, "extends file"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			root := fuzzCheckout(t)
			for f, content := range c.files {
				writeIn(t, root, f, content)
			}
			_, err := LoadCompose(t.Context(), ComposeOptions{Root: root, Path: ".", Project: "big"})
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "4.0 MiB") {
				t.Fatalf("err = %v, want ErrTooLarge naming %q and the limit", err, c.want)
			}
		})
	}
	t.Run("manifest", func(t *testing.T) {
		root := fuzzCheckout(t)
		writeIn(t, root, "app/big.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {v: \""+strings.Repeat("c", MaxParsedFileBytes)+"\"}\n")
		_, err := LoadKube(t.Context(), KubeOptions{Root: root, Path: "app"})
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "app/big.yaml") {
			t.Fatalf("err = %v, want ErrTooLarge naming app/big.yaml", err)
		}
	})
	t.Run("kustomize input", func(t *testing.T) {
		root := fuzzCheckout(t)
		writeIn(t, root, "app/kustomization.yaml", "resources: [big.yaml]\n")
		writeIn(t, root, "app/big.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {v: \""+strings.Repeat("c", MaxParsedFileBytes)+"\"}\n")
		_, err := LoadKube(t.Context(), KubeOptions{Root: root, Path: "app"})
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "app/big.yaml") {
			t.Fatalf("err = %v, want ErrTooLarge naming app/big.yaml", err)
		}
	})
	t.Run("manifest directory entries", func(t *testing.T) {
		root := fuzzCheckout(t)
		for i := range MaxTreeEntries + 1 {
			if i%1000 == 0 {
				writeIn(t, root, fmt.Sprintf("app/d%d/x.txt", i/1000), "")
			}
		}
		// 101 directories with one file each is far below the limit: no error.
		if _, err := LoadKube(t.Context(), KubeOptions{Root: root, Path: "app"}); err != nil {
			t.Fatalf("a small tree is refused: %v", err)
		}
		counter := &entryCounter{key: "k", rel: "r"}
		var err error
		for range MaxTreeEntries + 1 {
			if err = counter.visit(); err != nil {
				break
			}
		}
		if !errors.Is(err, ErrTooLarge) || counter.n != MaxTreeEntries+1 {
			t.Fatalf("the walk bound: err = %v after %d entries", err, counter.n)
		}
	})
}
