package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers/docker"
	"github.com/shipwatch/shipwatch/internal/server"
	"github.com/shipwatch/shipwatch/internal/state"
	"github.com/shipwatch/shipwatch/internal/testdaemon"
	"github.com/shipwatch/shipwatch/internal/testgit"
)

// stageSpec is one environment of a pipeline's app.
type stageSpec struct {
	env, from, gate string // gate is the YAML of the gate's keys: "healthyFor: 20s"
	auto            bool
}

// pipeline is a daemon deploying one app through stages from a repo served over smart HTTP
// with a token (so promotions are pushed over the network), each stage in a compose project
// of its own that the test removes when it ends.
type pipeline struct {
	app      string
	repo     *testgit.Repo
	url      string // the repo's smart HTTP clone URL
	cfg      string
	tokFile  string // the API token, for the CLI
	projects map[string]string
	d        *testdaemon.Daemon
}

// stageFiles are the files of one stage: a compose file reading the image from images.env
// (compose.envFiles), with a healthcheck, so a stage is Healthy only once its container is.
func stageFiles(app, env, imageRef string) map[string]string {
	dir := app + "/envs/" + env + "/"
	return map[string]string{
		dir + "compose.yaml": fmt.Sprintf(`services:
  web:
    image: ${WEB_IMAGE}
    environment:
      MESSAGE: %q
    restart: unless-stopped
    healthcheck:
      test: ["CMD", "/app", "-healthcheck"]
      interval: 1s
      retries: 3
`, app+"@"+env),
		dir + "images.env": imagesEnv(imageRef),
	}
}

func imagesEnv(ref string) string { return "WEB_IMAGE=" + ref + "\n" }

// startPipeline commits the stages' files (env -> image reference of images.env), serves the
// repo over smart HTTP with a token and starts a daemon on a config with the app's stages,
// promotion mode and the extra top-level YAML (notify). It does not wait.
func startPipeline(t *testing.T, app, mode string, stages []stageSpec, images map[string]string, extra string) *pipeline {
	t.Helper()
	p := &pipeline{app: app, projects: map[string]string{}}
	files := map[string]string{}
	for _, s := range stages {
		p.projects[s.env] = uniqueProject(t)
		for k, v := range stageFiles(app, s.env, images[s.env]) {
			files[k] = v
		}
	}
	p.repo = newRepo(t, files)
	gitToken := randomSecret("git-")
	p.url = testgit.StartHTTP(t, p.repo.Dir, testgit.HTTPAuth{Token: gitToken})
	p.tokFile = testgit.SecretFile(t, swToken)
	addr := testdaemon.FreeAddr(t)
	var b strings.Builder
	fmt.Fprintf(&b, "stateDir: %q\nlisten: %q\napi: {tokenFile: %q}\n", t.TempDir(), addr, p.tokFile)
	fmt.Fprintf(&b, "repos:\n  - name: deploy\n    url: %q\n    interval: 1s\n    auth: {tokenFile: %q}\n",
		p.url, testgit.SecretFile(t, gitToken))
	fmt.Fprintf(&b, "apps:\n  - name: %s\n    repo: deploy\n    driver: docker\n    drift: heal\n    sync: auto\n"+
		"    healthTimeout: 60s\n    compose: {envFiles: [images.env]}\n    environments:\n", app)
	for _, s := range stages {
		fmt.Fprintf(&b, "      - {name: %s, path: %s/envs/%s, ref: main, compose: {project: %s}", s.env, app, s.env, p.projects[s.env])
		if s.from != "" {
			fmt.Fprintf(&b, ", promoteFrom: %s, gate: {%s}, autoPromote: %t", s.from, s.gate, s.auto)
		}
		b.WriteString("}\n")
	}
	fmt.Fprintf(&b, "    promotion: {files: [images.env], mode: %s, pinDigests: true}\n%s", mode, extra)
	p.cfg = filepath.Join(t.TempDir(), "shipwatch.yaml")
	if err := os.WriteFile(p.cfg, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	p.d = startDaemon(t, p.cfg, addr)
	return p
}

// stage is the name of one of the app's stages, as users address it.
func (p *pipeline) stage(env string) string { return p.app + "@" + env }

// status reads GET /api/v1/apps/APP@ENV with its promotion report; ok is false while the
// daemon cannot answer (it is starting).
func (p *pipeline) status(t *testing.T, env string) (server.AppStatus, bool) {
	t.Helper()
	var st server.AppStatus
	body, err := tolerantGet(t.Context(), "http://"+p.d.Addr+"/api/v1/apps/"+p.stage(env))
	return st, err == nil && json.Unmarshal(body, &st) == nil
}

func tolerantGet(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, err
}

// gate is the stage's promotion report's gate ("open: ..." or "closed: ..."); "" when the
// daemon cannot say now.
func (p *pipeline) gate(t *testing.T, env string) string {
	t.Helper()
	st, ok := p.status(t, env)
	if !ok || st.Promotion == nil {
		return ""
	}
	return st.Promotion.Gate
}

// soaked parses how long the gate's text says the source stage has been healthy at rev
// ("... healthy at REV for 7s ..."); ok is false when it says nothing of the kind.
func soaked(gate, rev string) (time.Duration, bool) {
	m := regexp.MustCompile(`healthy at ` + rev[:12] + ` for (\S+)`).FindStringSubmatch(gate)
	if m == nil {
		return 0, false
	}
	d, err := time.ParseDuration(m[1])
	return d, err == nil
}

// stageContainer is the one web container of a stage as the Engine runs it.
type stageContainer struct {
	id, imageID, imageRef, revision string
}

// web inspects the stage's running web container; ok is false unless exactly one runs.
func (p *pipeline) web(t *testing.T, env string) (stageContainer, bool) {
	t.Helper()
	ids := containers(t, p.projects[env])["web"]
	if len(ids) != 1 {
		return stageContainer{}, false
	}
	res, err := engine.ContainerInspect(t.Context(), ids[0], client.ContainerInspectOptions{})
	if err != nil || res.Container.Config == nil {
		return stageContainer{}, false
	}
	c := res.Container
	return stageContainer{id: c.ID, imageID: c.Image, imageRef: c.Config.Image, revision: c.Config.Labels[docker.LabelRevision]}, true
}

// waitStage waits until the stage has applied rev, is Synced and Healthy with no apply in
// flight and one web container running, and returns that container.
func (p *pipeline) waitStage(t *testing.T, env, rev string) stageContainer {
	t.Helper()
	var c stageContainer
	eventually(t, 90*time.Second, p.stage(env)+" Synced and Healthy at "+rev[:12], func() bool {
		st, ok := p.status(t, env)
		var running bool
		c, running = p.web(t, env)
		return ok && running && st.AppliedRevision == rev && st.Sync == "Synced" && st.Health == "Healthy" && st.Operation == nil
	})
	return c
}

// cli runs a shipwatch verb on the pipeline's config with the API token (the daemon holds
// the state dir, so the verb goes through it) and returns its exit code and its stdout and
// stderr together.
func (p *pipeline) cli(t *testing.T, args ...string) (int, string) {
	t.Helper()
	code, out, errOut := runSplit(t, append(args, "--config", p.cfg, "--token-file", p.tokFile)...)
	return code, out + errOut
}

// head is main's newest commit: the daemon's pushes land in the served work tree.
func (p *pipeline) head(t *testing.T) string {
	t.Helper()
	return p.repo.Git("rev-parse", "main")
}

// promotions lists the commits shipwatch made on main, newest first.
func (p *pipeline) promotions(t *testing.T) []string {
	t.Helper()
	out := p.repo.Git("log", "--author=shipwatch", "--format=%H", "main")
	if out == "" {
		return nil
	}
	return strings.Fields(out)
}

// waitPromotions waits until shipwatch has made n commits on main and returns the newest.
func (p *pipeline) waitPromotions(t *testing.T, n int, what string) string {
	t.Helper()
	eventually(t, 90*time.Second, what, func() bool { return len(p.promotions(t)) >= n })
	if got := p.promotions(t); len(got) != n {
		t.Fatalf("%s: %d promotion commits on main, want %d", what, len(got), n)
	}
	return p.promotions(t)[0]
}

// assertCommit checks a promotion commit: its message holds every want, and it changes
// exactly the target's images.env, to content.
func (p *pipeline) assertCommit(t *testing.T, commit, env, content string, want ...string) {
	t.Helper()
	msg := p.repo.Git("log", "-1", "--format=%B", commit)
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("promotion commit %s: message lacks %q:\n%s", commit[:12], w, msg)
		}
	}
	file := p.app + "/envs/" + env + "/images.env"
	if changed := p.repo.Git("diff", "--name-only", commit+"^", commit); changed != file {
		t.Errorf("promotion commit %s changes %q, want only %s", commit[:12], changed, file)
	}
	if got := p.repo.Git("show", commit+":"+file) + "\n"; got != content {
		t.Errorf("promotion commit %s: %s = %q, want %q", commit[:12], file, got, content)
	}
}

// history reads a stage's history through the API.
func (p *pipeline) history(t *testing.T, env string) []state.Entry {
	t.Helper()
	var resp server.HistoryResponse
	if err := json.Unmarshal(p.d.Get(t, "/api/v1/apps/"+p.stage(env)+"/history"), &resp); err != nil {
		t.Fatalf("decode the history of %s: %v", p.stage(env), err)
	}
	return resp.Entries
}

// promotionEntries are the commits of the promotions a stage's history records, newest
// first.
func (p *pipeline) promotionEntries(t *testing.T, env string) []string {
	t.Helper()
	var out []string
	for _, e := range p.history(t, env) {
		if e.Trigger == state.TriggerPromotion && e.Promotion != nil {
			out = append(out, e.Promotion.Commit)
		}
	}
	return out
}

// holds checks cond every 200ms for d and fails the test the first time it is false: what
// must not happen while a daemon has had every chance to do it.
func holds(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if !cond() {
			t.Fatalf("no longer so: %s", what)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("test ended while checking: %s", what)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// promoted is shipwatch_promotions_total of the target env with result.
func (p *pipeline) promoted(t *testing.T, env, result string) float64 {
	t.Helper()
	return p.d.Metric(t, "shipwatch_promotions_total", map[string]string{"app": p.app, "env": env, "result": result})
}

// restart stops the daemon with SIGTERM and starts a new one on the same config and state
// dir; it returns when the new one answers the status of env.
func (p *pipeline) restart(t *testing.T, env string) {
	t.Helper()
	if err := p.d.Stop(syscall.SIGTERM, 45*time.Second); err != nil {
		t.Fatalf("stop the daemon: %v", err)
	}
	p.d = startDaemon(t, p.cfg, p.d.Addr)
	eventually(t, 60*time.Second, "the restarted daemon answers", func() bool {
		_, ok := p.status(t, env)
		return ok
	})
}
