// Command shipwatch is a declarative GitOps deploy daemon for Docker Compose and Kubernetes: it watches Git
// repositories of compose files and makes the local Docker Engine match them.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/shipwatch/shipwatch/source"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries a process exit code through cobra without printing a message.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func main() {
	source.ServeFileInProcess()
	// controller-runtime complains on stderr, with a stack trace, until it has a logger; the
	// Kubernetes driver returns its errors, so its own log is not needed. Process-wide, so here.
	ctrllog.SetLogger(logr.Discard())
	ctx, stop := interruptible()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// interruptible returns a context that SIGINT or SIGTERM cancels. The first signal lets the
// apply in flight finish (it is never cut halfway); the default handling is back for a
// second one, which ends the process at once.
func interruptible() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-sigs:
			signal.Stop(sigs)
			fmt.Fprintln(os.Stderr, "shipwatch: stopping after the apply in flight, if any (signal again to stop at once)")
			cancel()
		case <-ctx.Done():
			signal.Stop(sigs)
		}
	}()
	return ctx, cancel
}

// run executes the CLI and returns the process exit code: 0 success, 1 a diff was found
// (diff only), 2 any error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintln(stderr, "error:", err)
		return 2
	}
}

// globals are the flags every verb takes.
type globals struct {
	configFile string
	logFormat  string
	logLevel   string
	stdout     io.Writer
	stderr     io.Writer
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "shipwatch",
		Short:         "GitOps deploy daemon for Docker Compose and Kubernetes",
		Long:          "shipwatch watches Git repositories of compose files and Kubernetes manifests and makes the Docker Engine or the cluster match them.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	defaultConfig := os.Getenv("SHIPWATCH_CONFIG")
	if defaultConfig == "" {
		defaultConfig = "shipwatch.yaml"
	}
	pf := root.PersistentFlags()
	pf.StringVarP(&g.configFile, "config", "c", defaultConfig, "config file (env SHIPWATCH_CONFIG)")
	pf.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(
		newValidateCmd(g), newDiffCmd(g), newSyncCmd(g), newServeCmd(g),
		newStatusCmd(g), newRefreshCmd(g), newHistoryCmd(g), newRollbackCmd(g), newUnpinCmd(g),
		newPromoteCmd(g), newApproveCmd(g),
		newVersionCmd(g),
	)
	return root
}

func (g *globals) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	var log *slog.Logger
	switch g.logFormat {
	case "text":
		log = slog.New(slog.NewTextHandler(g.stderr, opts))
	case "json":
		log = slog.New(slog.NewJSONHandler(g.stderr, opts))
	default:
		return nil, fmt.Errorf("--log-format must be text or json, not %q", g.logFormat)
	}
	// client-go's reflectors report through klog (e.g. a watch on a CRD kind that is not
	// served yet), which otherwise writes its own line format to stderr and breaks
	// --log-format json. klog is process-wide, so it is routed here, at the one place the
	// process's logger is made.
	klog.SetSlogLogger(log.With("driver", "kubernetes"))
	routeLibraryLogs(log)
	return log, nil
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintln(g.stdout, "shipwatch", version)
			return err
		},
	}
}
