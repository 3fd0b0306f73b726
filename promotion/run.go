package promotion

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/shipwatch/shipwatch/internal/notify"
	"github.com/shipwatch/shipwatch/internal/state"
	"github.com/shipwatch/shipwatch/reconciler"
	"github.com/shipwatch/shipwatch/source"
)

// ErrNotApprovable is returned by Approve for a stage whose gate asks for no approval.
var ErrNotApprovable = errors.New("the stage's gate asks for no approval")

// Promote promotes the revision app's source stage runs into env: after the gate (unless
// forced), it commits the promotion files as the source stage has them into env's path, on
// env's branch (mode push; the target then deploys it) or on a review branch (mode branch;
// nothing live changes). A promotion that changes nothing does nothing. A closed gate is an
// error wrapping ErrGateClosed that says which condition is missing.
func (p *Promoter) Promote(ctx context.Context, app, env string, opts PromoteOptions) (Outcome, error) {
	pl, from, to, err := p.lookup(app, env)
	if err != nil {
		return Outcome{}, err
	}
	src, err := p.opts.Stages.Stage(from.Name)
	if err != nil {
		return Outcome{}, err
	}
	out := Outcome{From: from.Name, To: to.Name, SourceRevision: src.Applied}
	if src.Applied == "" {
		return out, fmt.Errorf("promote %s: %s runs no revision yet", to.Name, from.Name)
	}
	verdict, err := p.gate(to, src)
	if err != nil {
		return out, err
	}
	out.Gate = verdict.Reason
	// A dry run goes past a closed gate, writing nothing as always: what a person reviews
	// before approving is exactly the diff and plan of a promotion the gate still holds. It
	// still ends in the closed gate's error (exit 1), after the preview.
	closed := !verdict.Open && !opts.Force
	switch {
	case closed && !opts.DryRun:
		out.Result = ResultGateClosed
		p.count(app, env, out.Result)
		return out, fmt.Errorf("promote %s: %w: %s", to.Name, ErrGateClosed, verdict.Reason)
	case !verdict.Open && opts.Force:
		out.Gate = "forced past a closed gate: " + verdict.Reason
	}
	if out.Images, err = p.opts.Stages.Images(ctx, from.Name); err != nil {
		return out, err
	}
	files, err := p.files(ctx, pl, from, to, src.Applied, out.Images)
	if err != nil {
		return p.failed(out, app, env, err)
	}
	if opts.DryRun {
		out, err := p.dryRun(ctx, pl, to, files, out)
		if err == nil && closed {
			err = fmt.Errorf("promote %s: %w: %s", to.Name, ErrGateClosed, verdict.Reason)
		}
		return out, err
	}
	return p.write(ctx, pl, to, files, out, opts.Actor)
}

// write commits and pushes the promotion and records it.
func (p *Promoter) write(ctx context.Context, pl Pipeline, to Stage, files map[string][]byte, out Outcome, actor state.Actor) (Outcome, error) {
	fromEnv := strings.TrimPrefix(out.From, pl.App+"@")
	note := commitNote{App: pl.App, From: fromEnv, To: to.Env, SourceRevision: out.SourceRevision,
		Files: pl.Files, Images: out.Images, Gate: out.Gate}
	edit := source.Edit{Branch: to.Branch, Files: files, Message: note.message(), Author: p.opts.Author}
	out.Branch = to.Branch
	if pl.Mode == "branch" {
		edit.PushTo = fmt.Sprintf("shipwatch/promote-%s-%s-%s", pl.App, to.Env, short(out.SourceRevision)[:8])
		out.Branch = edit.PushTo
	}
	commit, err := p.opts.Git.Write(ctx, pl.Repo, edit)
	switch {
	case errors.Is(err, source.ErrNothingToCommit):
		out.Result = ResultNothing
		p.count(pl.App, to.Env, out.Result)
		p.log.Info("nothing to promote: the target has the files already", "app", to.Name, "revision", short(out.SourceRevision))
		return out, p.remember(out, actor)
	case err != nil:
		return p.failed(out, pl.App, to.Env, err)
	}
	out.Commit, out.Result = commit, ResultPromoted
	p.count(pl.App, to.Env, out.Result)
	p.log.Info("promoted", "app", to.Name, "revision", short(out.SourceRevision), "resource", out.Branch+"@"+short(commit), "action", "promote")
	if err := p.remember(out, actor); err != nil {
		p.log.Error("promotion not recorded", "app", to.Name, "err", err)
	}
	if edit.PushTo == "" {
		// The target picks the commit up now rather than at its next poll.
		_ = p.opts.Stages.Trigger(to.Name, reconciler.Request{Trigger: state.TriggerPromotion, Actor: actor})
	}
	p.emit(notify.Promoted, to.Name, out.SourceRevision,
		fmt.Sprintf("%s at %s promoted to %s as %s on %s (%s)", out.From, short(out.SourceRevision), to.Name, short(commit), out.Branch, out.Gate))
	return out, nil
}

func (p *Promoter) failed(out Outcome, app, env string, err error) (Outcome, error) {
	out.Result = ResultFailed
	p.count(app, env, out.Result)
	p.emit(notify.PromotionFailed, out.To, out.SourceRevision, fmt.Sprintf("promotion of %s at %s failed: %v", out.From, short(out.SourceRevision), err))
	return out, fmt.Errorf("promote %s: %w", out.To, err)
}

// remember records the promotion on the target (never promoted twice) and in the history
// of both stages.
func (p *Promoter) remember(out Outcome, actor state.Actor) error {
	rec := state.Promotion{From: out.From, To: out.To, SourceRevision: out.SourceRevision, Commit: out.Commit,
		Branch: out.Branch, Images: imageTexts(out.Images), Gate: out.Gate}
	if err := p.opts.Records.SetPromoted(out.To, rec); err != nil {
		return err
	}
	if out.Result != ResultPromoted {
		return nil
	}
	now := p.opts.Now()
	for _, side := range []string{out.From, out.To} {
		e := state.Entry{Trigger: state.TriggerPromotion, Actor: actor, Started: now, Finished: now,
			Revision: out.SourceRevision, Result: state.ResultSucceeded, Promotion: &rec}
		if _, err := p.opts.Records.Record(side, e); err != nil {
			return err
		}
	}
	return nil
}

// Approve lets the source stage's revision into env, whose gate asks for an approval.
// revision is a full SHA or a prefix of one in the source stage's branch.
func (p *Promoter) Approve(ctx context.Context, app, env, revision string, actor state.Actor) (state.Approval, error) {
	pl, from, to, err := p.lookup(app, env)
	if err != nil {
		return state.Approval{}, err
	}
	if !to.Gate.Approval {
		return state.Approval{}, fmt.Errorf("%s: %w", to.Name, ErrNotApprovable)
	}
	full, err := p.opts.Git.Commit(ctx, pl.Repo, from.Branch, revision)
	if err != nil {
		return state.Approval{}, fmt.Errorf("approve %s for %s: %w", revision, to.Name, err)
	}
	a := state.Approval{Revision: full, Actor: actor, At: p.opts.Now()}
	if err := p.opts.Records.Approve(to.Name, a); err != nil {
		return state.Approval{}, err
	}
	p.log.Info("approved", "app", to.Name, "revision", short(full), "action", "approve")
	return a, nil
}
