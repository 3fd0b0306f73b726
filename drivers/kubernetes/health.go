package kubernetes

import (
	"context"
	"fmt"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"

	"github.com/shipwatch/shipwatch/drivers"
)

// Health reads every inventory member and maps its kstatus to the Argo CD vocabulary. An app
// with no inventory is Missing.
func (d *Driver) Health(ctx context.Context, app drivers.App) (drivers.Health, error) {
	inv, err := d.readInventory(ctx, app.Name)
	if err != nil {
		return drivers.Health{}, fmt.Errorf("app %s: health: %w", app.Name, err)
	}
	if len(inv.Members) == 0 {
		return drivers.Health{Status: drivers.HealthMissing}, nil
	}
	h := drivers.Health{Status: drivers.HealthHealthy}
	for _, m := range inv.Members {
		rh, err := d.memberHealth(ctx, m)
		if err != nil {
			return drivers.Health{}, fmt.Errorf("app %s: health: %w", app.Name, err)
		}
		h.Resources = append(h.Resources, rh)
		h.Status = drivers.Worse(h.Status, rh.Status)
	}
	return h, nil
}

func (d *Driver) memberHealth(ctx context.Context, m member) (drivers.ResourceHealth, error) {
	rh := drivers.ResourceHealth{Ref: m.ref()}
	live, err := d.get(ctx, m)
	if err != nil {
		return rh, err
	}
	if live == nil {
		rh.Status, rh.Message = drivers.HealthMissing, "not found"
		return rh, nil
	}
	res, err := status.Compute(live)
	if err != nil {
		rh.Status, rh.Message = drivers.HealthUnknown, err.Error()
		return rh, nil
	}
	rh.Status, rh.Message = healthOf(res.Status), res.Message
	return rh, nil
}

// healthOf maps a kstatus status: Current is Healthy, InProgress and Terminating are
// Progressing, Failed is Degraded, NotFound is Missing, anything else Unknown.
func healthOf(s status.Status) drivers.HealthStatus {
	switch s {
	case status.CurrentStatus:
		return drivers.HealthHealthy
	case status.InProgressStatus, status.TerminatingStatus:
		return drivers.HealthProgressing
	case status.FailedStatus:
		return drivers.HealthDegraded
	case status.NotFoundStatus:
		return drivers.HealthMissing
	default:
		return drivers.HealthUnknown
	}
}
