package reconciler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/internal/state"
)

// TestApplyOutlivesItsCaller: an HTTP client that gives up, or a Ctrl-C, must not cut an
// apply halfway (a recreate between stop and start leaves a service down).
func TestApplyOutlivesItsCaller(t *testing.T) {
	h := newHarness(t, DriftHeal, true)
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionRecreate)}
	ctx, cancel := context.WithCancel(t.Context())
	h.drv.onApply = cancel // the caller goes away in the middle of the apply
	_, err := h.r.Sync(ctx, "web", SyncOptions{Actor: state.ActorAPI})
	if h.drv.applyCtxErr != nil {
		t.Fatalf("the apply's context ended with its caller's: %v", h.drv.applyCtxErr)
	}
	if len(h.drv.applied) != 1 {
		t.Fatalf("applied %v", h.drv.applied)
	}
	_ = err // the health wait after the apply may end with the caller; that cuts nothing
}

// TestOnlyTheHardStopEndsAnApply: the caller's cancellation does not reach an apply's
// context; the daemon's hard stop (abort) does, and ApplyTimeout bounds it.
func TestOnlyTheHardStopEndsAnApply(t *testing.T) {
	h := newHarness(t, DriftHeal, true)
	caller, cancelCaller := context.WithCancel(t.Context())
	abort := make(chan struct{})
	actx, cancel := h.r.applyContext(caller, passRequest{abort: abort})
	defer cancel()
	cancelCaller()
	if err := actx.Err(); err != nil {
		t.Fatalf("the caller's cancellation ended the apply: %v", err)
	}
	close(abort)
	select {
	case <-actx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the hard stop did not end the apply")
	}
	h.r.opts.ApplyTimeout = time.Millisecond
	bounded, cancel2 := h.r.applyContext(t.Context(), passRequest{})
	defer cancel2()
	select {
	case <-bounded.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("ApplyTimeout did not bound the apply")
	}
}

// TestGitOutageIsNotReportedSynced: while Git cannot be read the app is not Synced: Unknown
// when nothing is known, OutOfSync when the ref names a revision that could not be fetched.
// Passes triggered by live changes keep it so.
func TestGitOutageIsNotReportedSynced(t *testing.T) {
	h := newHarness(t, DriftHeal, true)
	deployRevisions(t, h, "rev1")
	h.src.resolveErr = errors.New("dial tcp 127.0.0.1:3000: connect: connection refused")
	err := h.pass(t)
	var se *StageError
	if !errors.As(err, &se) || se.Stage != StageFetch || se.Class != ClassRetry {
		t.Fatalf("pass with Git down: %v", err)
	}
	st, _ := h.r.AppStatus("web")
	if st.Sync != SyncUnknown || !strings.Contains(st.Reason, "cannot read Git") || st.AppliedRevision != "rev1" {
		t.Errorf("status with Git down = %+v", st)
	}
	// A live change meanwhile: planned against what runs, still not Synced.
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionCreate)}
	if err := h.passAs(t, state.TriggerDrift); err != nil && !errors.As(err, &se) {
		t.Fatal(err)
	}
	if err := h.r.runPass(t.Context(), h.r.apps["web"], passRequest{Request: Request{Trigger: state.TriggerDrift}}); err != nil {
		t.Fatal(err)
	}
	if st, _ := h.r.AppStatus("web"); st.Sync != SyncUnknown {
		t.Errorf("a drift pass during the outage reported %s", st.Sync)
	}
	// ls-remote answers with a new revision, the fetch fails.
	h.src.resolveErr, h.src.rev = nil, "rev2"
	h.src.checkoutErr = errors.New("fetch: unexpected EOF")
	_ = h.pass(t)
	if st, _ := h.r.AppStatus("web"); st.Sync != SyncOutOfSync || st.DesiredRevision != "rev2" || st.AppliedRevision != "rev1" {
		t.Errorf("status with the fetch failing = %+v", st)
	}
	h.src.checkoutErr = nil
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionRecreate)}
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	if st, _ := h.r.AppStatus("web"); st.Sync != SyncSynced || st.AppliedRevision != "rev2" || st.Reason != "" {
		t.Errorf("status after Git is back = %+v", st)
	}
}

// TestStalledSourceErrorWaitsAnInterval: a ref that does not exist is not retried every two
// seconds: the source marks it stalled and the next try is a whole interval later.
func TestStalledSourceErrorWaitsAnInterval(t *testing.T) {
	h := newHarness(t, DriftHeal, true)
	h.src.resolveErr = fmt.Errorf("git resolve deploy: ref mian: not found (%w)", ErrStalled)
	err := h.pass(t)
	var se *StageError
	if !errors.As(err, &se) || se.Class != ClassStalled {
		t.Fatalf("err = %v, want a stalled FetchFailed", err)
	}
	if w := h.r.nextWait(h.r.apps["web"], err); w < time.Hour {
		t.Errorf("next try in %v, want the interval (1h)", w)
	}
}

// TestPlanWaitsForThePassInFlight: a diff does not observe live state in the middle of a
// pass's apply.
func TestPlanWaitsForThePassInFlight(t *testing.T) {
	h := newHarness(t, DriftHeal, true)
	h.drv.changes = drivers.ChangeSet{change("api", drivers.ActionRecreate)}
	planned := make(chan int, 1)
	h.drv.onApply = func() {
		go func() {
			_, _ = h.r.Plan(t.Context(), "web", PlanOptions{})
			planned <- 1
		}()
		select {
		case <-planned:
			t.Error("Plan ran while the pass was applying")
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err := h.pass(t); err != nil {
		t.Fatal(err)
	}
	select {
	case <-planned:
	case <-time.After(5 * time.Second):
		t.Fatal("Plan did not run after the pass")
	}
}

// TestWatchIsRetried: a backend that is down when the loop starts still gets watched once it
// is up, and the loop hears that it must re-plan.
func TestWatchIsRetried(t *testing.T) {
	h := newHarness(t, DriftHeal, true)
	h.r.opts.RetryBase, h.r.opts.RetryMax = time.Millisecond, 4*time.Millisecond
	h.drv.watchErrs, h.drv.watchCh = 3, make(chan drivers.Event, 1)
	h.drv.watchCh <- drivers.Event{Ref: drivers.Ref{Kind: "service", Name: "api"}, Reason: "die"}
	events := h.r.watch(t.Context(), h.r.apps["web"])
	var reasons []string
	for len(reasons) < 2 {
		select {
		case ev := <-events:
			reasons = append(reasons, ev.Reason)
		case <-time.After(5 * time.Second):
			t.Fatalf("events = %v, want the restart and the die", reasons)
		}
	}
	if !slices.Equal(reasons, []string{"watch restarted", "die"}) {
		t.Errorf("events = %v", reasons)
	}
}

// TestCheckoutHeldWhileItsBundleIsKept: the checkout of the bundle a pass keeps for later
// applies is not pruned; older ones are let go.
func TestCheckoutHeldWhileItsBundleIsKept(t *testing.T) {
	h := newHarness(t, DriftHeal, true)
	deployRevisions(t, h, "rev1", "rev2", "rev3")
	if got := h.src.held(); !slices.Equal(got, []string{"rev3"}) {
		t.Errorf("held checkouts = %v, want only rev3's", got)
	}
	h.src.rev = "broken"
	_ = h.pass(t)
	if got := h.src.held(); !slices.Equal(got, []string{"rev3"}) {
		t.Errorf("held checkouts after a broken revision = %v, want only rev3's", got)
	}
	if _, err := h.r.Plan(t.Context(), "web", PlanOptions{}); err == nil {
		t.Fatal("a diff of a broken revision rendered")
	}
	if got := h.src.held(); !slices.Equal(got, []string{"rev3"}) {
		t.Errorf("held checkouts after a diff = %v, want only rev3's", got)
	}
}
