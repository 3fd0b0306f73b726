package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/shipwatch/shipwatch/internal/server"
	"github.com/shipwatch/shipwatch/internal/state"
	"github.com/shipwatch/shipwatch/reconciler"
)

func newHistoryCmd(g *globals) *cobra.Command {
	rm := &remote{}
	var (
		output string
		show   uint64
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "history APP",
		Short: "List an app's sync attempts (or show one with --show ID), from the state dir or the daemon holding it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o must be table or json, not %q", output)
			}
			if cmd.Flags().Changed("show") {
				e, err := g.readEntry(cmd.Context(), rm, args[0], show)
				if err != nil {
					return err
				}
				if output == "json" {
					return printJSON(g.stdout, e)
				}
				return printEntry(g.stdout, e)
			}
			entries, err := g.readHistory(cmd.Context(), rm, args[0], limit)
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(g.stdout, entries)
			}
			return printHistory(g.stdout, entries)
		},
	}
	rm.flags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().Uint64Var(&show, "show", 0, "show the entry with this ID: its changes and their (masked) diffs")
	cmd.Flags().IntVar(&limit, "limit", 0, "show at most this many entries, newest first (0: all kept)")
	return cmd
}

// readHistory reads the store when no daemon holds it, else asks the daemon.
func (g *globals) readHistory(ctx context.Context, rm *remote, app string, limit int) ([]state.Entry, error) {
	e, err := g.setup()
	if err != nil {
		return nil, err
	}
	defer e.close()
	if _, ok := e.cfg.Instance(app); !ok {
		return nil, fmt.Errorf("%w %q (configured in %s)", reconciler.ErrUnknownApp, app, e.cfg.File)
	}
	if err := e.openState(state.Shared, "history"); err != nil {
		if _, ok := daemonHolds(err); !ok {
			return nil, err
		}
		var resp server.HistoryResponse
		path := "/api/v1/apps/" + url.PathEscape(app) + "/history?limit=" + strconv.Itoa(limit)
		if err := rm.call(ctx, g, http.MethodGet, path, nil, &resp); err != nil {
			return nil, err
		}
		return resp.Entries, nil
	}
	if e.store == nil {
		return nil, nil
	}
	return e.store.History(app, limit)
}

func (g *globals) readEntry(ctx context.Context, rm *remote, app string, id uint64) (state.Entry, error) {
	e, err := g.setup()
	if err != nil {
		return state.Entry{}, err
	}
	defer e.close()
	if _, ok := e.cfg.Instance(app); !ok {
		return state.Entry{}, fmt.Errorf("%w %q (configured in %s)", reconciler.ErrUnknownApp, app, e.cfg.File)
	}
	if err := e.openState(state.Shared, "history"); err != nil {
		if _, ok := daemonHolds(err); !ok {
			return state.Entry{}, err
		}
		var entry state.Entry
		path := fmt.Sprintf("/api/v1/apps/%s/history/%d", url.PathEscape(app), id)
		return entry, rm.call(ctx, g, http.MethodGet, path, nil, &entry)
	}
	if e.store == nil {
		return state.Entry{}, fmt.Errorf("history entry %d of app %s: %w", id, app, state.ErrNotFound)
	}
	return e.store.Entry(app, id)
}

func printHistory(w io.Writer, entries []state.Entry) error {
	if len(entries) == 0 {
		_, err := fmt.Fprintln(w, "no sync recorded yet")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tTRIGGER\tBY\tREVISION\tRESULT\tHEALTH\tCHANGES")
	for _, e := range entries {
		rev := shortRev(e.Revision)
		if e.RevisionBefore != "" && e.RevisionBefore != e.Revision {
			rev = shortRev(e.RevisionBefore) + " -> " + rev
		}
		result := string(e.Result)
		if e.Stage != "" {
			result += " (" + e.Stage + ")"
		}
		if e.Attempts > 1 {
			result += fmt.Sprintf(" x%d", e.Attempts)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Started.Local().Format(time.DateTime),
			e.Trigger, e.Actor, rev, result, orDash(e.Health), changeCounts(e))
	}
	return tw.Flush()
}

// changeCounts renders an entry's changes as "1 create, 2 recreate", sorted by action.
func changeCounts(e state.Entry) string {
	counts := map[string]int{}
	for _, c := range e.Changes {
		counts[string(c.Action)]++
	}
	if len(counts) == 0 {
		return "-"
	}
	var parts []string
	for _, a := range slices.Sorted(maps.Keys(counts)) {
		parts = append(parts, fmt.Sprintf("%d %s", counts[a], a))
	}
	return strings.Join(parts, ", ")
}

func printEntry(w io.Writer, e state.Entry) error {
	fmt.Fprintf(w, "entry %d: %s by %s, %s\n", e.ID, e.Trigger, e.Actor, e.Result)
	fmt.Fprintf(w, "  started   %s\n  finished  %s (%s)\n", e.Started.Local().Format(time.RFC3339),
		e.Finished.Local().Format(time.RFC3339), e.Finished.Sub(e.Started).Round(time.Millisecond))
	fmt.Fprintf(w, "  revision  %s (before %s, after %s)\n", e.Revision, orDash(e.RevisionBefore), orDash(e.RevisionAfter))
	fmt.Fprintf(w, "  health    %s\n", orDash(e.Health))
	if e.Stage != "" {
		fmt.Fprintf(w, "  error     %s: %s\n", e.Stage, e.Error)
	}
	if e.Attempts > 1 {
		fmt.Fprintf(w, "  attempts  %d (identical failures folded into this entry)\n", e.Attempts)
	}
	for _, c := range e.Changes {
		fmt.Fprintf(w, "\n%s %s", c.Action, c.Ref)
		if c.Reason != "" {
			fmt.Fprintf(w, ": %s", c.Reason)
		}
		fmt.Fprintln(w)
		if c.Diff != "" {
			fmt.Fprint(w, indent(c.Diff))
		}
	}
	return nil
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		if line != "" {
			b.WriteString("    " + line)
		}
	}
	if !strings.HasSuffix(b.String(), "\n") {
		b.WriteString("\n")
	}
	return b.String()
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newRollbackCmd(g *globals) *cobra.Command {
	rm := &remote{}
	var to string
	cmd := &cobra.Command{
		Use:   "rollback APP",
		Short: "Deploy the last revision that was synced and healthy (or --to REVISION) and pin the app there",
		Long: "rollback deploys the newest revision in the app's history, other than the running one, that\n" +
			"was synced and healthy, or the commit named with --to (it must be in the ref's history). The\n" +
			"app is then pinned: new commits are reported OutOfSync and nothing is applied until\n" +
			"`shipwatch unpin APP`. When a daemon holds the state dir it asks that daemon.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			app := args[0]
			return g.change(cmd.Context(), rm, change{verb: "rollback", app: app,
				here: func(_ *env, rec *reconciler.Reconciler) (reconciler.Status, error) {
					fmt.Fprintf(g.stdout, "rolling back app %s\n", app)
					return rec.Rollback(cmd.Context(), app, reconciler.RollbackOptions{To: to, Actor: state.ActorCLI, Progress: g.progress()})
				},
				there: func() (reconciler.Status, error) {
					body, _ := json.Marshal(server.RollbackRequest{Revision: to})
					return rm.outcome(cmd.Context(), g, "/api/v1/apps/"+url.PathEscape(app)+"/rollback", body)
				},
			})
		},
	}
	rm.flags(cmd)
	cmd.Flags().StringVar(&to, "to", "", "the revision to roll back to: a full commit SHA or a prefix of at least 7 hex digits")
	return cmd
}

func newUnpinCmd(g *globals) *cobra.Command {
	rm := &remote{}
	cmd := &cobra.Command{
		Use:   "unpin APP",
		Short: "Lift a rollback's pin: the app follows its ref again from its next pass",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			app := args[0]
			return g.change(cmd.Context(), rm, change{verb: "unpin", app: app,
				here: func(e *env, rec *reconciler.Reconciler) (reconciler.Status, error) {
					st, err := rec.Unpin(app, state.ActorCLI)
					if err == nil {
						fmt.Fprintf(g.stdout, "app %s unpinned; the next pass (a running daemon's, or `shipwatch sync %s`) deploys ref %s\n",
							app, app, appRef(e, app))
					}
					return st, err
				},
				there: func() (reconciler.Status, error) {
					st, err := rm.outcome(cmd.Context(), g, "/api/v1/apps/"+url.PathEscape(app)+"/unpin", nil)
					if err == nil {
						fmt.Fprintf(g.stdout, "app %s unpinned; the daemon is deploying its ref\n", app)
					}
					return st, err
				},
			})
		},
	}
	rm.flags(cmd)
	return cmd
}

func appRef(e *env, app string) string {
	a, _ := e.cfg.Instance(app)
	return string(a.Ref)
}

// change is a verb that changes one app: here does it in this process on the state dir,
// there through the API of a daemon that holds the state dir.
type change struct {
	verb, app string
	here      func(*env, *reconciler.Reconciler) (reconciler.Status, error)
	there     func() (reconciler.Status, error)
}

// change runs c here or there and prints the app's status after it.
func (g *globals) change(ctx context.Context, rm *remote, c change) error {
	e, err := g.setup()
	if err != nil {
		return err
	}
	defer e.close()
	app := c.app
	if _, ok := e.cfg.Instance(app); !ok {
		return fmt.Errorf("%w %q (configured in %s)", reconciler.ErrUnknownApp, app, e.cfg.File)
	}
	var st reconciler.Status
	if err := e.openState(state.Exclusive, c.verb); err != nil {
		holder, ok := daemonHolds(err)
		if !ok {
			return err
		}
		g.viaDaemon(holder, rm)
		st, err = c.there()
		if st.App == "" {
			return err
		}
		g.printSummary(app, st)
		return err
	}
	rec, err := e.reconciler(ctx)
	if err != nil {
		return err
	}
	st, err = c.here(e, rec)
	if !errors.Is(err, reconciler.ErrNotPinned) && !errors.Is(err, reconciler.ErrRollbackTarget) &&
		!errors.Is(err, reconciler.ErrNoRollbackTarget) {
		g.printSummary(app, st)
	}
	return err
}
