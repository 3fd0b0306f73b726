// Package testenv decides what a test does when a backend it needs is missing: under
// SHIPWATCH_TESTENV_REQUIRED (what `make test` and CI set) it fails, so a green run means the
// backend was really tested; otherwise it skips, for a developer without one.
package testenv

import (
	"fmt"
	"os"
	"testing"
)

// RequiredEnv is the variable that turns a missing backend into a failure.
const RequiredEnv = "SHIPWATCH_TESTENV_REQUIRED"

// Required reports whether a missing backend must fail the test run.
func Required() bool { return os.Getenv(RequiredEnv) != "" }

// Missing stops t because a backend it needs is missing: a failure when required, else a
// skip.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("%s is set but %s", RequiredEnv, msg)
	}
	t.Skip(msg)
}
