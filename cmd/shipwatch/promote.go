package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/shipwatch/shipwatch/internal/config"
	"github.com/shipwatch/shipwatch/internal/server"
	"github.com/shipwatch/shipwatch/internal/state"
	"github.com/shipwatch/shipwatch/promotion"
	"github.com/shipwatch/shipwatch/reconciler"
)

// pipelines turns the apps with environments into promotion pipelines.
func (e *env) pipelines() []promotion.Pipeline {
	var out []promotion.Pipeline
	for _, a := range e.cfg.Apps {
		if len(a.Environments) == 0 {
			continue
		}
		r, _ := e.cfg.Repo(a.Repo)
		pl := promotion.Pipeline{App: a.Name, Repo: sourceRepo(r), Files: a.Promotion.Files,
			Mode: a.Promotion.Mode, PinDigests: a.Promotion.PinDigests}
		for _, s := range a.Stages() {
			in, _ := e.cfg.Instance(a.Name + config.EnvSeparator + s.Name)
			pl.Stages = append(pl.Stages, promotion.Stage{
				Env: s.Name, Name: in.Name, Path: in.Path, Branch: string(in.Ref), From: s.PromoteFrom,
				Gate: promotion.Gate{HealthyFor: s.Gate.HealthyFor.Duration, Approval: s.Gate.Approval},
				Auto: s.AutoPromote,
			})
		}
		out = append(out, pl)
	}
	return out
}

// promoter builds the promoter over rec, the state store and the Git cache.
func (e *env) promoter(rec *reconciler.Reconciler) (*promotion.Promoter, error) {
	if e.store == nil {
		return nil, reconciler.ErrNoStore
	}
	cache, err := e.gitCache()
	if err != nil {
		return nil, err
	}
	return promotion.New(promotion.Options{
		Pipelines: e.pipelines(), Stages: rec, Git: cache, Records: e.store,
		Metrics: e.metrics, Notifier: e.notifier, Logger: e.log,
	})
}

// splitStage splits APP@ENV.
func splitStage(s string) (string, string, error) {
	app, env, ok := strings.Cut(s, config.EnvSeparator)
	if !ok || app == "" || env == "" {
		return "", "", fmt.Errorf("%q: name a stage as APP@ENV", s)
	}
	return app, env, nil
}

func newPromoteCmd(g *globals) *cobra.Command {
	rm := &remote{}
	var to string
	var opts promotion.PromoteOptions
	cmd := &cobra.Command{
		Use:   "promote APP --to ENV",
		Short: "Promote what APP's source stage runs into ENV: exit 0 promoted or nothing to do, 1 gate closed, 2 error",
		Long: "promote copies the promotion files as the source stage (ENV's promoteFrom) runs them into\n" +
			"ENV's path and commits them to ENV's branch (promotion.mode: push) or to a review branch\n" +
			"(mode: branch), once ENV's gate is open. --dry-run prints the files' diff and the plan ENV\n" +
			"would get, and writes nothing. --force skips the gate, and the commit says so.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return errors.New("--to ENV is required")
			}
			opts.Actor = state.ActorCLI
			out, err := g.promote(cmd.Context(), rm, args[0], to, opts)
			printOutcome(g, out)
			if errors.Is(err, promotion.ErrGateClosed) {
				fmt.Fprintln(g.stderr, "gate closed:", out.Gate)
				return exitError{code: 1}
			}
			return err
		},
	}
	rm.flags(cmd)
	cmd.Flags().StringVar(&to, "to", "", "the environment to promote into")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "print the files' diff and the target's plan; write nothing")
	cmd.Flags().BoolVar(&opts.Force, "force", false, "promote although the gate is closed (the commit says so)")
	return cmd
}

// promote runs a promotion here, on the state dir, or through the daemon holding it.
func (g *globals) promote(ctx context.Context, rm *remote, app, env string, opts promotion.PromoteOptions) (promotion.Outcome, error) {
	e, err := g.setup()
	if err != nil {
		return promotion.Outcome{}, err
	}
	defer e.close()
	if err := e.openState(state.Exclusive, "promote"); err != nil {
		holder, ok := daemonHolds(err)
		if !ok {
			return promotion.Outcome{}, err
		}
		g.viaDaemon(holder, rm)
		body, _ := json.Marshal(server.PromoteRequest{DryRun: opts.DryRun, Force: opts.Force})
		var resp server.PromoteResponse
		path := fmt.Sprintf("/api/v1/apps/%s/environments/%s/promote", url.PathEscape(app), url.PathEscape(env))
		ans, err := rm.do(ctx, g, http.MethodPost, path, body)
		if err != nil {
			return promotion.Outcome{}, err
		}
		_ = json.Unmarshal(ans.body, &resp)
		switch {
		case ans.code == http.StatusConflict:
			return resp.Outcome, fmt.Errorf("%w: %s", promotion.ErrGateClosed, resp.Error)
		case ans.code/100 != 2:
			return resp.Outcome, fmt.Errorf("POST %s: %s: %s", path, ans.status, cmp.Or(resp.Error, string(ans.body)))
		}
		return resp.Outcome, nil
	}
	rec, err := e.reconciler(ctx)
	if err != nil {
		return promotion.Outcome{}, err
	}
	p, err := e.promoter(rec)
	if err != nil {
		return promotion.Outcome{}, err
	}
	return p.Promote(ctx, app, env, opts)
}

// printOutcome prints what a promotion did.
func printOutcome(g *globals, out promotion.Outcome) {
	if out.To == "" {
		return
	}
	fmt.Fprintf(g.stdout, "%s -> %s: %s\n", out.From, out.To, out.Result)
	fmt.Fprintf(g.stdout, "  source revision  %s\n  gate             %s\n", orDash(out.SourceRevision), orDash(out.Gate))
	for _, img := range out.Images {
		fmt.Fprintf(g.stdout, "  image            %s %s\n", img.Resource, cmp.Or(img.Digest, img.Ref))
	}
	if out.Commit != "" {
		fmt.Fprintf(g.stdout, "  commit           %s on %s\n", out.Commit, out.Branch)
	}
	if out.Diff != "" {
		fmt.Fprintf(g.stdout, "\nfiles:\n%s", out.Diff)
	}
	if out.PlanText != "" {
		fmt.Fprintf(g.stdout, "\nplan of %s:\n%s", out.To, out.PlanText)
	}
}

func newApproveCmd(g *globals) *cobra.Command {
	rm := &remote{}
	cmd := &cobra.Command{
		Use:   "approve APP@ENV REVISION",
		Short: "Let REVISION of ENV's source stage into ENV, whose gate asks for an approval",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			app, env, err := splitStage(args[0])
			if err != nil {
				return err
			}
			return g.approve(cmd.Context(), rm, app, env, args[1])
		},
	}
	rm.flags(cmd)
	return cmd
}

func (g *globals) approve(ctx context.Context, rm *remote, app, env, revision string) error {
	e, err := g.setup()
	if err != nil {
		return err
	}
	defer e.close()
	var a state.Approval
	if err := e.openState(state.Exclusive, "approve"); err != nil {
		holder, ok := daemonHolds(err)
		if !ok {
			return err
		}
		g.viaDaemon(holder, rm)
		body, _ := json.Marshal(server.ApproveRequest{Revision: revision})
		path := fmt.Sprintf("/api/v1/apps/%s/environments/%s/approve", url.PathEscape(app), url.PathEscape(env))
		if err := rm.call(ctx, g, http.MethodPost, path, body, &a); err != nil {
			return err
		}
	} else {
		rec, err := e.reconciler(ctx)
		if err != nil {
			return err
		}
		p, err := e.promoter(rec)
		if err != nil {
			return err
		}
		if a, err = p.Approve(ctx, app, env, revision, state.ActorCLI); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintf(g.stdout, "approved %s for %s@%s\n", a.Revision, app, env)
	return err
}
