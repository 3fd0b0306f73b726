package testproject

import (
	"context"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// Clean removes what is labelled with the compose project, as Remove does, now (a run
// killed before its cleanup may have left containers behind) and again when the test ends.
// A failed removal fails the test. Register it before starting anything that creates
// resources in the project, so it runs after that has stopped.
func Clean(t testing.TB, cli *client.Client, project string) {
	t.Helper()
	// The test's context is cancelled before cleanups run: keep only its values.
	base := context.WithoutCancel(t.Context())
	remove := func() error {
		ctx, cancel := context.WithTimeout(base, 2*time.Minute)
		defer cancel()
		return Remove(ctx, cli, project)
	}
	if err := remove(); err != nil {
		t.Fatalf("clean project %s: %v", project, err)
	}
	t.Cleanup(func() {
		if err := remove(); err != nil {
			t.Errorf("clean project %s: %v", project, err)
		}
	})
}
