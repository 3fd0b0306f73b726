package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

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
