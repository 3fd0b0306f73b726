package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/drivers/docker"
	"github.com/shipwatch/shipwatch/internal/config"
	"github.com/shipwatch/shipwatch/internal/server"
	"github.com/shipwatch/shipwatch/internal/state"
	"github.com/shipwatch/shipwatch/promotion"
	"github.com/shipwatch/shipwatch/reconciler"
)

// selectApps returns the named apps (an app with environments stands for all its stages;
// APP@ENV for one), or all when none are named.
func selectApps(cfg *config.Config, names []string) ([]config.App, error) {
	if len(names) == 0 {
		return cfg.Instances(), nil
	}
	var out []config.App
	for _, n := range names {
		apps := cfg.Select(n)
		if len(apps) == 0 {
			return nil, fmt.Errorf("%w %q (configured in %s)", reconciler.ErrUnknownApp, n, cfg.File)
		}
		out = append(out, apps...)
	}
	return out, nil
}

func newValidateCmd(g *globals) *cobra.Command {
	var worktree string
	cmd := &cobra.Command{
		Use:   "validate [APP...]",
		Short: "Check the config and every app's manifests, without touching any Engine",
		Long: "validate decodes the config strictly, then fetches each app's ref (or reads --worktree)\n" +
			"and loads its compose files as a deploy would, reporting every problem with its file.",
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := g.setup()
			if err != nil {
				return err
			}
			apps, err := selectApps(e.cfg, args)
			if err != nil {
				return err
			}
			failed := 0
			for _, a := range apps {
				if msg, err := e.validateApp(cmd.Context(), a, worktree); err != nil {
					failed++
					fmt.Fprintf(g.stdout, "app %s: FAILED: %v\n", a.Name, err)
				} else {
					fmt.Fprintf(g.stdout, "app %s: ok (%s)\n", a.Name, msg)
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d apps failed validation", failed, len(apps))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&worktree, "worktree", "", "load apps from this local checkout instead of their configured ref")
	return cmd
}

// validateApp loads an app's manifests and derives its desired state, without an Engine.
func (e *env) validateApp(ctx context.Context, a config.App, worktree string) (string, error) {
	spec, err := e.appSpec(a)
	if err != nil {
		return "", err
	}
	rev, dir := "worktree", worktree
	if dir, err = absPath(dir); err != nil {
		return "", err
	}
	if dir == "" {
		if rev, err = spec.Source.Resolve(ctx, string(a.Ref)); err != nil {
			return "", err
		}
		var release func()
		if dir, release, err = spec.Source.Checkout(ctx, string(a.Ref), rev); err != nil {
			return "", err
		}
		defer release()
	}
	b, err := spec.Load(ctx, dir, rev)
	if err != nil {
		return "", err
	}
	if a.Driver == "kubernetes" {
		return fmt.Sprintf("revision %s, %d objects", shortRev(rev), len(b.Objects)), nil
	}
	d, err := docker.Desire(drivers.App{Name: a.Name, Project: a.Compose.Project, Revision: rev}, b.Compose,
		docker.DesireOptions{FilesDir: filepath.Join(e.cfg.StateDir, "files")})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("revision %s, %d services, %d networks, %d volumes",
		shortRev(rev), len(d.Services), len(d.Networks), len(d.Volumes)), nil
}

func newDiffCmd(g *globals) *cobra.Command {
	var worktree string
	cmd := &cobra.Command{
		Use:   "diff [APP...]",
		Short: "Show what a sync would change; exit 0 when live matches Git, 1 when it differs, 2 on error",
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := g.setup()
			if err != nil {
				return err
			}
			defer e.close()
			apps, err := selectApps(e.cfg, args)
			if err != nil {
				return err
			}
			// Pins decide what a sync would deploy. A daemon holding the state dir has its
			// own diff endpoint; without the store the ref's revision is planned, from a
			// private Git cache.
			if err := e.openState(state.Exclusive, "diff"); err != nil {
				e.log.Warn("state dir not taken: pins are not applied to this diff", "err", err)
			}
			rec, err := e.reconciler(cmd.Context())
			if err != nil {
				return err
			}
			if worktree, err = absPath(worktree); err != nil {
				return err
			}
			differs := false
			for _, a := range apps {
				plan, err := rec.Plan(cmd.Context(), a.Name, reconciler.PlanOptions{Worktree: worktree})
				if err != nil {
					return fmt.Errorf("app %s: %w", a.Name, err)
				}
				if !plan.InSync() {
					differs = true
				}
				fmt.Fprint(g.stdout, plan.String())
			}
			if differs {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&worktree, "worktree", "", "render apps from this local checkout (e.g. a pull request) instead of their configured ref")
	return cmd
}

func newSyncCmd(g *globals) *cobra.Command {
	rm := &remote{}
	var viaDaemon bool
	cmd := &cobra.Command{
		Use:   "sync [APP...]",
		Short: "Apply Git's state once and wait for health, showing progress per resource",
		Long: "sync applies each app's desired state now (also healing drift under drift: alert and\n" +
			"applying a new revision under sync: manual), then waits for health; a pinned app is synced\n" +
			"at its pin. It records into the state dir's history. When a daemon holds the state dir, or\n" +
			"with --remote, it asks that daemon to do it instead.",
		RunE: func(cmd *cobra.Command, args []string) error {
			if viaDaemon {
				if len(args) != 1 {
					return fmt.Errorf("sync --remote takes exactly one app")
				}
				return g.syncRemote(cmd.Context(), rm, args[0])
			}
			e, err := g.setup()
			if err != nil {
				return err
			}
			defer e.close()
			apps, err := selectApps(e.cfg, args)
			if err != nil {
				return err
			}
			if err := e.openState(state.Exclusive, "sync"); err != nil {
				holder, ok := daemonHolds(err)
				if !ok {
					return err
				}
				g.viaDaemon(holder, rm)
				var errs []error
				for _, a := range apps {
					errs = append(errs, g.syncRemote(cmd.Context(), rm, a.Name))
				}
				return errors.Join(errs...)
			}
			rec, err := e.reconciler(cmd.Context())
			if err != nil {
				return err
			}
			var errs []error
			for _, a := range apps {
				if err := g.syncApp(cmd.Context(), rec, a.Name); err != nil {
					errs = append(errs, fmt.Errorf("app %s: %w", a.Name, err))
				}
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVar(&viaDaemon, "remote", false, "ask the running daemon (see --server) to sync instead of syncing from this process")
	rm.flags(cmd)
	return cmd
}

func (g *globals) syncApp(ctx context.Context, rec *reconciler.Reconciler, name string) error {
	fmt.Fprintf(g.stdout, "syncing app %s\n", name)
	st, err := rec.Sync(ctx, name, reconciler.SyncOptions{Progress: g.progress(), Actor: state.ActorCLI})
	g.printSummary(name, st)
	return err
}

// progress prints each resource change of an apply as it starts and finishes.
func (g *globals) progress() func(drivers.Progress) {
	started := map[string]time.Time{}
	return func(p drivers.Progress) {
		ref := p.Change.Ref.String()
		switch {
		case !p.Done:
			started[ref] = time.Now()
			fmt.Fprintf(g.stdout, "  ... %-9s %s\n", p.Change.Action, ref)
		case p.Err != nil:
			fmt.Fprintf(g.stdout, "  FAIL %-9s %s: %v\n", p.Change.Action, ref, p.Err)
		case p.Change.Skipped:
			fmt.Fprintf(g.stdout, "  skip %-9s %s (%s)\n", p.Change.Action, ref, "prune disabled")
		default:
			fmt.Fprintf(g.stdout, "  ok   %-9s %s (%s)\n", p.Change.Action, ref, time.Since(started[ref]).Round(time.Millisecond))
		}
	}
}

// printSummary prints one line of what a sync or rollback left.
func (g *globals) printSummary(name string, st reconciler.Status) {
	counts := map[drivers.Action]int{}
	for _, c := range st.LastChanges {
		if !c.Skipped {
			counts[c.Action]++
		}
	}
	fmt.Fprintf(g.stdout, "app %s: revision %s, %s, health %s; %d created, %d recreated, %d updated, %d deleted\n",
		name, shortRev(st.AppliedRevision), st.Sync, st.Health,
		counts[drivers.ActionCreate], counts[drivers.ActionRecreate], counts[drivers.ActionUpdate], counts[drivers.ActionDelete])
	if st.Reason != "" {
		fmt.Fprintf(g.stdout, "app %s: %s\n", name, st.Reason)
	}
	for _, w := range st.Warnings {
		fmt.Fprintf(g.stdout, "warning: %s\n", w)
	}
}

// viaDaemon tells the user that a verb goes through the daemon holding the state dir, and
// at which address it is asked (--server or the config's listen, as rm.base says).
func (g *globals) viaDaemon(h state.Holder, rm *remote) {
	fmt.Fprintf(g.stderr, "shipwatch serve (pid %d) holds the state dir; asking it at %s\n", h.PID, rm.base(g))
}

func newServeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon: poll, deploy, heal drift, serve metrics and health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := g.setup()
			if err != nil {
				return err
			}
			defer e.close()
			if err := e.openState(state.Exclusive, "serve"); err != nil {
				return err
			}
			notifier, err := e.newNotifier()
			if err != nil {
				return err
			}
			if notifier != nil {
				e.notifier = notifyAdapter{n: notifier}
			}
			rec, err := e.reconciler(cmd.Context())
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			grp, ctx := errgroup.WithContext(ctx)
			if notifier != nil {
				grp.Go(func() error { return notifier.Run(ctx) })
			}
			var promoter *promotion.Promoter
			if len(e.pipelines()) > 0 {
				if promoter, err = e.promoter(rec); err != nil {
					return err
				}
				grp.Go(func() error { return promoter.Run(ctx) })
			}
			if e.cfg.Listen != "" {
				hooks, err := e.newWebhooks(rec)
				if err != nil {
					return err
				}
				opts := server.Options{
					Addr: e.cfg.Listen, Metrics: e.metrics.Handler(), Ready: rec.Ready, Logger: e.log,
					Apps: rec, History: rec, Token: secretFile(e.cfg.API.TokenFile),
					AllowedHosts: e.cfg.Server.AllowedHosts, MaxConns: e.cfg.Server.MaxConnections,
					MaxConnsPerAddr: e.cfg.Server.MaxConnectionsPerAddress,
				}
				if hooks != nil {
					opts.Webhooks = hooks
				}
				if promoter != nil {
					opts.Promotions = promoter
				}
				srv, err := server.New(ctx, opts)
				if err != nil {
					return err
				}
				e.log.Info("serving metrics and health", "addr", srv.Addr())
				grp.Go(func() error { return srv.Serve(ctx) })
			}
			e.log.Info("shipwatch started", "apps", len(e.cfg.Instances()), "version", version)
			grp.Go(func() error { return rec.Run(ctx) })
			err = grp.Wait()
			if errors.Is(err, context.Canceled) {
				e.log.Info("shipwatch stopped")
				return nil
			}
			return err
		},
	}
}

// absPath makes a --worktree argument absolute; empty stays empty.
func absPath(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("--worktree %s: %w", p, err)
	}
	return abs, nil
}

func shortRev(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}
