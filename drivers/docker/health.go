package docker

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	ctr "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers"
)

// Health is one snapshot of the app's containers from a single list call, one resource per
// service: a service is as healthy as its worst container.
func (d *Driver) Health(ctx context.Context, app drivers.App) (drivers.Health, error) {
	containers, _, err := d.listContainers(ctx, app.Project, inspectSet{})
	if err != nil {
		return drivers.Health{Status: drivers.HealthUnknown}, fmt.Errorf("app %s: health: %w", app.Name, err)
	}
	byService := map[string][]ObservedContainer{}
	for _, c := range containers {
		if c.Labels[LabelApp] != app.Name || isTemporary(&c) {
			continue // a replacement under its temporary name is not a replica (yet)
		}
		svc := c.Labels[LabelService]
		byService[svc] = append(byService[svc], c)
	}
	if len(byService) == 0 {
		return drivers.Health{Status: drivers.HealthMissing}, nil
	}
	h := drivers.Health{Status: drivers.HealthHealthy}
	for _, svc := range slices.Sorted(maps.Keys(byService)) {
		rh := drivers.ResourceHealth{Ref: drivers.Ref{Kind: "service", Name: svc}, Status: drivers.HealthHealthy}
		var msgs []string
		for _, c := range byService[svc] {
			st, msg := containerHealth(c)
			rh.Status = drivers.Worse(rh.Status, st)
			if st != drivers.HealthHealthy {
				msgs = append(msgs, c.Name+": "+msg)
			}
		}
		rh.Message = strings.Join(msgs, "; ")
		h.Resources = append(h.Resources, rh)
		h.Status = drivers.Worse(h.Status, rh.Status)
	}
	return h, nil
}

// containerHealth maps one container's state to the health vocabulary. A container that
// exited 0 and is not meant to restart is a finished one-shot job: healthy.
func containerHealth(c ObservedContainer) (drivers.HealthStatus, string) {
	switch ctr.ContainerState(c.State) {
	case ctr.StateRunning:
		switch ctr.HealthStatus(c.Health) {
		case ctr.Starting:
			return drivers.HealthProgressing, "health check starting"
		case ctr.Unhealthy:
			return drivers.HealthDegraded, "unhealthy"
		}
		return drivers.HealthHealthy, "running"
	case ctr.StateCreated:
		return drivers.HealthProgressing, "created, not started"
	case ctr.StateRemoving:
		return drivers.HealthProgressing, "being removed"
	case ctr.StateExited:
		restart := ctr.RestartPolicyMode(c.RestartPolicy)
		if c.ExitCode == 0 && (restart == "" || restart == ctr.RestartPolicyDisabled || restart == ctr.RestartPolicyOnFailure) {
			return drivers.HealthHealthy, "completed"
		}
		return drivers.HealthDegraded, fmt.Sprintf("exited with code %d", c.ExitCode)
	default: // restarting, paused, dead
		return drivers.HealthDegraded, c.State
	}
}

// depPollInterval is how often a dependency's state is read while a dependent waits.
const depPollInterval = 300 * time.Millisecond

// waitDependencies blocks until the service's depends_on conditions hold, bounded by ctx.
// Each dependency is waited for once per Apply.
func (r *applyRun) waitDependencies(ctx context.Context, spec *ServiceSpec) error {
	deps := spec.Service.DependsOn
	for _, dep := range slices.Sorted(maps.Keys(deps)) {
		cond := deps[dep].Condition
		if cond != types.ServiceConditionHealthy && cond != types.ServiceConditionCompletedSuccessfully {
			continue // service_started: dependencies are started earlier in step order
		}
		key := dep + "/" + cond
		if r.depsOK[key] {
			continue
		}
		if err := r.waitDependency(ctx, spec.Name, dep, cond, deps[dep].Required); err != nil {
			return err
		}
		r.depsOK[key] = true
	}
	return nil
}

func (r *applyRun) waitDependency(ctx context.Context, svc, dep, cond string, required bool) error {
	filters := projectFilter(r.desired.Project).Add("label", LabelService+"="+dep)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("service %s: wait for %s to be %s: %w", svc, dep, cond, ctx.Err())
		case <-timer.C:
		}
		res, err := r.d.api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filters})
		if err != nil {
			return fmt.Errorf("service %s: read dependency %s: %w", svc, dep, err)
		}
		var cs []ObservedContainer
		for _, c := range res.Items {
			cs = append(cs, observedContainer(c))
		}
		done, err := dependencyMet(cs, cond)
		if err != nil {
			return fmt.Errorf("service %s: dependency %s: %w", svc, dep, err)
		}
		if done {
			return nil
		}
		if len(cs) == 0 && !required {
			r.log.Info("optional dependency missing", "resource", "service/"+dep)
			return nil
		}
		timer.Reset(depPollInterval)
	}
}

// dependencyMet reports whether every container of a dependency satisfies cond, and an
// error when it never will.
func dependencyMet(cs []ObservedContainer, cond string) (bool, error) {
	if len(cs) == 0 {
		return false, nil
	}
	for _, c := range cs {
		switch cond {
		case types.ServiceConditionHealthy:
			if c.State == string(ctr.StateExited) || c.State == string(ctr.StateDead) {
				return false, fmt.Errorf("container %s is %s", c.Name, c.State)
			}
			if c.State == string(ctr.StateRunning) && c.Health == "" {
				return false, fmt.Errorf("container %s has no healthcheck", c.Name)
			}
			if c.Health == string(ctr.Unhealthy) {
				return false, fmt.Errorf("container %s is unhealthy", c.Name)
			}
			if c.Health != string(ctr.Healthy) {
				return false, nil
			}
		case types.ServiceConditionCompletedSuccessfully:
			if c.State != string(ctr.StateExited) {
				return false, nil
			}
			if c.ExitCode != 0 {
				return false, fmt.Errorf("container %s exited with code %d", c.Name, c.ExitCode)
			}
		}
	}
	return true, nil
}
