package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/shipwatch/shipwatch/internal/state"
	"github.com/shipwatch/shipwatch/promotion"
	"github.com/shipwatch/shipwatch/reconciler"
)

// Promotions is what the promotion endpoints drive; *promotion.Promoter implements it.
type Promotions interface {
	Promote(ctx context.Context, app, env string, opts promotion.PromoteOptions) (promotion.Outcome, error)
	Approve(ctx context.Context, app, env, revision string, actor state.Actor) (state.Approval, error)
	Report(app, env string) (promotion.Report, bool)
}

// AppStatus is an app's status with, for a stage that is promoted into, its promotion
// report: where it is promoted from, how far behind, the gate now.
type AppStatus struct {
	reconciler.Status
	Promotion *promotion.Report `json:"promotion,omitempty"`
}

// PromoteRequest is the optional body of POST .../environments/{env}/promote.
type PromoteRequest struct {
	DryRun bool `json:"dryRun,omitempty"`
	Force  bool `json:"force,omitempty"`
}

// PromoteResponse is its answer: the outcome, and the error when the promotion did not
// happen (a closed gate says which condition is missing).
type PromoteResponse struct {
	Outcome promotion.Outcome `json:"outcome"`
	Error   string            `json:"error,omitempty"`
}

// ApproveRequest is the body of POST .../environments/{env}/approve.
type ApproveRequest struct {
	Revision string `json:"revision"`
}

// withReport adds the promotion report of a stage to its status.
func (s *Server) withReport(st reconciler.Status) AppStatus {
	out := AppStatus{Status: st}
	if s.opts.Promotions == nil {
		return out
	}
	if app, env, ok := strings.Cut(st.App, "@"); ok {
		if r, ok := s.opts.Promotions.Report(app, env); ok {
			out.Promotion = &r
		}
	}
	return out
}

func (s *Server) promotionRoutes(mux *http.ServeMux) {
	p := s.opts.Promotions
	mux.HandleFunc("POST /api/v1/apps/{app}/environments/{env}/promote", s.authorized(func(w http.ResponseWriter, r *http.Request) {
		var req PromoteRequest
		if !readBody(w, r, &req) {
			return
		}
		out, err := p.Promote(r.Context(), r.PathValue("app"), r.PathValue("env"),
			promotion.PromoteOptions{DryRun: req.DryRun, Force: req.Force, Actor: state.ActorAPI})
		code := http.StatusOK
		switch {
		case errors.Is(err, promotion.ErrUnknownStage):
			code = http.StatusNotFound
		case errors.Is(err, promotion.ErrGateClosed):
			code = http.StatusConflict
		case err != nil:
			code = http.StatusBadGateway
		}
		resp := PromoteResponse{Outcome: out}
		if err != nil {
			resp.Error = err.Error()
		}
		writeJSON(w, code, resp)
	}))
	mux.HandleFunc("POST /api/v1/apps/{app}/environments/{env}/approve", s.authorized(func(w http.ResponseWriter, r *http.Request) {
		var req ApproveRequest
		if !readBody(w, r, &req) {
			return
		}
		a, err := p.Approve(r.Context(), r.PathValue("app"), r.PathValue("env"), req.Revision, state.ActorAPI)
		switch {
		case errors.Is(err, promotion.ErrUnknownStage):
			writeJSON(w, http.StatusNotFound, errorBody{err.Error()})
		case errors.Is(err, promotion.ErrNotApprovable):
			writeJSON(w, http.StatusConflict, errorBody{err.Error()})
		case err != nil:
			writeJSON(w, http.StatusBadRequest, errorBody{err.Error()})
		default:
			writeJSON(w, http.StatusOK, a)
		}
	}))
}

// readBody decodes a small optional JSON body; it answers 400 itself and returns false on a
// bad one.
func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRollbackBody))
	if err == nil && len(body) > 0 {
		err = json.Unmarshal(body, v)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{"body must be a small JSON object"})
		return false
	}
	return true
}
