package promotion

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"time"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/internal/metrics"
	"github.com/shipwatch/shipwatch/internal/notify"
	"github.com/shipwatch/shipwatch/internal/state"
	"github.com/shipwatch/shipwatch/reconciler"
	"github.com/shipwatch/shipwatch/source"
)

// maxPromotedFileBytes bounds a promotion file read from Git.
const maxPromotedFileBytes = 1 << 20

// ErrUnknownStage is returned for an app or environment that is not a promotion target.
var ErrUnknownStage = errors.New("not a stage that is promoted into")

// Pipeline is one app's stages and how promotions between them are written.
type Pipeline struct {
	App        string
	Repo       source.Repo
	Files      []string
	Mode       string // push or branch
	PinDigests bool
	Stages     []Stage
}

// Stage is one environment of the app.
type Stage struct {
	Env string
	// Name is the stage as users address it ("web@staging").
	Name string
	Path string
	// Branch is what the stage follows, where promotions into it are committed.
	Branch string
	// From is the environment promoted into this one; "" for a first stage.
	From string
	Gate Gate
	Auto bool
}

// Stages is the reconciler, as promotion reads and drives it.
type Stages interface {
	Stage(name string) (reconciler.StageState, error)
	Images(ctx context.Context, name string) ([]drivers.Image, error)
	Trigger(name string, req reconciler.Request) error
	Plan(ctx context.Context, name string, opts reconciler.PlanOptions) (*drivers.Plan, error)
}

// Git is the repository, as promotion reads and writes it; *source.Cache implements it.
type Git interface {
	Hold(ctx context.Context, repo source.Repo, ref, revision string) (string, func(), error)
	ReadFile(repo source.Repo, revision, name string, limit int64) ([]byte, error)
	Write(ctx context.Context, repo source.Repo, edit source.Edit) (string, error)
	Resolve(ctx context.Context, repo source.Repo, ref string) (string, error)
	Commit(ctx context.Context, repo source.Repo, ref, spec string) (string, error)
}

// Records keeps approvals, promotions and history; *state.Store implements it.
type Records interface {
	Approvals(app string) ([]state.Approval, error)
	Approve(app string, a state.Approval) error
	Promoted(app string) (state.Promotion, bool, error)
	SetPromoted(app string, p state.Promotion) error
	Record(app string, e state.Entry) (state.Entry, error)
	History(app string, limit int) ([]state.Entry, error)
}

// Options configures a Promoter.
type Options struct {
	Pipelines []Pipeline
	Stages    Stages
	Git       Git
	Records   Records
	Metrics   *metrics.Metrics
	Notifier  reconciler.Notifier
	Logger    *slog.Logger
	// Author signs promotion commits; default shipwatch <shipwatch@localhost>.
	Author source.Signature
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Promoter promotes revisions between the stages of apps.
type Promoter struct {
	opts Options
	log  *slog.Logger
}

// New checks the options.
func New(opts Options) (*Promoter, error) {
	if opts.Stages == nil || opts.Git == nil || opts.Records == nil || opts.Metrics == nil {
		return nil, errors.New("promotion: stages, git, records and metrics are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Author.Name == "" {
		opts.Author = source.Signature{Name: "shipwatch", Email: "shipwatch@localhost"}
	}
	p := &Promoter{opts: opts, log: opts.Logger}
	for _, pl := range opts.Pipelines {
		for _, s := range pl.Stages {
			if s.From == "" {
				continue
			}
			for _, result := range Results() {
				opts.Metrics.PromotionsTotal.WithLabelValues(pl.App, s.Env, string(result))
			}
		}
	}
	return p, nil
}

// Result is how a promotion ended; it is the result label of shipwatch_promotions_total.
type Result string

// The results.
const (
	ResultPromoted   Result = "promoted"
	ResultNothing    Result = "nothing-to-do"
	ResultGateClosed Result = "gate-closed"
	ResultFailed     Result = "failed"
	ResultDryRun     Result = "dry-run"
)

// Results lists them, so every series exists from the start.
func Results() []Result {
	return []Result{ResultPromoted, ResultNothing, ResultGateClosed, ResultFailed, ResultDryRun}
}

// PromoteOptions tunes Promote.
type PromoteOptions struct {
	// DryRun computes the files and the target's plan and writes nothing.
	DryRun bool
	// Force skips the gate, and the commit says so.
	Force bool
	Actor state.Actor
}

// Outcome is what a promotion did or would do.
type Outcome struct {
	Result         Result          `json:"result"`
	From           string          `json:"from"`
	To             string          `json:"to"`
	SourceRevision string          `json:"sourceRevision,omitempty"`
	Commit         string          `json:"commit,omitempty"`
	Branch         string          `json:"branch,omitempty"`
	Gate           string          `json:"gate"`
	Images         []drivers.Image `json:"images,omitempty"`
	// Diff is the promotion files' change, unified (dry run).
	Diff string `json:"diff,omitempty"`
	// Plan is what the target stage would do with the promoted files (dry run).
	Plan *drivers.Plan `json:"-"`
	// PlanText is Plan as `shipwatch diff` prints it.
	PlanText string `json:"plan,omitempty"`
}

// lookup finds the pipeline and the target stage of app@env.
func (p *Promoter) lookup(app, env string) (Pipeline, Stage, Stage, error) {
	for _, pl := range p.opts.Pipelines {
		if pl.App != app {
			continue
		}
		i := slices.IndexFunc(pl.Stages, func(s Stage) bool { return s.Env == env })
		if i < 0 || pl.Stages[i].From == "" {
			break
		}
		to := pl.Stages[i]
		j := slices.IndexFunc(pl.Stages, func(s Stage) bool { return s.Env == to.From })
		return pl, pl.Stages[j], to, nil
	}
	return Pipeline{}, Stage{}, Stage{}, fmt.Errorf("%s@%s: %w", app, env, ErrUnknownStage)
}

// files reads the promotion files as the source stage runs them and returns them as they
// go into the target's path, pinned to digests when asked.
func (p *Promoter) files(ctx context.Context, pl Pipeline, from, to Stage, rev string, images []drivers.Image) (map[string][]byte, error) {
	// Checked out (held) so the revision is in the local store, also in a one-shot verb.
	_, release, err := p.opts.Git.Hold(ctx, pl.Repo, from.Branch, rev)
	if err != nil {
		return nil, err
	}
	defer release()
	out := map[string][]byte{}
	for _, f := range pl.Files {
		b, err := p.opts.Git.ReadFile(pl.Repo, rev, path.Join(from.Path, f), maxPromotedFileBytes)
		if err != nil {
			return nil, fmt.Errorf("promotion file %s of %s: %w", f, from.Name, err)
		}
		if pl.PinDigests {
			b = pinImages(b, images)
		}
		out[path.Join(to.Path, f)] = b
	}
	return out, nil
}

// gate evaluates the target's gate now.
func (p *Promoter) gate(to Stage, src reconciler.StageState) (Verdict, error) {
	approvals, err := p.opts.Records.Approvals(to.Name)
	if err != nil {
		return Verdict{}, err
	}
	target, err := p.opts.Stages.Stage(to.Name)
	if err != nil {
		return Verdict{}, err
	}
	return evaluate(gateInput{Gate: to.Gate, Source: src, Target: target, Approvals: approvals, Now: p.opts.Now()}), nil
}

func (p *Promoter) count(app, env string, r Result) {
	p.opts.Metrics.PromotionsTotal.WithLabelValues(app, env, string(r)).Inc()
}

func (p *Promoter) emit(typ notify.EventType, to, rev, msg string) {
	if p.opts.Notifier != nil {
		p.opts.Notifier.Notify(reconciler.Event{Type: typ, App: to, Revision: rev, Message: msg, Time: p.opts.Now()})
	}
}
