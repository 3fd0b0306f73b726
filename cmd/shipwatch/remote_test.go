package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The API answers a refused request (a wrong token, an unknown app) with {"error": ...} and
// no status, and a pass that ran with the app's status and the pass's error: the first must
// keep its HTTP status in the CLI's message, the second carries only the pass's error.
func TestOutcomeKeepsTheHTTPStatusOfARefusal(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/denied") {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error": "missing or wrong bearer token"}`))
			return
		}
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write([]byte(`{"status": {"app": "web", "sync": "OutOfSync"}, "error": "HealthFailed: not healthy"}`))
	}))
	defer srv.Close()
	rm := &remote{server: srv.URL}

	st, err := rm.outcome(t.Context(), &globals{}, "/denied", nil)
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "bearer token") {
		t.Errorf("refusal: err = %v, want the 401 status and the message", err)
	}
	if st.App != "" {
		t.Errorf("refusal: status = %+v, want none", st)
	}

	st, err = rm.outcome(t.Context(), &globals{}, "/failed", nil)
	if err == nil || err.Error() != "HealthFailed: not healthy" {
		t.Errorf("failed pass: err = %v, want the pass's error alone", err)
	}
	if st.App != "web" || st.Sync != "OutOfSync" {
		t.Errorf("failed pass: status = %+v, want the app's", st)
	}
}
