package faults

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers/docker"
	"github.com/shipwatch/shipwatch/internal/testdaemon"
	"github.com/shipwatch/shipwatch/internal/testgit"
	"github.com/shipwatch/shipwatch/reconciler"
)

// apiToken is the bearer token of the daemons the Engine fault tests run: they trigger
// passes with POST /api/v1/apps/app/refresh (the repo is polled once an hour).
const apiToken = "tok-faults-engine"

// manyServices is a compose app of n long-running services whose environment names the
// commit: each new commit recreates all of them. The first two are also on a second
// network (so their creation is a create plus a connect) and the first mounts a named
// volume, which must survive every fault.
func manyServices(n int, message string) map[string]string {
	var b strings.Builder
	b.WriteString("services:\n")
	for i := range n {
		fmt.Fprintf(&b, "  svc%d:\n    image: %s\n    environment: {MESSAGE: %q}\n    restart: unless-stopped\n", i, image, message)
		if i < 2 {
			b.WriteString("    networks: [default, back]\n")
		}
		if i == 0 {
			b.WriteString("    volumes: [\"data:/data\"]\n")
		}
	}
	b.WriteString("networks:\n  back: {}\nvolumes:\n  data: {}\n")
	return map[string]string{"compose.yaml": b.String()}
}

// engineApp is a daemon deploying manyServices from a local repo.
type engineApp struct {
	repo     *testgit.Repo
	project  string
	services int
	config   string
	addr     string
	daemon   *testdaemon.Daemon
	// volumeCreated is when the data volume was created by the first deploy; a volume
	// created again means its data was lost.
	volumeCreated string
}

func newEngineApp(t *testing.T, services int, dockerHost string) *engineApp {
	t.Helper()
	a := &engineApp{repo: testgit.New(t), project: uniqueProject(t), services: services, addr: testdaemon.FreeAddr(t)}
	a.repo.Commit("first", manyServices(services, "c0"))
	a.config = testdaemon.Config{RepoURL: a.repo.Dir, Addr: a.addr, Project: a.project, Drift: "heal", Sync: "auto",
		Token: apiToken, DockerHost: dockerHost}.Write(t)
	return a
}

func (a *engineApp) start(t *testing.T) {
	t.Helper()
	a.daemon = startDaemon(t, a.config, a.addr)
}

// commit commits message into every service and returns the new revision.
func (a *engineApp) commit(message string) string {
	return a.repo.Commit(message, manyServices(a.services, message))
}

// refresh asks the daemon for a pass now.
func (a *engineApp) refresh(t *testing.T) {
	t.Helper()
	if code := a.daemon.Post(t, "/api/v1/apps/app/refresh", apiToken); code != 202 {
		t.Fatalf("refresh = %d, want 202", code)
	}
}

// kill sends SIGKILL to the daemon and waits until it is gone.
func (a *engineApp) kill(t *testing.T) {
	t.Helper()
	if err := a.daemon.Stop(syscall.SIGKILL, 10*time.Second); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("SIGKILL: %v", err)
	}
}

// applySteps counts the steps the daemon's driver has begun since it started.
func (a *engineApp) applySteps(t *testing.T) int {
	return strings.Count(a.daemon.Logs(t), `msg="apply step"`)
}

// stepTime is the mean time between the apply steps the daemon logged (one per service),
// or a second when it logged fewer than two.
func (a *engineApp) stepTime(t *testing.T) time.Duration {
	var first, last time.Time
	n := 0
	for line := range strings.Lines(a.daemon.Logs(t)) {
		ts, ok := strings.CutPrefix(line, "time=")
		if !ok || !strings.Contains(line, `msg="apply step"`) {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, strings.Fields(ts)[0])
		if err != nil {
			continue
		}
		if n == 0 {
			first = at
		}
		last, n = at, n+1
	}
	if n < 2 {
		return time.Second
	}
	return last.Sub(first) / time.Duration(n-1)
}

// leftoverSteps counts the steps the daemon's driver took on what an interrupted apply
// left: recreates finished, and containers removed (these tests remove no others).
func (a *engineApp) leftoverSteps(t *testing.T) (finished, removed int) {
	logs := a.daemon.Logs(t)
	return strings.Count(logs, "action=finish-recreate"), strings.Count(logs, "action=remove-container")
}

// convergence says what still differs from Git's revision rev: "" when the app runs
// exactly rev (one running container per service, named as compose names it, labelled
// with rev, none under a temporary name), has no container or network outside its desired
// state, kept its volume, and reports Synced and Healthy in its status and metrics.
func (a *engineApp) convergence(t *testing.T, rev string) string {
	st := a.daemon.Status(t, "app")
	if st.Sync != reconciler.SyncSynced || st.AppliedRevision != rev || st.Health != "Healthy" || st.Operation != nil {
		return fmt.Sprintf("status sync=%s applied=%.12s health=%s operation=%v", st.Sync, st.AppliedRevision, st.Health, st.Operation != nil)
	}
	if a.daemon.Metric(t, "shipwatch_app_sync_status", map[string]string{"app": "app", "status": "Synced"}) != 1 {
		return "metric shipwatch_app_sync_status{status=Synced} is not 1"
	}
	if why := a.liveDiffers(t, rev); why != "" {
		return why
	}
	return ""
}

// liveDiffers compares the Engine's containers, networks and volume of the project with
// what rev wants.
func (a *engineApp) liveDiffers(t *testing.T, rev string) string {
	f := client.Filters{}.Add("label", docker.LabelProject+"="+a.project)
	cs, err := engine.ContainerList(t.Context(), client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return err.Error()
	}
	want := map[string]bool{}
	for i := range a.services {
		want[fmt.Sprintf("%s-svc%d-1", a.project, i)] = true
	}
	var problems []string
	for _, c := range cs.Items {
		name := strings.TrimPrefix(c.Names[0], "/")
		switch {
		case !want[name]:
			problems = append(problems, "unexpected container "+name)
		case c.State != "running":
			problems = append(problems, name+" is "+string(c.State))
		case c.Labels[docker.LabelRevision] != rev:
			problems = append(problems, fmt.Sprintf("%s runs revision %.12s", name, c.Labels[docker.LabelRevision]))
		}
		delete(want, name)
	}
	for name := range want {
		problems = append(problems, name+" is missing")
	}
	ns, err := engine.NetworkList(t.Context(), client.NetworkListOptions{Filters: f})
	if err != nil {
		return err.Error()
	}
	var nets []string
	for _, n := range ns.Items {
		nets = append(nets, n.Name)
	}
	slices.Sort(nets)
	if wantNets := []string{a.project + "_back", a.project + "_default"}; !slices.Equal(nets, wantNets) {
		problems = append(problems, fmt.Sprintf("networks %v, want %v", nets, wantNets))
	}
	slices.Sort(problems)
	return strings.Join(problems, "; ")
}

// volumeLost says whether the data volume is gone or was created again since the first
// deploy (then its data was lost).
func (a *engineApp) volumeLost(t *testing.T) bool {
	v, err := engine.VolumeInspect(t.Context(), a.project+"_data", client.VolumeInspectOptions{})
	if err != nil {
		return true
	}
	if a.volumeCreated == "" {
		a.volumeCreated = v.Volume.CreatedAt
	}
	return v.Volume.CreatedAt != a.volumeCreated
}

// waitConverged polls until the app converged to rev, or timeout; it logs what still
// differed when it gives up.
func (a *engineApp) waitConverged(t *testing.T, rev string, timeout time.Duration) bool {
	t.Helper()
	var why string
	ok := within(t, 200*time.Millisecond, timeout, func() bool {
		why = a.convergence(t, rev)
		return why == ""
	})
	if !ok {
		msg := ""
		if st := a.daemon.Status(t, "app"); st.LastError != nil {
			msg = st.LastError.Message
		}
		t.Logf("not converged to %.12s after %s: %s; last error: %s", rev, timeout, why, msg)
	}
	return ok
}

// killPhase is where a kill is aimed at, relative to the daemon's apply of a new commit.
type killPhase int

const (
	killBefore killPhase = iota // between the trigger and the first apply step
	killDuring                  // after a random number of the apply's steps began
	killAfter                   // once the revision is applied and Synced
)

func (p killPhase) String() string { return [...]string{"before", "during", "after"}[p] }

// TestSIGKILLDuringRecreate kills the daemon with SIGKILL at random points of a recreate of
// 10 services (every commit changes all of them), 20 times, each time restarting it on
// the same config and state dir: every restart must converge to the commit with exactly
// one running container per service, none left under a temporary name, no orphans, the
// volume kept, and Synced. Kills are aimed in turn before the apply (a random delay after
// the trigger, shorter than the plan takes), during it (a random delay after a random
// step began) and after it. Its time is that of 20 recreates of 10 services: 200
// container starts, about 2.5 s each on a loaded 2-core machine with Engine 20.10.
func TestSIGKILLDuringRecreate(t *testing.T) {
	const services, iterations = 10, 20
	start := time.Now()
	a := newEngineApp(t, services, "")
	a.start(t)
	if !a.waitConverged(t, a.repo.Git("rev-parse", "HEAD"), 3*time.Minute) {
		t.Fatal("first deploy did not converge")
	}
	a.volumeLost(t) // records its creation
	// A kill during the apply waits a random part of the first 40% of one service's step
	// after the step began: the span from the create of the replacement to its rename,
	// where a kill leaves a leftover. The rest of a step is mostly the Engine starting it.
	window := a.stepTime(t) * 4 / 10
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 20))
	planLatency := time.Second // trigger to first apply step, measured as it goes
	out := Outcome{Fault: "SIGKILL during a 10-service recreate"}
	landed := map[string]int{}
	finished, removed := 0, 0
	for i := range iterations {
		rev := a.commit(fmt.Sprintf("c%d", i+1))
		phase := killPhase(i % 3)
		triggered := time.Now()
		a.refresh(t)
		switch phase {
		case killBefore:
			injectDelay(t, time.Duration(rng.Int64N(int64(planLatency*9/10))))
		case killDuring:
			step := 1 + rng.IntN(services)
			within(t, 10*time.Millisecond, time.Minute, func() bool { return a.applySteps(t) >= step })
			planLatency = (planLatency + time.Since(triggered)) / 2
			injectDelay(t, time.Duration(rng.Int64N(int64(window))))
		case killAfter:
			within(t, 50*time.Millisecond, 2*time.Minute, func() bool { return a.daemon.Status(t, "app").AppliedRevision == rev })
			injectDelay(t, time.Duration(rng.Int64N(int64(300*time.Millisecond))))
		}
		steps, applied := a.applySteps(t), a.daemon.Status(t, "app").AppliedRevision == rev
		a.kill(t)
		out.Injected++
		switch {
		case applied:
			landed["after"]++
		case steps == 0:
			landed["before"]++
		default:
			landed["during"]++
		}
		a.start(t)
		out.Runs++
		converged := a.waitConverged(t, rev, 2*time.Minute)
		f, r := a.leftoverSteps(t)
		finished, removed = finished+f, removed+r
		if a.volumeLost(t) {
			out.Lost++
			t.Errorf("iteration %d: the data volume was lost", i+1)
		}
		if !converged {
			// The next iterations would start from a broken state: stop here.
			t.Errorf("iteration %d: killed %s the apply after %d steps began; no convergence", i+1, phase, steps)
			break
		}
		out.Converged++
	}
	out.Notes = append(out.Notes, fmt.Sprintf("kills=%s", landedText(landed)),
		fmt.Sprintf("recreates_finished=%d leftovers_removed=%d", finished, removed),
		fmt.Sprintf("duration=%s", time.Since(start).Round(time.Second)))
	record(t, out)
}

// injectDelay pauses for d, the random delay of a fault injection (not a wait for a condition).
func injectDelay(t *testing.T, d time.Duration) {
	select {
	case <-t.Context().Done():
	case <-time.After(d):
	}
}

// landedText renders where kills landed (before, during or after the apply) as seen at
// the moment of the kill.
func landedText(m map[string]int) string {
	return fmt.Sprintf("before:%d,during:%d,after:%d", m["before"], m["during"], m["after"])
}
