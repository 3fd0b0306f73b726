package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
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

// call sends one request with an optional JSON body and decodes a JSON answer into out; a
// non-2xx answer is an error carrying the daemon's message.
func (rm *remote) call(ctx context.Context, g *globals, method, path string, body []byte, out any) error {
	resp, err := rm.do(ctx, g, method, path, body)
	if err != nil {
		return err
	}
	if resp.code/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(resp.body, &e)
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.status, e.Error)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(bytes.NewReader(resp.body)).Decode(out)
}

// answer is a daemon's HTTP answer, read whole.
type answer struct {
	code   int
	status string
	body   []byte
}

func (rm *remote) do(ctx context.Context, g *globals, method, path string, body []byte) (answer, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, rm.base(g)+path, rd)
	if err != nil {
		return answer{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if method != http.MethodGet {
		tok, err := rm.token()
		if err != nil {
			return answer{}, err
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("reach the daemon: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return answer{}, fmt.Errorf("read answer: %w", err)
	}
	return answer{code: resp.StatusCode, status: resp.Status, body: b}, nil
}

// outcome POSTs to an endpoint that answers a server.SyncResponse (sync, rollback, unpin)
// and returns its status and its error; the status is there also when the call failed.
func (rm *remote) outcome(ctx context.Context, g *globals, path string, body []byte) (reconciler.Status, error) {
	resp, err := rm.do(ctx, g, http.MethodPost, path, body)
	if err != nil {
		return reconciler.Status{}, err
	}
	var out server.SyncResponse
	_ = json.Unmarshal(resp.body, &out)
	switch {
	case resp.code/100 == 2:
		return out.Status, nil
	case out.Error != "" && out.Status.App != "":
		// A pass that ran or was refused: the answer carries the app's status and the
		// pass's own error. An error body without a status (401, 403, 404) is the API's
		// refusal of the request and keeps its HTTP status below, so a wrong token reads
		// "401 Unauthorized", not only the message.
		return out.Status, fmt.Errorf("%s", out.Error)
	default:
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(resp.body, &e)
		return out.Status, fmt.Errorf("POST %s: %s: %s", path, resp.status, e.Error)
	}
}

func newStatusCmd(g *globals) *cobra.Command {
	rm := &remote{}
	var output string
	cmd := &cobra.Command{
		Use:   "status [APP]",
		Short: "Show apps' revision, sync, health, drift and last error from a running daemon",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var list []server.AppStatus
			if len(args) == 1 {
				var st server.AppStatus
				if err := rm.call(cmd.Context(), g, http.MethodGet, "/api/v1/apps/"+url.PathEscape(args[0]), nil, &st); err != nil {
					return err
				}
				list = []server.AppStatus{st}
			} else {
				var all server.AppsResponse
				if err := rm.call(cmd.Context(), g, http.MethodGet, "/api/v1/apps", nil, &all); err != nil {
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

// inPromotionOrder sorts statuses by app, an app's stages in promotion order (each after
// the stage it is promoted from), so a pipeline reads top to bottom.
func inPromotionOrder(list []server.AppStatus) []server.AppStatus {
	from := map[string]string{}
	for _, s := range list {
		if s.Promotion != nil {
			from[s.App] = s.Promotion.From
		}
	}
	depth := func(name string) int {
		n := 0
		for cur := from[name]; cur != "" && n <= len(list); cur = from[cur] {
			n++
		}
		return n
	}
	out := slices.Clone(list)
	slices.SortStableFunc(out, func(a, b server.AppStatus) int {
		baseA, _, _ := strings.Cut(a.App, "@")
		baseB, _, _ := strings.Cut(b.App, "@")
		return cmp.Or(strings.Compare(baseA, baseB), cmp.Compare(depth(a.App), depth(b.App)), strings.Compare(a.App, b.App))
	})
	return out
}

// behindText says how far a stage is behind the stage it is promoted from.
func behindText(s server.AppStatus) string {
	switch {
	case s.Promotion == nil:
		return "-"
	case s.Promotion.Behind == 0:
		return "up to date with " + s.Promotion.From
	default:
		return fmt.Sprintf("%d behind %s", s.Promotion.Behind, s.Promotion.From)
	}
}

func printStatusTable(w io.Writer, list []server.AppStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tSYNC\tHEALTH\tDESIRED\tAPPLIED\tPINNED\tPROMOTION\tDRIFT\tOPERATION\tLAST RECONCILE\tERROR")
	var warnings, reasons []string
	for _, s := range inPromotionOrder(list) {
		errText := "-"
		if s.LastError != nil {
			errText = string(s.LastError.Stage) + ": " + firstLine(s.LastError.Message)
		}
		last := "-"
		if !s.LastReconcile.IsZero() {
			last = time.Since(s.LastReconcile).Round(time.Second).String() + " ago"
		}
		pinned := "-"
		if s.Pin != nil {
			pinned = shortRev(s.Pin.Revision) + " (" + string(s.Pin.Reason) + ")"
		}
		op := "-"
		if o := s.Operation; o != nil {
			op = fmt.Sprintf("%s %d/%d since %s", o.Phase, o.Done, o.Total, time.Since(o.Started).Round(time.Second))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.App, s.Sync, s.Health,
			orDash(shortRev(s.DesiredRevision)), orDash(shortRev(s.AppliedRevision)), pinned, behindText(s), len(s.Drift), op, last, errText)
		if s.Reason != "" {
			reasons = append(reasons, s.App+": "+s.Reason)
		}
		warnings = s.Warnings // daemon-wide: the same on every app
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range reasons {
		fmt.Fprintln(w, r)
	}
	for _, wn := range warnings {
		fmt.Fprintln(w, "warning:", wn)
	}
	return nil
}

func newRefreshCmd(g *globals) *cobra.Command {
	rm := &remote{}
	cmd := &cobra.Command{
		Use:   "refresh APP",
		Short: "Ask a running daemon to check APP's repo and live state now",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := rm.call(cmd.Context(), g, http.MethodPost, "/api/v1/apps/"+url.PathEscape(args[0])+"/refresh", nil, nil); err != nil {
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
	st, err := rm.outcome(ctx, g, "/api/v1/apps/"+url.PathEscape(app)+"/sync", nil)
	if st.App != "" {
		if perr := printStatusTable(g.stdout, []server.AppStatus{{Status: st}}); perr != nil {
			return perr
		}
	}
	if err != nil {
		return fmt.Errorf("app %s: %w", app, err)
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
