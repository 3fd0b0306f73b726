package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A SIGTERM in the middle of an apply lets the apply finish (within shutdownTimeout)
// instead of leaving half a project behind.
func TestSIGTERMFinishesTheApplyInFlight(t *testing.T) {
	project := uniqueProject(t)
	repo := newRepo(t, map[string]string{"compose.yaml": fmt.Sprintf(`services:
  slow:
    image: %[1]s
    command: ["-delay", "4s"]
    restart: unless-stopped
    healthcheck:
      test: ["CMD", "/app", "-healthcheck"]
      interval: 1s
      retries: 60
  web:
    image: %[1]s
    restart: unless-stopped
    depends_on:
      slow: {condition: service_healthy}
`, image)})
	addr := freeAddr(t)
	cfg := daemonConfig{repoURL: repo.dir, addr: addr, project: project, drift: "heal", sync: "auto", token: "t0k",
		extra: "shutdownTimeout: 40s\n"}.write(t)
	logs := &lockedBuffer{}
	cmd := exec.Command(binary, "serve", "--config", cfg)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("shipwatch logs:\n%s", logs.String())
		}
	})

	eventually(t, 60*time.Second, "apply in flight: slow created, web not yet", func() bool {
		cs := containers(t, project)
		return len(cs["slow"]) == 1 && len(cs["web"]) == 0
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shipwatch exited with %v after SIGTERM", err)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("shipwatch did not exit within shutdownTimeout after SIGTERM")
	}
	// Exactly one running container per service: the apply finished, and no temporary
	// container of a recreate was left beside it.
	cs := containers(t, project)
	if len(cs["slow"]) != 1 || len(cs["web"]) != 1 {
		t.Errorf("the apply in flight was not finished: %v", cs)
	}
	if !strings.Contains(logs.String(), "shipwatch stopped") {
		t.Errorf("no clean stop logged")
	}
}
