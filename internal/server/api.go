package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/internal/state"
	"github.com/shipwatch/shipwatch/reconciler"
)

// Apps is what the API reads and drives; *reconciler.Reconciler implements it.
type Apps interface {
	Status() []reconciler.Status
	AppStatus(name string) (reconciler.Status, error)
	// LastPlan is the last plan the daemon's passes made: reading it costs no Git or
	// Engine request, so the unauthenticated diff endpoint serves it.
	LastPlan(name string) (reconciler.LastPlan, error)
	Sync(ctx context.Context, name string, opts reconciler.SyncOptions) (reconciler.Status, error)
	Trigger(name string, req reconciler.Request) error
	Warnings() []string
}

// DiffResponse is the body of GET /api/v1/apps/{app}/diff: the daemon's last plan of the
// app, as of PlannedAt. POST /api/v1/apps/{app}/refresh asks for a new one.
type DiffResponse struct {
	App      string           `json:"app"`
	Revision string           `json:"revision"`
	InSync   bool             `json:"inSync"`
	Changes  []drivers.Change `json:"changes"`
	// Text is the plan as `shipwatch diff` prints it.
	Text string `json:"text"`
	// PlannedAt is when the plan was made, or settled by a successful apply.
	PlannedAt time.Time `json:"plannedAt"`
	// Applied is set when the plan has been applied since: its changes are listed as
	// unchanged, but for what an apply leaves (unmanaged resources, deletes without prune).
	Applied bool `json:"applied,omitempty"`
}

// SyncResponse is the body of POST /api/v1/apps/{app}/sync.
type SyncResponse struct {
	Status reconciler.Status `json:"status"`
	Error  string            `json:"error,omitempty"`
}

// AppsResponse is the body of GET /api/v1/apps.
type AppsResponse struct {
	Apps []AppStatus `json:"apps"`
	// Warnings are problems of the daemon as a whole (its state store).
	Warnings []string `json:"warnings,omitempty"`
}

// errorBody is every API error's body.
type errorBody struct {
	Error string `json:"error"`
}

func (s *Server) apiRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/apps", func(w http.ResponseWriter, _ *http.Request) {
		var apps []AppStatus
		for _, st := range s.opts.Apps.Status() {
			apps = append(apps, s.withReport(st))
		}
		writeJSON(w, http.StatusOK, AppsResponse{Apps: apps, Warnings: s.opts.Apps.Warnings()})
	})
	mux.HandleFunc("GET /api/v1/apps/{app}", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.opts.Apps.AppStatus(r.PathValue("app"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, s.withReport(st))
	})
	mux.HandleFunc("GET /api/v1/apps/{app}/diff", func(w http.ResponseWriter, r *http.Request) {
		lp, err := s.opts.Apps.LastPlan(r.PathValue("app"))
		if err != nil {
			writeError(w, err)
			return
		}
		plan := lp.Plan
		changes := plan.Changes
		if changes == nil {
			changes = drivers.ChangeSet{}
		}
		writeJSON(w, http.StatusOK, DiffResponse{
			App: plan.App.Name, Revision: plan.App.Revision, InSync: plan.InSync(),
			Changes: changes, Text: plan.String(), PlannedAt: lp.At, Applied: lp.Applied,
		})
	})
	mux.HandleFunc("POST /api/v1/apps/{app}/sync", s.authorized(func(w http.ResponseWriter, r *http.Request) {
		waitsLong(w)
		st, err := s.opts.Apps.Sync(r.Context(), r.PathValue("app"), reconciler.SyncOptions{Actor: state.ActorAPI})
		writeOutcome(w, st, err)
	}))
	mux.HandleFunc("POST /api/v1/apps/{app}/refresh", s.authorized(func(w http.ResponseWriter, r *http.Request) {
		req := reconciler.Request{Trigger: state.TriggerManual, Actor: state.ActorAPI}
		if err := s.opts.Apps.Trigger(r.PathValue("app"), req); err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "refresh queued"})
	}))
}

// authorized guards a mutating call with the bearer token from the token file, compared
// in constant time. Without a token file mutating calls are disabled (403), so a daemon is
// read-only unless its operator chose otherwise.
func (s *Server) authorized(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 {
			// A refusal must not wait for the body: see refuse.
			w.Header().Set("Connection", "close")
		}
		if s.opts.Token == nil {
			writeJSON(w, http.StatusForbidden, errorBody{"mutating API calls are disabled: set api.tokenFile"})
			return
		}
		want, err := s.opts.Token()
		if err != nil || want == "" {
			s.opts.Logger.Error("read API token", "err", err)
			writeJSON(w, http.StatusInternalServerError, errorBody{"API token unavailable"})
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="shipwatch"`)
			writeJSON(w, http.StatusUnauthorized, errorBody{"missing or wrong bearer token"})
			return
		}
		w.Header().Del("Connection")
		next(w, r)
	}
}

// waitsLong lifts the server's read and write deadlines for a call that waits for a pass
// and for health (sync, rollback), which may take minutes: the caller, authorized, decides
// how long to wait. It is called once the request's body, if any, has been read, so a
// slow body is still cut by the read timeout. Without it the read timeout would cancel
// the request's context mid-wait and the write timeout would drop the answer.
func waitsLong(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
}

func writeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, reconciler.ErrUnknownApp), errors.Is(err, state.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, reconciler.ErrNoStore):
		code = http.StatusConflict
	case errors.Is(err, reconciler.ErrNotPlanned):
		code = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "5")
	}
	writeJSON(w, code, errorBody{err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
