package server

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/shipwatch/shipwatch/internal/metrics"
	"github.com/shipwatch/shipwatch/internal/state"
	"github.com/shipwatch/shipwatch/reconciler"
)

// fakeHistory stands in for the reconciler's history side, for routing, auth and codes.
type fakeHistory struct {
	rolledBack []string // the revisions asked for
	pinned     bool
}

func (f *fakeHistory) known(name string) error {
	if name != "web" {
		return fmt.Errorf("%w %q", reconciler.ErrUnknownApp, name)
	}
	return nil
}

func (f *fakeHistory) History(name string, limit int) ([]state.Entry, error) {
	if err := f.known(name); err != nil {
		return nil, err
	}
	all := []state.Entry{{ID: 2, Revision: "b", Result: state.ResultFailed}, {ID: 1, Revision: "a", Result: state.ResultSucceeded}}
	if limit > 0 && limit < len(all) {
		all = all[:limit]
	}
	return all, nil
}

func (f *fakeHistory) HistoryEntry(name string, id uint64) (state.Entry, error) {
	if err := f.known(name); err != nil {
		return state.Entry{}, err
	}
	if id != 1 {
		return state.Entry{}, fmt.Errorf("entry %d: %w", id, state.ErrNotFound)
	}
	return state.Entry{ID: 1, Revision: "a"}, nil
}

func (f *fakeHistory) Rollback(_ context.Context, name string, opts reconciler.RollbackOptions) (reconciler.Status, error) {
	if err := f.known(name); err != nil {
		return reconciler.Status{}, err
	}
	if opts.Actor != state.ActorAPI {
		return reconciler.Status{}, fmt.Errorf("actor %q, want api", opts.Actor)
	}
	if opts.To == "zzz" {
		return reconciler.Status{}, fmt.Errorf("%w: no such commit", reconciler.ErrRollbackTarget)
	}
	f.rolledBack = append(f.rolledBack, opts.To)
	f.pinned = true
	return reconciler.Status{App: name, Pin: &state.Pin{Revision: "a"}}, nil
}

func (f *fakeHistory) Unpin(name string, _ state.Actor) (reconciler.Status, error) {
	if err := f.known(name); err != nil {
		return reconciler.Status{}, err
	}
	if !f.pinned {
		return reconciler.Status{App: name}, fmt.Errorf("app %s: %w", name, reconciler.ErrNotPinned)
	}
	f.pinned = false
	return reconciler.Status{App: name}, nil
}

func TestHistoryEndpoints(t *testing.T) {
	hist := &fakeHistory{}
	s, err := New(t.Context(), Options{Addr: "127.0.0.1:0", Metrics: metrics.New("t").Handler(), Apps: &fakeApps{},
		History: hist, Token: func() (string, error) { return "s3cret", nil }})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(t.Context()) }()
	base := "http://" + s.Addr() + "/api/v1/apps/"

	code, body := call(t, "GET", base+"web/history?limit=1", "")
	var h HistoryResponse
	if code != 200 || json.Unmarshal([]byte(body), &h) != nil || len(h.Entries) != 1 || h.Entries[0].ID != 2 {
		t.Errorf("GET history?limit=1 = %d %s", code, body)
	}
	for path, want := range map[string]int{
		"nope/history": 404, "web/history?limit=x": 400, "web/history/1": 200, "web/history/7": 404, "web/history/x": 400,
	} {
		if code, body := call(t, "GET", base+path, ""); code != want {
			t.Errorf("GET %s = %d %s, want %d", path, code, body, want)
		}
	}
	if code, _ := call(t, "POST", base+"web/rollback", ""); code != 401 || len(hist.rolledBack) != 0 {
		t.Errorf("rollback without a token = %d, rolled back %v", code, hist.rolledBack)
	}
	if code, body := call(t, "POST", base+"web/unpin", "s3cret"); code != 409 {
		t.Errorf("unpin of an unpinned app = %d %s, want 409", code, body)
	}
	if code, body := call(t, "POST", base+"web/rollback", "s3cret"); code != 200 || len(hist.rolledBack) != 1 {
		t.Errorf("rollback = %d %s", code, body)
	}
	if code, body := call(t, "POST", base+"web/unpin", "s3cret"); code != 200 || hist.pinned {
		t.Errorf("unpin = %d %s", code, body)
	}
}
