package faults

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/internal/testproxy"
)

// engineSocket is the Docker Engine's socket the proxies forward to.
const engineSocket = "/var/run/docker.sock"

// streamBreaks counts the event streams the daemon saw break: a cut of the Engine's
// connection breaks them at once, so it is the sign the daemon noticed the cut.
func (a *engineApp) streamBreaks(t *testing.T) int {
	return strings.Count(a.daemon.Logs(t), `msg="event stream broken"`)
}

// TestEngineCutMidApply cuts the daemon's connection to the Engine (a proxy on a unix
// socket drops every connection and refuses new ones) at random points of a recreate of 5
// services, several times, and restores it once the apply has ended: the app must converge
// every time with one running container per service, none left under a temporary name,
// and no orphans.
func TestEngineCutMidApply(t *testing.T) {
	const services, cuts = 5, 4
	start := time.Now()
	proxy := testproxy.Start(t, "unix", "unix", engineSocket)
	a := newEngineApp(t, services, "unix://"+proxy.Addr)
	a.start(t)
	if !a.waitConverged(t, a.repo.Git("rev-parse", "HEAD"), 3*time.Minute) {
		t.Fatal("first deploy did not converge")
	}
	a.volumeLost(t)
	window := a.stepTime(t) * 4 / 10 // see TestSIGKILLDuringRecreate
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 4))
	out := Outcome{Fault: "Engine API connection cut and restored mid-apply"}
	failedApplies := 0
	for i := range cuts {
		rev := a.commit(fmt.Sprintf("c%d", i+1))
		steps, breaks := a.applySteps(t), a.streamBreaks(t)
		a.refresh(t)
		step := 1 + rng.IntN(services)
		within(t, 10*time.Millisecond, time.Minute, func() bool { return a.applySteps(t) >= steps+step })
		injectDelay(t, time.Duration(rng.Int64N(int64(window))))
		cut := time.Now()
		proxy.Down()
		out.Injected++
		noticed := within(t, 20*time.Millisecond, 30*time.Second, func() bool { return a.streamBreaks(t) > breaks })
		ended := within(t, 50*time.Millisecond, time.Minute, func() bool { return a.daemon.Status(t, "app").Operation == nil })
		if st := a.daemon.Status(t, "app"); st.LastError != nil && st.LastError.Time.After(cut) {
			failedApplies++
		}
		proxy.Up()
		out.Runs++
		if !noticed || !ended {
			t.Errorf("cut %d: the daemon did not notice the cut (%t) or its apply did not end (%t)", i+1, noticed, ended)
		}
		if a.waitConverged(t, rev, 2*time.Minute) {
			out.Converged++
		} else {
			t.Errorf("cut %d after %d steps: no convergence", i+1, step)
		}
		if a.volumeLost(t) {
			out.Lost++
		}
	}
	finished, removed := a.leftoverSteps(t)
	out.Notes = append(out.Notes, fmt.Sprintf("applies_failed_by_the_cut=%d", failedApplies),
		fmt.Sprintf("recreates_finished=%d leftovers_removed=%d", finished, removed),
		fmt.Sprintf("duration=%s", time.Since(start).Round(time.Second)))
	record(t, out)
}

// TestEngineCutAtDaemonStart starts the daemon while its Engine cannot be reached, then
// brings the Engine back: the app must deploy, and drift made after that (a container
// removed by hand) must be seen through the Engine's event stream, which the daemon could
// not open at start, and healed within seconds (the repo is polled once an hour).
func TestEngineCutAtDaemonStart(t *testing.T) {
	start := time.Now()
	proxy := testproxy.Start(t, "unix", "unix", engineSocket)
	proxy.Down()
	a := newEngineApp(t, 2, "unix://"+proxy.Addr)
	a.start(t)
	eventually(t, time.Minute, "a pass failed on the unreachable Engine", func() bool {
		return a.daemon.Status(t, "app").LastError != nil
	})
	proxy.Up()
	rev := a.repo.Git("rev-parse", "HEAD")
	out := Outcome{Fault: "Engine unreachable when the daemon starts, drift after it came back", Injected: 1, Runs: 1}
	if !a.waitConverged(t, rev, 3*time.Minute) {
		record(t, out)
		t.FailNow()
	}
	victim := a.project + "-svc1-1"
	before, err := engine.ContainerInspect(t.Context(), victim, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := engine.ContainerRemove(t.Context(), victim, client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	removed := time.Now()
	healed := within(t, 100*time.Millisecond, 20*time.Second, func() bool {
		c, err := engine.ContainerInspect(t.Context(), victim, client.ContainerInspectOptions{})
		return err == nil && c.Container.ID != before.Container.ID && c.Container.State.Running
	})
	latency := time.Since(removed)
	if healed && a.waitConverged(t, rev, time.Minute) {
		out.Converged = 1
	} else {
		t.Errorf("a container removed by hand was not healed within 20s")
	}
	out.Notes = append(out.Notes, fmt.Sprintf("drift_healed_in=%s", latency.Round(100*time.Millisecond)), fmt.Sprintf("duration=%s", time.Since(start).Round(time.Second)))
	record(t, out)
}
