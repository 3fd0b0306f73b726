// Package server is shipwatch's HTTP surface: Prometheus metrics, liveness, readiness, the
// /api/v1 API and the webhook endpoints.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Options configures a Server.
type Options struct {
	// Addr is the listen address, e.g. 127.0.0.1:9420.
	Addr string
	// Metrics serves /metrics.
	Metrics http.Handler
	// Ready reports whether every app has been planned once; /readyz answers 503 until then.
	Ready func() bool
	// Apps serves /api/v1; nil leaves the API out.
	Apps Apps
	// History serves the history, rollback and unpin endpoints; nil leaves them out.
	History History
	// Token reads the API bearer token at each mutating call; nil disables mutating calls.
	Token func() (string, error)
	// Webhooks serves POST /hooks/{provider}; nil leaves the endpoints out.
	Webhooks http.Handler
	Logger   *slog.Logger
}

// Server serves the HTTP endpoints until its context ends.
type Server struct {
	opts Options
	srv  *http.Server
	ln   net.Listener
}

// New binds the listen address at once, so a port conflict fails start-up rather than later.
func New(ctx context.Context, opts Options) (*Server, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", opts.Addr, err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, ln: ln}
	s.srv = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	return s, nil
}

// Addr is the address actually bound (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.opts.Metrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if s.opts.Ready != nil && !s.opts.Ready() {
			http.Error(w, "not ready: some apps have not been planned yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "ok")
	})
	if s.opts.Apps != nil {
		s.apiRoutes(mux)
	}
	if s.opts.History != nil {
		s.historyRoutes(mux)
	}
	if s.opts.Webhooks != nil {
		mux.Handle("POST /hooks/{provider}", s.opts.Webhooks)
	}
	return mux
}

// Serve serves until ctx ends, then shuts down gracefully within 5 seconds.
func (s *Server) Serve(ctx context.Context) error {
	errCh := make(chan error, 1)
	go func() { errCh <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errCh:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}
