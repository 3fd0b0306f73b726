package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/shipwatch/shipwatch/internal/state"
	"github.com/shipwatch/shipwatch/reconciler"
)

// History is what the history, rollback and unpin endpoints read and drive;
// *reconciler.Reconciler implements it.
type History interface {
	History(name string, limit int) ([]state.Entry, error)
	HistoryEntry(name string, id uint64) (state.Entry, error)
	Rollback(ctx context.Context, name string, opts reconciler.RollbackOptions) (reconciler.Status, error)
	Unpin(name string, actor state.Actor) (reconciler.Status, error)
}

// HistoryResponse is the body of GET /api/v1/apps/{app}/history.
type HistoryResponse struct {
	App     string        `json:"app"`
	Entries []state.Entry `json:"entries"`
}

// RollbackRequest is the optional body of POST /api/v1/apps/{app}/rollback.
type RollbackRequest struct {
	// Revision is a full SHA or a prefix of at least 7 hex digits; empty means the last
	// revision that was synced and healthy.
	Revision string `json:"revision,omitempty"`
}

// maxRollbackBody bounds the rollback request's body: it holds one revision.
const maxRollbackBody = 4 << 10

func (s *Server) historyRoutes(mux *http.ServeMux) {
	h := s.opts.History
	mux.HandleFunc("GET /api/v1/apps/{app}/history", func(w http.ResponseWriter, r *http.Request) {
		limit := 0
		if q := r.URL.Query().Get("limit"); q != "" {
			n, err := strconv.Atoi(q)
			if err != nil || n < 0 {
				writeJSON(w, http.StatusBadRequest, errorBody{"limit must be a non-negative integer"})
				return
			}
			limit = n
		}
		entries, err := h.History(r.PathValue("app"), limit)
		if err != nil {
			writeError(w, err)
			return
		}
		if entries == nil {
			entries = []state.Entry{}
		}
		writeJSON(w, http.StatusOK, HistoryResponse{App: r.PathValue("app"), Entries: entries})
	})
	mux.HandleFunc("GET /api/v1/apps/{app}/history/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{"id must be a history entry number"})
			return
		}
		e, err := h.HistoryEntry(r.PathValue("app"), id)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, e)
	})
	mux.HandleFunc("POST /api/v1/apps/{app}/rollback", s.authorized(func(w http.ResponseWriter, r *http.Request) {
		var req RollbackRequest
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRollbackBody))
		if err == nil && len(body) > 0 {
			err = json.Unmarshal(body, &req)
		}
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{"body must be {\"revision\": \"<sha>\"} or empty"})
			return
		}
		waitsLong(w)
		st, err := h.Rollback(r.Context(), r.PathValue("app"), reconciler.RollbackOptions{To: req.Revision, Actor: state.ActorAPI})
		writeOutcome(w, st, err)
	}))
	mux.HandleFunc("POST /api/v1/apps/{app}/unpin", s.authorized(func(w http.ResponseWriter, r *http.Request) {
		st, err := h.Unpin(r.PathValue("app"), state.ActorAPI)
		writeOutcome(w, st, err)
	}))
}

// writeOutcome answers a call that ran (or refused to run) a pass: the status either way,
// with a code that tells a refusal from a failed pass.
func writeOutcome(w http.ResponseWriter, st reconciler.Status, err error) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, SyncResponse{Status: st})
	case errors.Is(err, reconciler.ErrUnknownApp):
		writeError(w, err)
	case errors.Is(err, reconciler.ErrRollbackTarget):
		writeJSON(w, http.StatusBadRequest, SyncResponse{Status: st, Error: err.Error()})
	case errors.Is(err, reconciler.ErrSuspended), errors.Is(err, reconciler.ErrNotPinned),
		errors.Is(err, reconciler.ErrNoRollbackTarget), errors.Is(err, reconciler.ErrNoStore):
		writeJSON(w, http.StatusConflict, SyncResponse{Status: st, Error: err.Error()})
	default:
		writeJSON(w, http.StatusBadGateway, SyncResponse{Status: st, Error: err.Error()})
	}
}
