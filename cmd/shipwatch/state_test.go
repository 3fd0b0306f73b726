package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shipwatch/shipwatch/internal/state"
	"github.com/shipwatch/shipwatch/internal/testgit"
)

// TestVerbsKeepOutOfTheDaemonsGitCache: while a daemon holds the state dir, a verb that
// reads Git (validate, diff) fetches into a private cache and leaves the daemon's alone; it
// used to open stateDir/git and remove the daemon's checkout in progress as a leftover.
func TestVerbsKeepOutOfTheDaemonsGitCache(t *testing.T) {
	repo := testgit.New(t)
	repo.Commit("first", map[string]string{"compose.yaml": "services:\n  web: {image: nginx:1.27}\n"})
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	cfg := filepath.Join(dir, "shipwatch.yaml")
	doc := fmt.Sprintf("stateDir: %s\nrepos: [{name: deploy, url: %s}]\napps: [{name: web, repo: deploy}]\n", stateDir, repo.Dir)
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	lock, err := state.TakeLock(stateDir, state.Exclusive, state.Holder{PID: 1, Command: "serve", Listen: "127.0.0.1:1", Since: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	inProgress := filepath.Join(stateDir, "git", "checkouts", "deploy", ".tmp-0123abcd-42")
	if err := os.MkdirAll(inProgress, 0o700); err != nil {
		t.Fatal(err)
	}

	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"validate", "--config", cfg}, &out, &errOut); code != 0 {
		t.Fatalf("validate: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "app web: ok") {
		t.Errorf("validate output: %s", out.String())
	}
	if _, err := os.Stat(inProgress); err != nil {
		t.Fatalf("the daemon's checkout in progress is gone: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(stateDir, "git", "repos")); len(entries) != 0 {
		t.Errorf("validate fetched into the daemon's cache: %v", entries)
	}
}
