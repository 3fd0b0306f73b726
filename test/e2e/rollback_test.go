package e2e

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shipwatch/shipwatch/internal/state"
	"github.com/shipwatch/shipwatch/internal/testdaemon"
	"github.com/shipwatch/shipwatch/internal/testgit"
	"github.com/shipwatch/shipwatch/reconciler"
)

// unhealthyApp is simpleApp whose healthcheck always fails: its container runs but never
// becomes healthy.
func unhealthyApp(message string) map[string]string {
	return map[string]string{"compose.yaml": fmt.Sprintf(`services:
  web:
    image: %s
    environment:
      MESSAGE: %q
    restart: unless-stopped
    healthcheck:
      test: ["CMD", "/app", "-exit", "1"]
      interval: 1s
      retries: 1
`, image, message)}
}

// assertPinned checks that the app is held at rev by a pin of reason, with the container w
// running untouched.
func assertPinned(t *testing.T, a *swApp, w webState, rev string, reason state.PinReason, when string) {
	t.Helper()
	st := a.d.Status(t, "app")
	if st.Pin == nil || st.Pin.Revision != rev || st.Pin.Reason != reason || st.AppliedRevision != rev ||
		st.Sync != reconciler.SyncOutOfSync || !strings.Contains(st.Reason, "pinned at "+rev[:12]) {
		t.Errorf("%s: pin %+v, applied %s, sync %s, reason %q; want pinned at %s (%s)",
			when, st.Pin, st.AppliedRevision, st.Sync, st.Reason, rev[:12], reason)
	}
	if got, ok := runningWeb(t, a.project); !ok || got != w {
		t.Errorf("%s: web = %+v, want the rolled-back %+v untouched", when, got, w)
	}
}

// `shipwatch rollback` goes through the daemon that holds the state dir, brings back the
// previous revision's container configuration and pins it: two new commits and a restart
// do not move it, `shipwatch unpin` makes the app follow its ref again.
func TestRollbackPinsThroughCommitsAndARestart(t *testing.T) {
	a := startSWApp(t, testdaemon.Config{Drift: "heal", Sync: "auto"}, "rollback-1")
	rev1 := a.head(t)
	a.waitWeb(t, rev1)
	rev2 := a.commit("rollback-2")
	a.refresh(t, rev2)
	if w := a.waitWeb(t, rev2); w.message != "rollback-2" {
		t.Fatalf("web MESSAGE = %q after the update", w.message)
	}

	tokenFile := testgit.SecretFile(t, swToken)
	code, out, errOut := runSplit(t, "rollback", "app", "--config", a.cfg, "--token-file", tokenFile)
	if code != 0 || !strings.Contains(errOut, "holds the state dir") {
		t.Fatalf("rollback = %d, want 0 through the daemon:\n%s\n%s", code, out, errOut)
	}
	w, ok := runningWeb(t, a.project)
	if !ok || w.revision != rev1 || w.message != "rollback-1" {
		t.Fatalf("after the rollback web = %+v, want revision %s with MESSAGE rollback-1", w, rev1[:12])
	}
	assertPinned(t, a, w, rev1, state.PinRollback, "after the rollback")
	if got := a.d.Metric(t, "shipwatch_rollbacks_total", map[string]string{"app": "app", "reason": "manual"}); got != 1 {
		t.Errorf("shipwatch_rollbacks_total{reason=manual} = %v, want 1", got)
	}
	var rev4 string
	for _, msg := range []string{"rollback-3", "rollback-4"} {
		rev4 = a.commit(msg)
		a.refresh(t, rev4)
		assertPinned(t, a, w, rev1, state.PinRollback, "after commit "+msg)
	}
	a.restart(t)
	assertPinned(t, a, w, rev1, state.PinRollback, "after the restart")
	if st := a.d.Status(t, "app"); st.DesiredRevision != rev4 {
		t.Errorf("after the restart desired = %s, want the ref's %s", st.DesiredRevision, rev4[:12])
	}

	t.Setenv("SHIPWATCH_TOKEN", swToken)
	if code, out, errOut := runSplit(t, "unpin", "app", "--config", a.cfg); code != 0 {
		t.Fatalf("unpin = %d:\n%s\n%s", code, out, errOut)
	}
	if w := a.waitWeb(t, rev4); w.message != "rollback-4" {
		t.Errorf("after unpin web MESSAGE = %q, want rollback-4", w.message)
	}
	eventually(t, 30*time.Second, "unpinned and in sync", func() bool {
		st := a.d.Status(t, "app")
		return st.Pin == nil && st.Sync == reconciler.SyncSynced && st.Reason == ""
	})
	entries := historyCLI(t, a.cfg)
	assertHistory(t, "the CLI", entries[:min(len(entries), 3)],
		entryShape{trigger: state.TriggerManual, actor: state.ActorAPI, before: rev1, revision: rev4, health: "Healthy", result: state.ResultSucceeded},
		entryShape{trigger: state.TriggerRollback, actor: state.ActorAPI, before: rev2, revision: rev1, health: "Healthy", result: state.ResultSucceeded},
		entryShape{trigger: state.TriggerManual, actor: state.ActorAPI, before: rev1, revision: rev2, health: "Healthy", result: state.ResultSucceeded},
	)
}

// rollbackReceiver serves signed notifications to a webhook target, returning the YAML of
// the daemon's notify block.
func rollbackReceiver(t *testing.T) (*receiver, string) {
	t.Helper()
	rc := &receiver{t: t, secret: []byte("hmac-key-for-rollback")}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	urlFile, keyFile := filepath.Join(dir, "url"), filepath.Join(dir, "key")
	if err := os.WriteFile(urlFile, []byte(srv.URL+"/hook\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, rc.secret, 0o600); err != nil {
		t.Fatal(err)
	}
	return rc, fmt.Sprintf("notify:\n  - name: ops\n    type: webhook\n    urlFile: %s\n    secretFile: %s\n", urlFile, keyFile)
}

// notified returns the received events of type typ.
func (rc *receiver) notified(typ string) []map[string]any {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []map[string]any
	for _, b := range rc.bodies {
		var ev map[string]any
		if json.Unmarshal([]byte(b), &ev) == nil && ev["type"] == typ {
			out = append(out, ev)
		}
	}
	return out
}

// Under onFailure: rollback, a revision that does not become healthy within healthTimeout
// is rolled back to the last healthy one, pinned with the failed revision noted, counted,
// notified and recorded; a newer commit lifts the pin.
func TestOnFailureRollbackRestoresTheLastHealthyRevision(t *testing.T) {
	rc, notify := rollbackReceiver(t)
	a := startSWApp(t, testdaemon.Config{Drift: "heal", Sync: "auto", HealthTimeout: "10s", OnFailure: "rollback",
		Extra: notify}, "auto-1")
	rev1 := a.head(t)
	w1 := a.waitWeb(t, rev1)
	rev2 := a.repo.Commit("unhealthy", unhealthyApp("auto-2"))
	st := a.refresh(t, rev2)
	if st.Pin == nil || st.Pin.Reason != state.PinAutoRollback || st.Pin.Revision != rev1 || st.Pin.FailedRevision != rev2 {
		t.Fatalf("pin = %+v, want an auto-rollback to %s after %s", st.Pin, rev1[:12], rev2[:12])
	}
	w, ok := runningWeb(t, a.project)
	if !ok || w.revision != rev1 || w.message != "auto-1" || w.healthcheck || w.id == w1.id {
		t.Errorf("web = %+v, want a new container of %s without the failing healthcheck", w, rev1[:12])
	}
	if st.AppliedRevision != rev1 || st.Health != "Healthy" {
		t.Errorf("status: applied %s, health %s; want %s Healthy", st.AppliedRevision, st.Health, rev1[:12])
	}
	if got := a.d.Metric(t, "shipwatch_rollbacks_total", map[string]string{"app": "app", "reason": "unhealthy"}); got != 1 {
		t.Errorf("shipwatch_rollbacks_total{reason=unhealthy} = %v, want 1", got)
	}
	eventually(t, 30*time.Second, "the rollback notified", func() bool { return len(rc.notified("rollback")) > 0 })
	ev := rc.notified("rollback")[0]
	if msg, _ := ev["message"].(string); ev["app"] != "app" || ev["revision"] != rev1 || !strings.Contains(msg, rev2[:12]) {
		t.Errorf("rollback notification = %v, want app, revision %s and the failed %s named", ev, rev1[:12], rev2[:12])
	}
	assertHistory(t, "the API", historyAPI(t, a.d),
		entryShape{trigger: state.TriggerRollback, actor: state.ActorDaemon, before: rev2, revision: rev1, health: "Healthy", result: state.ResultSucceeded},
		entryShape{trigger: state.TriggerManual, actor: state.ActorAPI, before: rev1, revision: rev2, result: state.ResultFailed, stage: string(reconciler.StageHealth)},
		entryShape{trigger: state.TriggerPoll, actor: state.ActorDaemon, revision: rev1, health: "Healthy", result: state.ResultSucceeded},
	)

	rev3 := a.commit("auto-3")
	a.refresh(t, rev3)
	if w := a.waitWeb(t, rev3); w.message != "auto-3" {
		t.Errorf("after a newer commit web MESSAGE = %q, want auto-3", w.message)
	}
	if st := a.d.Status(t, "app"); st.Pin != nil || st.Sync != reconciler.SyncSynced {
		t.Errorf("after a newer commit: pin %+v, sync %s; want the pin lifted", st.Pin, st.Sync)
	}
}
