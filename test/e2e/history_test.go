package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers/docker"
	"github.com/shipwatch/shipwatch/internal/server"
	"github.com/shipwatch/shipwatch/internal/state"
	"github.com/shipwatch/shipwatch/internal/testdaemon"
	"github.com/shipwatch/shipwatch/internal/testgit"
	"github.com/shipwatch/shipwatch/reconciler"
)

// swToken is the API token of the daemons these tests start.
const swToken = "t0k"

// swApp is a daemon deploying simpleApp from a repo of its own; its config file, and so its
// state dir, outlive a restart.
type swApp struct {
	project string
	repo    *testgit.Repo
	cfg     string
	d       *testdaemon.Daemon
}

// startSWApp commits simpleApp(message) to a new repo and starts a daemon on it with c's
// policies (the repo, address, project and token are filled in). It does not wait.
func startSWApp(t *testing.T, c testdaemon.Config, message string) *swApp {
	t.Helper()
	a := &swApp{project: uniqueProject(t), repo: newRepo(t, simpleApp(message))}
	c.RepoURL, c.Addr, c.Project, c.Token = a.repo.Dir, testdaemon.FreeAddr(t), a.project, swToken
	a.cfg = c.Write(t)
	a.d = startDaemon(t, a.cfg, c.Addr)
	return a
}

// head is the repo's newest commit.
func (a *swApp) head(t *testing.T) string {
	t.Helper()
	return a.repo.Git("rev-parse", "HEAD")
}

// commit commits simpleApp(message) and returns the commit.
func (a *swApp) commit(message string) string {
	return a.repo.Commit(message, simpleApp(message))
}

// restart stops the daemon with SIGTERM, as an operator or systemd does, starts a new one on
// the same config and state dir, and waits until it has planned the app and finished its
// first pass: what it decided then came from live state and the store, not from memory.
func (a *swApp) restart(t *testing.T) {
	t.Helper()
	if err := a.d.Stop(syscall.SIGTERM, 45*time.Second); err != nil {
		t.Fatalf("stop the daemon: %v", err)
	}
	a.d = startDaemon(t, a.cfg, a.d.Addr)
	eventually(t, 60*time.Second, "the restarted daemon planned app and finished a pass", func() bool {
		st := a.d.Status(t, "app")
		return st.Planned && !st.LastReconcile.IsZero() && st.Operation == nil
	})
}

// refresh asks for a pass (POST refresh) and waits until one that resolved the ref to head
// has finished, health wait included; it returns the status after it.
//
// The desired revision is set when a pass resolves, before it decides, and an event-driven
// pass may finish meanwhile; so once head is seen resolved, a second refresh is asked for:
// passes run one at a time, so the first one to finish after that moment is the pass that
// resolved head or one after it.
func (a *swApp) refresh(t *testing.T, head string) reconciler.Status {
	t.Helper()
	post := func() {
		t.Helper()
		if code := a.d.Post(t, "/api/v1/apps/app/refresh", swToken); code != http.StatusAccepted {
			t.Fatalf("POST refresh = %d", code)
		}
	}
	post()
	eventually(t, 30*time.Second, "ref resolved to "+head[:12], func() bool {
		return a.d.Status(t, "app").DesiredRevision == head
	})
	seen := time.Now()
	post()
	var st reconciler.Status
	eventually(t, 90*time.Second, "a pass at "+head[:12]+" finished", func() bool {
		st = a.d.Status(t, "app")
		return st.LastReconcile.After(seen) && st.Operation == nil
	})
	return st
}

// webState is the app's one running web container as the Engine reports it.
type webState struct {
	id, revision, message string
	healthcheck           bool
}

// runningWeb inspects the project's running web container; ok is false unless exactly one runs.
func runningWeb(t *testing.T, project string) (webState, bool) {
	t.Helper()
	ids := containers(t, project)["web"]
	if len(ids) != 1 {
		return webState{}, false
	}
	res, err := engine.ContainerInspect(t.Context(), ids[0], client.ContainerInspectOptions{})
	if err != nil || res.Container.Config == nil {
		return webState{}, false
	}
	cfg := res.Container.Config
	w := webState{id: ids[0], revision: cfg.Labels[docker.LabelRevision],
		healthcheck: cfg.Healthcheck != nil && len(cfg.Healthcheck.Test) > 0}
	for _, kv := range cfg.Env {
		if v, ok := strings.CutPrefix(kv, "MESSAGE="); ok {
			w.message = v
		}
	}
	return w, true
}

// waitWeb waits until one web container of rev runs, the app reports rev applied and
// healthy, and no apply is in flight (so its history entry is written).
func (a *swApp) waitWeb(t *testing.T, rev string) webState {
	t.Helper()
	var w webState
	eventually(t, 90*time.Second, "web running revision "+rev[:12], func() bool {
		var ok bool
		w, ok = runningWeb(t, a.project)
		st := a.d.Status(t, "app")
		return ok && w.revision == rev && st.AppliedRevision == rev && st.Health == "Healthy" && st.Operation == nil
	})
	return w
}

// allContainers lists every container of the project, stopped ones too.
func allContainers(t *testing.T, project string) []container.Summary {
	t.Helper()
	f := client.Filters{}.Add("label", docker.LabelProject+"="+project)
	cs, err := engine.ContainerList(t.Context(), client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	return cs.Items
}

// runSplit runs a shipwatch verb and returns its exit code, stdout and stderr apart, so
// that logs cannot spoil JSON output.
func runSplit(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), binary, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.ExitCode(), stdout.String(), stderr.String()
	} else if err != nil {
		t.Fatalf("run shipwatch %v: %v", args, err)
	}
	return 0, stdout.String(), stderr.String()
}

// historyCLI runs `shipwatch history app -o json` on cfg.
func historyCLI(t *testing.T, cfg string) []state.Entry {
	t.Helper()
	code, out, errOut := runSplit(t, "history", "app", "-o", "json", "--config", cfg)
	var entries []state.Entry
	if code != 0 || json.Unmarshal([]byte(out), &entries) != nil {
		t.Fatalf("history -o json = %d:\n%s\n%s", code, out, errOut)
	}
	return entries
}

// historyAPI reads GET /api/v1/apps/app/history.
func historyAPI(t *testing.T, d *testdaemon.Daemon) []state.Entry {
	t.Helper()
	var resp server.HistoryResponse
	if err := json.Unmarshal(d.Get(t, "/api/v1/apps/app/history"), &resp); err != nil {
		t.Fatalf("decode history: %v", err)
	}
	return resp.Entries
}

// entryShape is what a test expects of a history entry; empty health is not checked.
type entryShape struct {
	trigger                  state.Trigger
	actor                    state.Actor
	before, revision, health string
	result                   state.Result
	stage                    string
}

func shapeOf(e state.Entry) entryShape {
	return entryShape{trigger: e.Trigger, actor: e.Actor, before: e.RevisionBefore, revision: e.Revision,
		health: e.Health, result: e.Result, stage: e.Stage}
}

// assertHistory checks entries, newest first, against want.
func assertHistory(t *testing.T, via string, entries []state.Entry, want ...entryShape) {
	t.Helper()
	got := make([]entryShape, len(entries))
	for i, e := range entries {
		got[i] = shapeOf(e)
		if i < len(want) && want[i].health == "" {
			got[i].health = ""
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("history via %s, newest first:\n got %+v\nwant %+v", via, got, want)
	}
}

// Drift under drift: alert stays an alert across a restart: the removed container is
// reported, not re-created, by the new daemon's first pass and by a full pass after it, and
// the episode the first daemon counted is not counted again.
func TestDriftAlertSurvivesARestart(t *testing.T) {
	a := startSWApp(t, testdaemon.Config{Drift: "alert", Sync: "auto"}, "alert-restart")
	rev := a.head(t)
	w := a.waitWeb(t, rev)
	removeContainer(t, w.id)
	eventually(t, 20*time.Second, "removal reported as drift", func() bool {
		st := a.d.Status(t, "app")
		return len(st.Drift) == 1 && st.Sync == reconciler.SyncOutOfSync
	})

	a.restart(t)
	held := func(when string) {
		t.Helper()
		st := a.d.Status(t, "app")
		if len(st.Drift) != 1 || st.Sync != reconciler.SyncOutOfSync || !strings.Contains(st.Reason, "drift: alert") ||
			st.AppliedRevision != rev {
			t.Errorf("%s: status = sync %s, drift %v, applied %s, reason %q; want the drift reported at %s",
				when, st.Sync, st.Drift, st.AppliedRevision, st.Reason, rev[:12])
		}
		if cs := allContainers(t, a.project); len(cs) != 0 {
			t.Errorf("%s: drift: alert re-created web: %d containers", when, len(cs))
		}
	}
	held("after the restart's first pass")
	a.refresh(t, rev)
	held("after a refresh")
	if got := a.d.Metric(t, "shipwatch_drift_detected_total", map[string]string{"app": "app", "policy": "alert"}); got != 0 {
		t.Errorf("the restarted daemon counted the open drift episode again: %v", got)
	}
}

// A new commit under sync: manual stays pending across a restart.
func TestManualSyncPendingSurvivesARestart(t *testing.T) {
	a := startSWApp(t, testdaemon.Config{Drift: "heal", Sync: "manual"}, "manual-1")
	rev1 := a.head(t)
	eventually(t, 30*time.Second, "first revision held for a manual sync", func() bool {
		st := a.d.Status(t, "app")
		return st.Planned && st.Sync == reconciler.SyncOutOfSync && st.DesiredRevision == rev1
	})
	if code := a.d.Post(t, "/api/v1/apps/app/sync", swToken); code != http.StatusOK {
		t.Fatalf("POST sync = %d", code)
	}
	w1 := a.waitWeb(t, rev1)
	rev2 := a.commit("manual-2")

	held := func(when string) {
		t.Helper()
		st := a.d.Status(t, "app")
		if st.Sync != reconciler.SyncOutOfSync || st.DesiredRevision != rev2 || st.AppliedRevision != rev1 ||
			!strings.Contains(st.Reason, "sync: manual") {
			t.Errorf("%s: status = sync %s, desired %s, applied %s, reason %q; want %s pending",
				when, st.Sync, st.DesiredRevision, st.AppliedRevision, st.Reason, rev2[:12])
		}
		if w, ok := runningWeb(t, a.project); !ok || w != w1 {
			t.Errorf("%s: web = %+v, want the untouched %+v", when, w, w1)
		}
	}
	a.refresh(t, rev2)
	held("before the restart")
	a.restart(t)
	held("after the restart's first pass")
	a.refresh(t, rev2)
	held("after a refresh")
}

// History records a first deploy, an update, a drift heal and a revision that does not
// render; the CLI (through the daemon, which holds the state dir) and the API list them,
// with masked diffs, and still do after a restart.
func TestHistoryRecordsDeploysHealsAndFailures(t *testing.T) {
	a := startSWApp(t, testdaemon.Config{Drift: "heal", Sync: "auto"}, "hist-one")
	rev1 := a.head(t)
	a.waitWeb(t, rev1)
	rev2 := a.commit("hist-two")
	a.refresh(t, rev2)
	w := a.waitWeb(t, rev2)
	removeContainer(t, w.id)
	eventually(t, 60*time.Second, "removal healed", func() bool {
		h, ok := runningWeb(t, a.project)
		st := a.d.Status(t, "app")
		return ok && h.id != w.id && st.Operation == nil && len(st.Drift) == 0 && st.Health == "Healthy"
	})
	rev3 := a.repo.Commit("broken", map[string]string{"compose.yaml": "services: {web: [\n"})
	if st := a.refresh(t, rev3); st.LastError == nil || st.LastError.Stage != reconciler.StageRender {
		t.Fatalf("broken revision: last error = %+v, want RenderFailed", st.LastError)
	}

	want := []entryShape{
		{trigger: state.TriggerManual, actor: state.ActorAPI, before: rev2, revision: rev3, result: state.ResultFailed, stage: string(reconciler.StageRender)},
		{trigger: state.TriggerDrift, actor: state.ActorDaemon, before: rev2, revision: rev2, health: "Healthy", result: state.ResultSucceeded},
		{trigger: state.TriggerManual, actor: state.ActorAPI, before: rev1, revision: rev2, health: "Healthy", result: state.ResultSucceeded},
		{trigger: state.TriggerPoll, actor: state.ActorDaemon, revision: rev1, health: "Healthy", result: state.ResultSucceeded},
	}
	cli := historyCLI(t, a.cfg)
	assertHistory(t, "the CLI", cli, want...)
	assertHistory(t, "the API", historyAPI(t, a.d), want...)
	if len(cli) != len(want) {
		t.FailNow()
	}
	assertEntryShown(t, a, cli[2].ID, "hist-one", "hist-two")

	a.restart(t)
	after := historyCLI(t, a.cfg)
	assertHistory(t, "the CLI after a restart", after, want...)
	for i := range min(len(after), len(cli)) {
		if after[i].ID != cli[i].ID {
			t.Errorf("entry %d: ID %d after the restart, was %d", i, after[i].ID, cli[i].ID)
		}
	}
	if st := a.d.Status(t, "app"); st.AppliedRevision != rev2 || st.LastError == nil || st.LastError.Stage != reconciler.StageRender {
		t.Errorf("after the restart: applied %s, last error %+v; want %s applied and the render failure kept",
			st.AppliedRevision, st.LastError, rev2[:12])
	}
}

// assertEntryShown checks one entry through `history --show ID` and the API: the change of
// web's MESSAGE is named and both values are masked.
func assertEntryShown(t *testing.T, a *swApp, id uint64, values ...string) {
	t.Helper()
	code, out, errOut := runSplit(t, "history", "app", "--show", fmt.Sprint(id), "-o", "json", "--config", a.cfg)
	var shown, viaAPI state.Entry
	if code != 0 || json.Unmarshal([]byte(out), &shown) != nil {
		t.Fatalf("history --show %d = %d:\n%s\n%s", id, code, out, errOut)
	}
	if err := json.Unmarshal(a.d.Get(t, fmt.Sprintf("/api/v1/apps/app/history/%d", id)), &viaAPI); err != nil {
		t.Fatal(err)
	}
	if shown.ID != id || viaAPI.ID != id || len(shown.Changes) == 0 || len(viaAPI.Changes) != len(shown.Changes) {
		t.Fatalf("entry %d: --show has id %d with %d changes, the API id %d with %d", id, shown.ID,
			len(shown.Changes), viaAPI.ID, len(viaAPI.Changes))
	}
	diffs := ""
	for _, c := range shown.Changes {
		diffs += c.Diff
	}
	if !strings.Contains(diffs, "MESSAGE") {
		t.Errorf("entry %d's diffs do not name MESSAGE:\n%s", id, diffs)
	}
	for _, v := range values {
		if strings.Contains(out, v) || strings.Contains(diffs, v) {
			t.Errorf("entry %d shows the environment value %q unmasked", id, v)
		}
	}
}

// An unreadable state.db is moved aside; the daemon starts afresh, says so in every status
// and in a metric, and keeps deploying.
func TestCorruptStateStoreIsMovedAsideAndDeploysGoOn(t *testing.T) {
	a := startSWApp(t, testdaemon.Config{Drift: "heal", Sync: "auto"}, "corrupt-1")
	w1 := a.waitWeb(t, a.head(t))
	if err := a.d.Stop(syscall.SIGTERM, 45*time.Second); err != nil {
		t.Fatalf("stop the daemon: %v", err)
	}
	dir := testdaemon.StateDir(a.cfg)
	garbage := bytes.Repeat([]byte("this is not a bbolt database\n"), 512)
	if err := os.WriteFile(filepath.Join(dir, state.DBFile), garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	a.d = startDaemon(t, a.cfg, a.d.Addr)
	eventually(t, 60*time.Second, "the restarted daemon planned app", func() bool {
		st := a.d.Status(t, "app")
		return st.Planned && !st.LastReconcile.IsZero()
	})
	var apps server.AppsResponse
	if err := json.Unmarshal(a.d.Get(t, "/api/v1/apps"), &apps); err != nil || len(apps.Apps) != 1 {
		t.Fatalf("GET /api/v1/apps: %v, %d apps", err, len(apps.Apps))
	}
	moved, _ := filepath.Glob(filepath.Join(dir, state.DBFile+".corrupt-*"))
	for _, ws := range [][]string{apps.Warnings, apps.Apps[0].Warnings} {
		if len(ws) != 1 || !strings.Contains(ws[0], "unreadable") || len(moved) != 1 || !strings.Contains(ws[0], moved[0]) {
			t.Errorf("warnings = %q, want one naming the moved file %v", ws, moved)
		}
	}
	if len(moved) == 1 {
		if b, err := os.ReadFile(moved[0]); err != nil || !bytes.Equal(b, garbage) {
			t.Errorf("the moved-aside file does not hold the old content: %v", err)
		}
	}
	if got := a.d.Metric(t, "shipwatch_state_store_resets_total", nil); got != 1 {
		t.Errorf("shipwatch_state_store_resets_total = %v, want 1", got)
	}
	if w, ok := runningWeb(t, a.project); !ok || w != w1 {
		t.Errorf("web = %+v after the reset, want the untouched %+v", w, w1)
	}
	rev2 := a.commit("corrupt-2")
	a.refresh(t, rev2)
	if w := a.waitWeb(t, rev2); w.message != "corrupt-2" {
		t.Errorf("web MESSAGE = %q after the new commit", w.message)
	}
	entries := historyAPI(t, a.d)
	if len(entries) == 0 || entries[0].Revision != rev2 || entries[0].Result != state.ResultSucceeded {
		t.Errorf("the fresh store did not record the deploy of %s: %+v", rev2[:12], entries)
	}
}

// A second daemon on the same state dir refuses to start, naming the state dir and the
// first daemon's pid; the first keeps running and healing.
func TestSecondDaemonOnTheStateDirRefusesToStart(t *testing.T) {
	a := startSWApp(t, testdaemon.Config{Drift: "heal", Sync: "auto"}, "lock-1")
	w := a.waitWeb(t, a.head(t))
	// Another listen address, so that only the state dir can make it refuse.
	orig, err := os.ReadFile(a.cfg)
	if err != nil {
		t.Fatal(err)
	}
	other := testdaemon.FreeAddr(t)
	second := filepath.Join(t.TempDir(), "second.yaml")
	doc := strings.Replace(string(orig), fmt.Sprintf("listen: %q", a.d.Addr), fmt.Sprintf("listen: %q", other), 1)
	if err := os.WriteFile(second, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "serve", "--config", second).CombinedOutput()
	ee, exited := errors.AsType[*exec.ExitError](err)
	if ctx.Err() != nil || !exited || ee.ExitCode() == 0 {
		t.Fatalf("second daemon: %v (context: %v), want a non-zero exit at once:\n%s", err, ctx.Err(), out)
	}
	dir := testdaemon.StateDir(a.cfg)
	if msg := string(out); !strings.Contains(msg, dir) || !strings.Contains(msg, fmt.Sprintf("pid %d", a.d.PID())) {
		t.Errorf("second daemon's message names neither the state dir %s nor pid %d:\n%s", dir, a.d.PID(), out)
	}
	if h, ok := state.ReadHolder(dir); !ok || h.PID != a.d.PID() {
		t.Errorf("lock holder = %+v, want the first daemon (pid %d)", h, a.d.PID())
	}
	removeContainer(t, w.id)
	eventually(t, 60*time.Second, "the first daemon healed the removal", func() bool {
		h, ok := runningWeb(t, a.project)
		return ok && h.id != w.id
	})
}

// Without a daemon, sync, rollback and unpin run in the CLI's own process on the state dir;
// they record history and the pin, which the next one-shot verb honours.
func TestOneShotVerbsRecordHistory(t *testing.T) {
	project := uniqueProject(t)
	repo := newRepo(t, simpleApp("oneshot-1"))
	cfg := testdaemon.Config{RepoURL: repo.Dir, Addr: testdaemon.FreeAddr(t), Project: project,
		Drift: "heal", Sync: "auto", Token: swToken}.Write(t)
	run := func(args ...string) {
		t.Helper()
		code, out, errOut := runSplit(t, append(args, "--config", cfg)...)
		if code != 0 || strings.Contains(errOut, "asking it") {
			t.Fatalf("shipwatch %v = %d, want 0 in this process:\n%s\n%s", args, code, out, errOut)
		}
	}
	running := func(rev, when string) {
		t.Helper()
		if w, ok := runningWeb(t, project); !ok || w.revision != rev {
			t.Fatalf("%s: web = %+v, want revision %s", when, w, rev[:12])
		}
	}
	rev1 := repo.Git("rev-parse", "HEAD")
	run("sync", "app")
	running(rev1, "first sync")
	rev2 := repo.Commit("two", simpleApp("oneshot-2"))
	run("sync", "app")
	running(rev2, "second sync")
	run("rollback", "app")
	running(rev1, "rollback")
	repo.Commit("three", simpleApp("oneshot-3"))
	run("sync", "app")
	running(rev1, "sync of a pinned app")
	assertHistory(t, "the CLI", historyCLI(t, cfg),
		entryShape{trigger: state.TriggerRollback, actor: state.ActorCLI, before: rev2, revision: rev1, health: "Healthy", result: state.ResultSucceeded},
		entryShape{trigger: state.TriggerManual, actor: state.ActorCLI, before: rev1, revision: rev2, health: "Healthy", result: state.ResultSucceeded},
		entryShape{trigger: state.TriggerManual, actor: state.ActorCLI, revision: rev1, health: "Healthy", result: state.ResultSucceeded},
	)
	run("unpin", "app")
	run("sync", "app")
	rev3 := repo.Git("rev-parse", "HEAD")
	running(rev3, "sync after unpin")
	if entries := historyCLI(t, cfg); len(entries) != 4 || entries[0].Revision != rev3 || entries[0].RevisionBefore != rev1 {
		t.Errorf("after unpin and sync: history = %+v, want %s deployed over %s on top", entries, rev3[:12], rev1[:12])
	}
}
