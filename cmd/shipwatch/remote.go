package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/shipwatch/shipwatch/internal/config"
	"github.com/shipwatch/shipwatch/internal/server"
	"github.com/shipwatch/shipwatch/reconciler"
)

// remote is how the CLI reaches a running daemon's API.
type remote struct {
	server    string
	tokenFile string
}

func (rm *remote) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&rm.server, "server", "", "daemon address (default: http:// + listen from the config, else http://127.0.0.1:9420)")
	cmd.Flags().StringVar(&rm.tokenFile, "token-file", "", "file holding the API token (default: env SHIPWATCH_TOKEN)")
}

// base is the daemon URL: the flag, else the config's listen address, else the default.
func (rm *remote) base(g *globals) string {
	if rm.server != "" {
		return strings.TrimRight(rm.server, "/")
	}
	addr := config.DefaultListen
	if cfg, err := config.Load(g.configFile); err == nil && cfg.Listen != "" {
		addr = cfg.Listen
	}
	if host, port, err := net.SplitHostPort(addr); err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	return "http://" + addr
}

func (rm *remote) token() (string, error) {
	if rm.tokenFile == "" {
		return os.Getenv("SHIPWATCH_TOKEN"), nil
	}
	b, err := os.ReadFile(rm.tokenFile)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// call sends one request and decodes a JSON answer into out; a non-2xx answer is an error
// carrying the daemon's message.
func (rm *remote) call(ctx context.Context, g *globals, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, rm.base(g)+path, nil)
	if err != nil {
		return err
	}
	if method != http.MethodGet {
		tok, err := rm.token()
		if err != nil {
			return err
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("reach the daemon: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Error)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(bytes.NewReader(body)).Decode(out)
}

func newStatusCmd(g *globals) *cobra.Command {
	rm := &remote{}
	var output string
	cmd := &cobra.Command{
		Use:   "status [APP]",
		Short: "Show apps' revision, sync, health, drift and last error from a running daemon",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var list []reconciler.Status
			if len(args) == 1 {
				var st reconciler.Status
				if err := rm.call(cmd.Context(), g, http.MethodGet, "/api/v1/apps/"+args[0], &st); err != nil {
					return err
				}
				list = []reconciler.Status{st}
			} else {
				var all struct {
					Apps []reconciler.Status `json:"apps"`
				}
				if err := rm.call(cmd.Context(), g, http.MethodGet, "/api/v1/apps", &all); err != nil {
					return err
				}
				list = all.Apps
			}
			switch output {
			case "json":
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				if len(args) == 1 {
					return enc.Encode(list[0])
				}
				return enc.Encode(list)
			case "table", "":
				return printStatusTable(g.stdout, list)
			default:
				return fmt.Errorf("-o must be table or json, not %q", output)
			}
		},
	}
	rm.flags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func printStatusTable(w io.Writer, list []reconciler.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tSYNC\tHEALTH\tDESIRED\tAPPLIED\tDRIFT\tLAST RECONCILE\tERROR")
	for _, s := range list {
		errText := "-"
		if s.LastError != nil {
			errText = string(s.LastError.Stage) + ": " + firstLine(s.LastError.Message)
		}
		last := "-"
		if !s.LastReconcile.IsZero() {
			last = time.Since(s.LastReconcile).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", s.App, s.Sync, s.Health,
			orDash(shortRev(s.DesiredRevision)), orDash(shortRev(s.AppliedRevision)), len(s.Drift), last, errText)
	}
	return tw.Flush()
}

func newRefreshCmd(g *globals) *cobra.Command {
	rm := &remote{}
	cmd := &cobra.Command{
		Use:   "refresh APP",
		Short: "Ask a running daemon to check APP's repo and live state now",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := rm.call(cmd.Context(), g, http.MethodPost, "/api/v1/apps/"+args[0]+"/refresh", nil); err != nil {
				return err
			}
			_, err := fmt.Fprintf(g.stdout, "refresh of %s queued\n", args[0])
			return err
		},
	}
	rm.flags(cmd)
	return cmd
}

// syncRemote asks a running daemon to sync app and prints the resulting status.
func (g *globals) syncRemote(ctx context.Context, rm *remote, app string) error {
	var resp server.SyncResponse
	err := rm.call(ctx, g, http.MethodPost, "/api/v1/apps/"+app+"/sync", &resp)
	if err != nil {
		return err
	}
	if err := printStatusTable(g.stdout, []reconciler.Status{resp.Status}); err != nil {
		return err
	}
	if resp.Error != "" {
		return fmt.Errorf("app %s: %s", app, resp.Error)
	}
	return nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
