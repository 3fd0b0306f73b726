package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shipwatch/shipwatch/internal/testdaemon"
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
	addr := testdaemon.FreeAddr(t)
	cfg := testdaemon.Config{RepoURL: repo.Dir, Addr: addr, Project: project, Drift: "heal", Sync: "auto", Token: "t0k",
		Extra: "shutdownTimeout: 40s\n"}.Write(t)
	d := startDaemon(t, cfg, addr)

	eventually(t, 60*time.Second, "apply in flight: slow created, web not yet", func() bool {
		cs := containers(t, project)
		return len(cs["slow"]) == 1 && len(cs["web"]) == 0
	})
	if err := d.Stop(syscall.SIGTERM, 45*time.Second); err != nil {
		t.Fatalf("SIGTERM with shutdownTimeout 40s: %v", err)
	}
	// Exactly one running container per service: the apply finished, and no temporary
	// container of a recreate was left beside it.
	cs := containers(t, project)
	if len(cs["slow"]) != 1 || len(cs["web"]) != 1 {
		t.Errorf("the apply in flight was not finished: %v", cs)
	}
	if !strings.Contains(d.Logs(t), "shipwatch stopped") {
		t.Errorf("no clean stop logged")
	}
}
