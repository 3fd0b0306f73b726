package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/internal/metrics"
	"github.com/shipwatch/shipwatch/reconciler"
)

// fakeApps stands in for the reconciler so the HTTP layer (routing, auth, codes) is tested
// alone; the e2e tests drive the real one.
type fakeApps struct {
	synced, triggered []string
}

func (f *fakeApps) Status() []reconciler.Status {
	return []reconciler.Status{{App: "web", Sync: reconciler.SyncSynced, Health: "Healthy"}}
}

func (f *fakeApps) AppStatus(name string) (reconciler.Status, error) {
	if name != "web" {
		return reconciler.Status{}, fmt.Errorf("%w %q", reconciler.ErrUnknownApp, name)
	}
	return f.Status()[0], nil
}

func (f *fakeApps) LastPlan(name string) (reconciler.LastPlan, error) {
	if _, err := f.AppStatus(name); err != nil {
		return reconciler.LastPlan{}, err
	}
	return reconciler.LastPlan{Plan: &drivers.Plan{App: drivers.App{Name: name, Revision: "abc"}, Changes: drivers.ChangeSet{
		{Ref: drivers.Ref{Kind: "service", Name: "api"}, Action: drivers.ActionRecreate, Reason: "config changed: environment", Diff: "-  X: ***\n+  X: *** (changed)\n"},
	}}}, nil
}

func (f *fakeApps) Sync(_ context.Context, name string, _ reconciler.SyncOptions) (reconciler.Status, error) {
	st, err := f.AppStatus(name)
	if err == nil {
		f.synced = append(f.synced, name)
	}
	return st, err
}

func (f *fakeApps) Warnings() []string { return nil }

func (f *fakeApps) Trigger(name string, _ reconciler.Request) error {
	if _, err := f.AppStatus(name); err != nil {
		return err
	}
	f.triggered = append(f.triggered, name)
	return nil
}

func startAPI(t *testing.T, token func() (string, error)) (string, *fakeApps) {
	t.Helper()
	apps := &fakeApps{}
	s, err := New(t.Context(), Options{Addr: "127.0.0.1:0", Metrics: metrics.New("t").Handler(), Apps: apps, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(t.Context()) }()
	return "http://" + s.Addr(), apps
}

func call(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAPIReads(t *testing.T) {
	base, _ := startAPI(t, nil)
	code, body := call(t, "GET", base+"/api/v1/apps", "")
	if code != 200 || !strings.Contains(body, `"app": "web"`) {
		t.Errorf("GET /apps = %d %s", code, body)
	}
	if code, _ := call(t, "GET", base+"/api/v1/apps/nope", ""); code != 404 {
		t.Errorf("GET unknown app = %d, want 404", code)
	}
	code, body = call(t, "GET", base+"/api/v1/apps/web/diff", "")
	var d DiffResponse
	if code != 200 || json.Unmarshal([]byte(body), &d) != nil || d.InSync || len(d.Changes) != 1 || d.Changes[0].Ref.Name != "api" {
		t.Errorf("GET diff = %d %s", code, body)
	}
}

func TestAPIMutationsNeedAToken(t *testing.T) {
	readOnly, _ := startAPI(t, nil)
	if code, _ := call(t, "POST", readOnly+"/api/v1/apps/web/sync", "anything"); code != 403 {
		t.Errorf("sync without a configured token = %d, want 403", code)
	}
	base, apps := startAPI(t, func() (string, error) { return "s3cret", nil })
	if code, _ := call(t, "POST", base+"/api/v1/apps/web/sync", ""); code != 401 {
		t.Errorf("sync without a token = %d, want 401", code)
	}
	if code, _ := call(t, "POST", base+"/api/v1/apps/web/refresh", "wrong"); code != 401 {
		t.Errorf("refresh with a wrong token = %d, want 401", code)
	}
	if len(apps.synced)+len(apps.triggered) != 0 {
		t.Fatalf("unauthorized calls acted: %v %v", apps.synced, apps.triggered)
	}
	if code, body := call(t, "POST", base+"/api/v1/apps/web/sync", "s3cret"); code != 200 || len(apps.synced) != 1 {
		t.Errorf("sync = %d %s", code, body)
	}
	if code, _ := call(t, "POST", base+"/api/v1/apps/web/refresh", "s3cret"); code != 202 || len(apps.triggered) != 1 {
		t.Errorf("refresh = %d", code)
	}
	if code, _ := call(t, "POST", base+"/api/v1/apps/nope/refresh", "s3cret"); code != 404 {
		t.Errorf("refresh of an unknown app = %d, want 404", code)
	}
	if code, _ := call(t, "GET", base+"/api/v1/apps/web/sync", "s3cret"); code != 405 {
		t.Errorf("GET on a POST route = %d, want 405", code)
	}
}
