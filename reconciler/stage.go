package reconciler

import (
	"context"
	"fmt"
	"time"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/internal/state"
)

// StageState is what a promotion gate reads about a stage: what runs, since when it has
// been Synced and Healthy, and what holds it.
type StageState struct {
	Name    string
	Applied string
	// Healthy is the current Synced-and-Healthy streak, nil while there is none.
	Healthy *state.Streak
	Pin     *state.Pin
	Sync    string
	Health  string
	// DriftSince is when the open drift episode started; zero without one.
	DriftSince time.Time
}

// Stage returns a stage's state as the reconciler knows it (its store record).
func (r *Reconciler) Stage(name string) (StageState, error) {
	st, err := r.app(name)
	if err != nil {
		return StageState{}, err
	}
	rec, snap := st.record(), st.snapshot()
	return StageState{
		Name: name, Applied: rec.Applied, Healthy: rec.Healthy, Pin: rec.Pin,
		Sync: snap.Sync, Health: snap.Health, DriftSince: rec.DriftSince,
	}, nil
}

// Images returns the images the app runs, when its driver can tell.
func (r *Reconciler) Images(ctx context.Context, name string) ([]drivers.Image, error) {
	st, err := r.app(name)
	if err != nil {
		return nil, err
	}
	rep, ok := st.spec.Driver.(drivers.ImageReporter)
	if !ok {
		return nil, nil
	}
	images, err := rep.Images(ctx, r.driverApp(st, ""))
	if err != nil {
		return nil, fmt.Errorf("app %s: images: %w", name, err)
	}
	return images, nil
}
