// Package server is shipwatch's HTTP surface: Prometheus metrics, liveness, readiness, the
// /api/v1 API and the webhook endpoints.
package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// Defaults for the zero values of Options' limits.
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 30 * time.Second
	DefaultMaxConns          = 256
	DefaultMaxConnsPerAddr   = 32
	// maxHeaderBytes bounds a request's header block (net/http's default is 1 MiB).
	maxHeaderBytes = 32 << 10
	// maxAPIBody bounds the body of every request but the webhooks', which have their own
	// limit: the API's largest body is a rollback's revision.
	maxAPIBody = 64 << 10
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
	// Promotions serves the promote and approve endpoints and the promotion reports in
	// status; nil leaves them out.
	Promotions Promotions
	// Token reads the API bearer token at each mutating call; nil disables mutating calls.
	Token func() (string, error)
	// Webhooks serves POST /hooks/{provider}; nil leaves the endpoints out.
	Webhooks http.Handler
	Logger   *slog.Logger

	// AllowedHosts are the Host names answered besides IP addresses and localhost; "*"
	// answers any. Other requests get 421 (DNS rebinding).
	AllowedHosts []string
	// MaxConns and MaxConnsPerAddr cap the connections held at once, in all and per
	// client address (DefaultMaxConns, DefaultMaxConnsPerAddr).
	MaxConns, MaxConnsPerAddr int
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout are the http.Server's
	// (Default...). Sync and rollback lift the read and write deadlines once authorized:
	// they wait for health, for as long as the caller waits.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
}

// Server serves the HTTP endpoints until its context ends.
type Server struct {
	opts  Options
	srv   *http.Server
	ln    *limitListener
	hosts *hostPolicy
}

// New binds the listen address at once, so a port conflict fails start-up rather than later.
func New(ctx context.Context, opts Options) (*Server, error) {
	if opts.MaxConns < 0 || opts.MaxConnsPerAddr < 0 || opts.ReadHeaderTimeout < 0 || opts.ReadTimeout < 0 ||
		opts.WriteTimeout < 0 || opts.IdleTimeout < 0 {
		return nil, errors.New("server options: negative limit")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", opts.Addr, err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	maxConns := cmp.Or(opts.MaxConns, DefaultMaxConns)
	perAddr := min(cmp.Or(opts.MaxConnsPerAddr, DefaultMaxConnsPerAddr), maxConns)
	s := &Server{opts: opts, hosts: newHostPolicy(opts.AllowedHosts),
		ln: newLimitListener(ln, maxConns, perAddr, opts.Logger)}
	s.srv = &http.Server{
		Handler:           s.checkHost(s.routes()),
		ReadHeaderTimeout: cmp.Or(opts.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		ReadTimeout:       cmp.Or(opts.ReadTimeout, DefaultReadTimeout),
		WriteTimeout:      cmp.Or(opts.WriteTimeout, DefaultWriteTimeout),
		IdleTimeout:       cmp.Or(opts.IdleTimeout, DefaultIdleTimeout),
		MaxHeaderBytes:    maxHeaderBytes,
	}
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
	if s.opts.Promotions != nil {
		s.promotionRoutes(mux)
	}
	if s.opts.Webhooks != nil {
		mux.Handle("POST /hooks/{provider}", s.opts.Webhooks)
	}
	return limitBody(mux)
}

// limitBody refuses a body over maxAPIBody before reading it (413), and bounds one sent
// without a length, on every route but the webhooks': their handler checks its own limit,
// and its client's attempts, before reading.
func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/hooks/") {
			if r.ContentLength > maxAPIBody {
				refuse(w, r, http.StatusRequestEntityTooLarge, "request body too large")
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxAPIBody)
		}
		next.ServeHTTP(w, r)
	})
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
