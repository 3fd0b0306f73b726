package promotion

import (
	"context"
	"errors"
	"time"

	"github.com/shipwatch/shipwatch/internal/state"
)

// autoTick is how often the daemon looks at the gates of auto-promoted stages: a gate opens
// when time passes, without any pass of the source stage.
const autoTick = 5 * time.Second

// retryFailed is how long a revision whose promotion failed waits before it is tried again.
const retryFailed = time.Minute

// Run promotes into the stages with autoPromote when their gates open, and keeps the
// revisions-behind gauge, until ctx ends. A revision is promoted into a stage once (the
// store remembers it across restarts), and a stage held by a rollback or a pin is left
// alone: automation never undoes a person's rollback.
func (p *Promoter) Run(ctx context.Context) error {
	failed := map[string]time.Time{} // target@revision -> when its promotion failed
	t := time.NewTicker(autoTick)
	defer t.Stop()
	for {
		for _, pl := range p.opts.Pipelines {
			for _, s := range pl.Stages {
				if s.From == "" {
					continue
				}
				if s.Auto {
					p.auto(ctx, pl, s, failed)
				}
				p.behind(pl, s) // after: a promotion just made counts at once
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// auto promotes into s when its gate is open and the source runs a revision not promoted
// into s yet.
func (p *Promoter) auto(ctx context.Context, pl Pipeline, s Stage, failed map[string]time.Time) {
	target, err := p.opts.Stages.Stage(s.Name)
	if err != nil || target.Pin != nil {
		return
	}
	src, err := p.opts.Stages.Stage(pl.App + "@" + s.From)
	if err != nil || src.Applied == "" {
		return
	}
	last, _, err := p.opts.Records.Promoted(s.Name)
	if err != nil || last.SourceRevision == src.Applied {
		return
	}
	key := s.Name + "@" + src.Applied
	if at, ok := failed[key]; ok && p.opts.Now().Sub(at) < retryFailed {
		return
	}
	if v, err := p.gate(s, src); err != nil || !v.Open {
		return
	}
	if _, err := p.Promote(ctx, pl.App, s.Env, PromoteOptions{Actor: state.ActorDaemon}); err != nil && !errors.Is(err, ErrGateClosed) {
		failed[key] = p.opts.Now()
		p.log.Error("automatic promotion failed", "app", s.Name, "revision", short(src.Applied), "err", err)
		return
	}
	delete(failed, key)
}

// behind sets the revisions-behind gauge of s.
func (p *Promoter) behind(pl Pipeline, s Stage) {
	if n, err := p.behindCount(pl, s); err == nil {
		p.opts.Metrics.RevisionsBehind.WithLabelValues(pl.App, s.Env).Set(float64(n))
	}
}

// behindCount is how many revisions the source stage has run since the one last promoted
// into s: 0 when s has what its source runs.
func (p *Promoter) behindCount(pl Pipeline, s Stage) (int, error) {
	from := pl.App + "@" + s.From
	src, err := p.opts.Stages.Stage(from)
	if err != nil {
		return 0, err
	}
	last, _, err := p.opts.Records.Promoted(s.Name)
	if err != nil || src.Applied == "" || src.Applied == last.SourceRevision {
		return 0, err
	}
	entries, err := p.opts.Records.History(from, 0)
	if err != nil {
		return 0, err
	}
	return countBehind(entries, last.SourceRevision), nil
}

// countBehind counts the revisions the source stage deployed after promoted (history is
// newest first). Only deploys that changed something count: stages share a branch, so a
// commit touching only another stage (the promotion into the next one, among them) is a new
// revision of the source too, one the target is not behind by; counting it showed every
// target a revision behind right after its own promotion. Heals of drift change nothing
// in Git and do not count either.
func countBehind(entries []state.Entry, promoted string) int {
	n, seen := 0, map[string]bool{}
	for _, e := range entries {
		if e.Revision == promoted {
			break
		}
		if e.Result == state.ResultSucceeded && e.Promotion == nil && e.Trigger != state.TriggerDrift &&
			len(e.Changes) > 0 && !seen[e.Revision] {
			seen[e.Revision] = true
			n++
		}
	}
	return n
}

// Report is a stage's place in its app's promotion order, for status.
type Report struct {
	From   string `json:"from,omitempty"`
	Behind int    `json:"behind"`
	// Promoted is the last promotion into the stage.
	Promoted *state.Promotion `json:"promoted,omitempty"`
	// Gate is the gate's answer now.
	Gate string `json:"gate,omitempty"`
}

// Report returns app@env's promotion report; ok is false for a stage nothing is promoted
// into.
func (p *Promoter) Report(app, env string) (Report, bool) {
	pl, from, to, err := p.lookup(app, env)
	if err != nil {
		return Report{}, false
	}
	r := Report{From: from.Name}
	r.Behind, _ = p.behindCount(pl, to)
	if last, ok, err := p.opts.Records.Promoted(to.Name); err == nil && ok {
		r.Promoted = &last
	}
	if src, err := p.opts.Stages.Stage(from.Name); err == nil {
		if v, err := p.gate(to, src); err == nil {
			r.Gate = map[bool]string{true: "open: ", false: "closed: "}[v.Open] + v.Reason
		}
	}
	return r, true
}
