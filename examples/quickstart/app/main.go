// Command app is the quickstart's demo service: a page showing the MESSAGE environment
// variable and the container's hostname, plus a /healthz endpoint. It is built statically
// and shipped in a FROM scratch image, so it also carries its own health probe
// (-healthcheck): the image has no shell, curl or wget for a compose healthcheck to use.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// shutdownGrace stays well under compose's default 10 s stop_grace_period, so a stop never
// ends in SIGKILL.
const shutdownGrace = 5 * time.Second

func main() {
	listen := flag.String("listen", ":8080", "address to serve on")
	healthcheck := flag.Bool("healthcheck", false, "probe http://127.0.0.1:8080/healthz and exit 0 (healthy) or 1")
	flag.Parse()

	// As PID 1 in a container the process gets no default SIGTERM handling from the
	// kernel, so it must catch the signal itself to stop promptly.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	if *healthcheck {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := probe(ctx, "http://127.0.0.1:8080/healthz")
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "unhealthy:", err)
			os.Exit(1)
		}
		return
	}

	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	if err := serve(ctx, logger, *listen, newHandler(os.Getenv("MESSAGE"), host)); err != nil {
		logger.Error("serve failed", "err", err)
		os.Exit(1)
	}
}

// serve runs the HTTP server until ctx is done, then drains it.
func serve(ctx context.Context, logger *slog.Logger, addr string, h http.Handler) error {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	logger.Info("serving", "addr", addr)
	select {
	case err := <-errc:
		return fmt.Errorf("listen on %s: %w", addr, err)
	case <-ctx.Done():
	}
	logger.Info("stopping")
	// ctx is already cancelled; the drain needs a fresh, bounded deadline.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return nil
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>shipwatch quickstart</title></head>
<body>
<h1>{{.Message}}</h1>
<p>served by <code>{{.Hostname}}</code></p>
</body></html>
`))

// newHandler serves the page and /healthz. The message and hostname are fixed at start:
// a new MESSAGE means a new container, which is what the demo shows off.
func newHandler(message, hostname string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		// Render first so a template error is a clean 500, not half a page.
		var buf bytes.Buffer
		if err := page.Execute(&buf, struct{ Message, Hostname string }{message, hostname}); err != nil {
			http.Error(w, "render page", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		buf.WriteTo(w)
	})
	return mux
}

// probe GETs url and succeeds only on a 200 answer.
func probe(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: status %s", url, resp.Status)
	}
	return nil
}
