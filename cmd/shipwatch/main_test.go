package main

import (
	"bytes"
	"encoding/json"
	"errors"
	stdlog "log"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"k8s.io/klog/v2"
)

// client-go reports watch failures through klog; with --log-format json they must come out
// as JSON lines of the process's own logger, not in klog's format on the real stderr.
func TestLibraryLogsFollowTheLogFormat(t *testing.T) {
	var stderr bytes.Buffer
	g := &globals{logFormat: "json", logLevel: "info", stderr: &stderr}
	if _, err := g.logger(); err != nil {
		t.Fatal(err)
	}
	klog.ErrorS(errors.New("the server could not find the requested resource"), "Failed to watch")
	klog.Flush()
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one log line, got %q", stderr.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("klog line is not JSON: %v: %s", err, lines[0])
	}
	if rec["msg"] != "Failed to watch" || rec["driver"] != "kubernetes" || rec["level"] != "ERROR" {
		t.Errorf("klog line = %v, want msg, driver=kubernetes and level ERROR", rec)
	}
}

// compose-go (logrus) and kustomize (the standard log package) print warnings of their own;
// they must come out through the process's logger, with checkout paths as repository files.
func TestComposeAndKustomizeWarningsFollowTheLogFormat(t *testing.T) {
	var stderr bytes.Buffer
	g := &globals{logFormat: "json", logLevel: "info", stderr: &stderr}
	if _, err := g.logger(); err != nil {
		t.Fatal(err)
	}
	const sha = "0123456789abcdef0123456789abcdef01234567"
	logrus.Warnf("/var/lib/shipwatch/git/checkouts/deploy/%s/web/compose.yaml: `version` is obsolete", sha)
	logrus.Debug("not shown at level info")
	stdlog.Printf("well-defined vars that were never replaced: X")
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want two log lines, got %q", stderr.String())
	}
	var first, second map[string]any
	if json.Unmarshal([]byte(lines[0]), &first) != nil || json.Unmarshal([]byte(lines[1]), &second) != nil {
		t.Fatalf("not JSON: %q", stderr.String())
	}
	if first["err"] != "deploy@0123456789ab:web/compose.yaml: `version` is obsolete" || first["level"] != "WARN" || first["resource"] != "compose" {
		t.Errorf("compose-go's warning = %v", first)
	}
	if second["err"] != "well-defined vars that were never replaced: X" || second["resource"] != "kustomize" {
		t.Errorf("kustomize's message = %v", second)
	}
}
