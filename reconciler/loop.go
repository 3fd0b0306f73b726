package reconciler

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/internal/state"
)

// Run runs every app's loop until ctx ends: a pass at start, then at each interval (with up
// to 10% jitter), on triggers, and on the driver's live-change events.
func (r *Reconciler) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, n := range r.names {
		st := r.apps[n]
		wg.Go(func() { r.loop(ctx, st) })
	}
	wg.Wait()
	return ctx.Err()
}

func (r *Reconciler) loop(ctx context.Context, st *appState) {
	events := r.watch(ctx, st)
	req := passRequest{Request: Request{Trigger: state.TriggerPoll, Actor: state.ActorDaemon}, resolve: true}
	for {
		passCtx, abort, done := r.graceful(ctx)
		req.stopping, req.abort = ctx.Done(), abort
		res := r.runPass(passCtx, st, req)
		done()
		if ctx.Err() != nil {
			return
		}
		wait := r.nextWait(st, res)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
			req = passRequest{Request: Request{Trigger: state.TriggerPoll, Actor: state.ActorDaemon}, resolve: true}
		case asked := <-st.triggerCh:
			timer.Stop()
			req = passRequest{Request: asked, resolve: true}
		case <-events:
			timer.Stop()
			// A live change, not a Git change: the pass re-plans without asking Git.
			req = passRequest{Request: Request{Trigger: state.TriggerDrift, Actor: state.ActorDaemon}}
			drainFor(ctx, events, 300*time.Millisecond)
		}
	}
}

// graceful returns a context for one pass that outlives ctx by at most ShutdownTimeout, so
// a SIGTERM lets the apply in flight finish instead of leaving a half-made container; abort
// closes when that time is up, the only thing that may cut the pass's apply (applyContext).
func (r *Reconciler) graceful(ctx context.Context) (context.Context, <-chan struct{}, context.CancelFunc) {
	passCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	abort := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(r.opts.ShutdownTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			r.log.Warn("shutdown timeout: cancelling the pass in flight")
			close(abort)
			cancel()
		case <-passCtx.Done():
		}
	})
	return passCtx, abort, func() { stop(); cancel() }
}

// nextWait is the interval with jitter, or the backoff after a transient error.
func (r *Reconciler) nextWait(st *appState, err error) time.Duration {
	interval := st.spec.Interval + time.Duration(rand.Int64N(int64(st.spec.Interval)/10+1))
	var se *StageError
	if !errors.As(err, &se) || se.Class != ClassRetry {
		st.failures = 0
		return interval
	}
	st.failures++
	backoff := r.opts.RetryBase << min(st.failures-1, 16)
	return min(backoff, r.opts.RetryMax, interval)
}

// drainFor swallows further events for d, so a burst (die, destroy, ...) causes one pass.
func drainFor(ctx context.Context, ch <-chan drivers.Event, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
		}
	}
}

// watch follows the driver's live-change events until ctx ends. A Watch that fails (the
// backend down when the daemon starts) is retried with backoff, and so is one whose channel
// closes early; drift is detected at the poll interval meanwhile. A watch that starts again
// after such a gap sends an event, so the loop re-plans what it may have missed.
func (r *Reconciler) watch(ctx context.Context, st *appState) <-chan drivers.Event {
	out := make(chan drivers.Event, 16)
	go func() {
		defer close(out)
		backoff := r.opts.RetryBase
		gap := false
		for ctx.Err() == nil {
			ch, err := st.spec.Driver.Watch(ctx, r.driverApp(st, ""))
			if err != nil {
				r.log.Warn("watch failed; retrying, drift is detected at the poll interval meanwhile",
					"app", st.spec.Name, "err", err)
				gap = true
				if !sleep(ctx, backoff) {
					return
				}
				backoff = min(2*backoff, r.opts.RetryMax)
				continue
			}
			backoff = r.opts.RetryBase
			if gap {
				forward(ctx, out, drivers.Event{Reason: "watch restarted", Time: r.opts.Now()})
			}
			for ev := range ch {
				forward(ctx, out, ev)
			}
			gap = true // the driver's channel closed: watch again unless ctx ended
		}
	}()
	return out
}

func forward(ctx context.Context, out chan<- drivers.Event, ev drivers.Event) {
	select {
	case out <- ev:
	case <-ctx.Done():
	}
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
