package promotion

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/internal/metrics"
	"github.com/shipwatch/shipwatch/internal/state"
	"github.com/shipwatch/shipwatch/reconciler"
	"github.com/shipwatch/shipwatch/source"
)

// fakeStages: web@dev runs rev, healthy for a minute; every plan is one recreate.
type fakeStages struct{ rev string }

func (f fakeStages) Stage(name string) (reconciler.StageState, error) {
	return reconciler.StageState{Name: name, Applied: f.rev, Sync: "Synced", Health: "Healthy",
		Healthy: &state.Streak{Revision: f.rev, Since: time.Now().Add(-time.Minute)}}, nil
}

func (fakeStages) Images(context.Context, string) ([]drivers.Image, error) { return nil, nil }

func (fakeStages) Trigger(string, reconciler.Request) error { return nil }

func (fakeStages) Plan(_ context.Context, name string, _ reconciler.PlanOptions) (*drivers.Plan, error) {
	return &drivers.Plan{App: drivers.App{Name: name}, Changes: drivers.ChangeSet{
		{Ref: drivers.Ref{Kind: "service", Name: "web"}, Action: drivers.ActionRecreate}}}, nil
}

// fakeGit has dev's images.env at every revision, prod's older one, and fails any write.
type fakeGit struct{ dir string }

func (g fakeGit) Hold(context.Context, source.Repo, string, string) (string, func(), error) {
	return g.dir, func() {}, nil
}

func (fakeGit) ReadFile(_ source.Repo, _, name string, _ int64) ([]byte, error) {
	return []byte(map[string]string{"dev/images.env": "WEB_IMAGE=web:2\n", "prod/images.env": "WEB_IMAGE=web:1\n"}[name]), nil
}

func (fakeGit) Write(context.Context, source.Repo, source.Edit) (string, error) {
	return "", errors.New("a dry run wrote")
}

func (fakeGit) Resolve(context.Context, source.Repo, string) (string, error) { return "head", nil }

func (fakeGit) Commit(context.Context, source.Repo, string, string) (string, error) { return "", nil }

// fakeRecords has no approvals.
type fakeRecords struct{ Records }

func (fakeRecords) Approvals(string) ([]state.Approval, error) { return nil, nil }

// A dry run goes past a closed gate: it shows the diff and the plan, writes nothing, and
// still says the gate is closed; a promotion without --dry-run shows nothing.
func TestDryRunBehindAClosedGate(t *testing.T) {
	p, err := New(Options{Stages: fakeStages{rev: "0123456789abcdef"}, Git: fakeGit{dir: t.TempDir()}, Records: fakeRecords{},
		Metrics: metrics.New("test"), Pipelines: []Pipeline{{App: "web", Files: []string{"images.env"}, Mode: "push",
			Stages: []Stage{{Env: "dev", Name: "web@dev", Path: "dev", Branch: "main"},
				{Env: "prod", Name: "web@prod", Path: "prod", Branch: "main", From: "dev", Gate: Gate{Approval: true}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Promote(t.Context(), "web", "prod", PromoteOptions{DryRun: true})
	if !errors.Is(err, ErrGateClosed) || !strings.Contains(err.Error(), "waits for an approval") {
		t.Errorf("dry run: err = %v, want the closed gate", err)
	}
	if out.Result != ResultDryRun || !strings.Contains(out.Diff, "+WEB_IMAGE=web:2") || !strings.Contains(out.PlanText, "recreate") {
		t.Errorf("dry run: result %s, diff %q, plan %q; want the preview", out.Result, out.Diff, out.PlanText)
	}
	out, err = p.Promote(t.Context(), "web", "prod", PromoteOptions{})
	if !errors.Is(err, ErrGateClosed) || out.Result != ResultGateClosed || out.Diff != "" {
		t.Errorf("promote: result %s, diff %q, err %v; want the closed gate only", out.Result, out.Diff, err)
	}
}
