package docker

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/client"
)

// volumesFromRef is one parsed volumes_from entry: "service[:mode]" or
// "container:name[:mode]", as compose reads them.
type volumesFromRef struct {
	service   string // the project service, for a service entry
	container string // the container name or ID, for a "container:" entry
	mode      string // "", "ro" or "rw"
}

// parseVolumesFrom splits one entry the way compose does (on ":"), refusing modes the
// Engine would read differently from what the file says.
func parseVolumesFrom(entry string) (volumesFromRef, error) {
	parts := strings.Split(entry, ":")
	var ref volumesFromRef
	rest := parts[1:]
	if parts[0] == "container" {
		if len(parts) < 2 || parts[1] == "" {
			return ref, fmt.Errorf("volumes_from %q: no container name: %w", entry, ErrUnsupported)
		}
		ref.container, rest = parts[1], parts[2:]
	} else {
		ref.service = parts[0]
	}
	switch {
	case ref.container == "" && ref.service == "":
		return ref, fmt.Errorf("volumes_from %q: no service name: %w", entry, ErrUnsupported)
	case len(rest) > 1:
		return ref, fmt.Errorf("volumes_from %q: too many fields: %w", entry, ErrUnsupported)
	case len(rest) == 1 && rest[0] != "ro" && rest[0] != "rw":
		return ref, fmt.Errorf("volumes_from %q: mode %q: %w (only ro or rw)", entry, rest[0], ErrUnsupported)
	case len(rest) == 1:
		ref.mode = rest[0]
	}
	return ref, nil
}

// volumesFromServices are the project services a service draws volumes from, in entry
// order; unparsable entries are left to checkVolumesFrom.
func volumesFromServices(s types.ServiceConfig) []string {
	var out []string
	for _, e := range s.VolumesFrom {
		if ref, err := parseVolumesFrom(e); err == nil && ref.service != "" && !slices.Contains(out, ref.service) {
			out = append(out, ref.service)
		}
	}
	return out
}

// checkVolumesFrom refuses entries that cannot be resolved: a bad mode, an unknown service,
// the service itself.
func checkVolumesFrom(p *types.Project, s types.ServiceConfig) error {
	for _, e := range s.VolumesFrom {
		ref, err := parseVolumesFrom(e)
		if err != nil {
			return fmt.Errorf("service %s: %w", s.Name, err)
		}
		if ref.service == "" {
			continue
		}
		if ref.service == s.Name {
			return fmt.Errorf("service %s: volumes_from %q: a service cannot share its own volumes", s.Name, e)
		}
		if _, ok := p.Services[ref.service]; !ok {
			return fmt.Errorf("service %s: volumes_from %q: service %s is not in the project", s.Name, e, ref.service)
		}
	}
	return nil
}

// resolvedVolumesFrom is a service's volumes_from with service entries bound to containers.
type resolvedVolumesFrom struct {
	// host is HostConfig.VolumesFrom: container ID or name, with the mode kept.
	host []string
	// labelHash is the config-hash label compose writes: the hash of the service with each
	// entry replaced by the bare container ID or name. compose drops the mode there (and
	// from the container it creates), so the label must drop it too for `docker compose up`
	// to keep shipwatch's container.
	labelHash string
}

// resolveVolumesFrom binds a service's volumes_from to containers. first returns the
// container compose would pick for a service: its first container sorted by name.
func resolveVolumesFrom(spec *ServiceSpec, first func(service string) (string, bool)) (resolvedVolumesFrom, error) {
	if len(spec.Service.VolumesFrom) == 0 {
		return resolvedVolumesFrom{labelHash: spec.ConfigHash}, nil
	}
	var out resolvedVolumesFrom
	bare := make([]string, 0, len(spec.Service.VolumesFrom))
	for _, e := range spec.Service.VolumesFrom {
		ref, err := parseVolumesFrom(e)
		if err != nil {
			return resolvedVolumesFrom{}, fmt.Errorf("service %s: %w", spec.Name, err)
		}
		target := ref.container
		if ref.service != "" {
			id, ok := first(ref.service)
			if !ok {
				return resolvedVolumesFrom{}, fmt.Errorf("service %s: volumes_from: service %s has no container to share volumes with", spec.Name, ref.service)
			}
			target = id
		}
		bare = append(bare, target)
		if ref.mode != "" {
			target += ":" + ref.mode
		}
		out.host = append(out.host, target)
	}
	s := spec.Service
	s.VolumesFrom = bare
	h, err := ServiceHash(s)
	if err != nil {
		return resolvedVolumesFrom{}, err
	}
	out.labelHash = h
	return out, nil
}

// firstByName returns the ID of the container sorted first by name among cs, as compose
// chooses the container whose volumes are shared.
func firstByName(cs []*ObservedContainer) (string, bool) {
	if len(cs) == 0 {
		return "", false
	}
	best := cs[0]
	for _, c := range cs[1:] {
		if c.Name < best.Name {
			best = c
		}
	}
	return best.ID, true
}

// volumesFromState is what the planner works out once per service with volumes_from.
type volumesFromState struct {
	// forced are reasons that recreate every container of the service: a service it
	// shares volumes with is recreated by this plan, so the new container must point at
	// the new one, as compose does.
	forced []string
	// labelHash is the config-hash label a container that is up to date carries; empty
	// when the service has no volumes_from.
	labelHash string
	services  []string
}

// planVolumesFrom decides, from the plan so far (services are planned in dependency
// order), how volumes_from affects spec's containers.
func (p *planner) planVolumesFrom(spec *ServiceSpec) volumesFromState {
	if len(spec.Service.VolumesFrom) == 0 {
		return volumesFromState{}
	}
	st := volumesFromState{services: volumesFromServices(spec.Service)}
	for _, svc := range st.services {
		if p.recreated[svc] {
			st.forced = append(st.forced, "volumes_from: service "+svc+" is recreated")
		}
	}
	res, err := resolveVolumesFrom(spec, func(svc string) (string, bool) {
		ours, _ := p.containersOf(svc)
		return firstByName(ours)
	})
	// Without a container to resolve to, compose hashes the unresolved service, which no
	// container it created carries: the container is replaced once the service is back.
	st.labelHash = res.labelHash
	if err != nil {
		st.labelHash = spec.ConfigHash
	}
	return st
}

// reasons are why container c must be recreated for volumes_from, or nil.
func (st volumesFromState) reasons(c *ObservedContainer) []string {
	if len(st.forced) > 0 {
		return st.forced
	}
	if st.labelHash != "" && c.Labels[LabelConfigHash] != st.labelHash {
		return []string{"volumes_from: the container of service " + strings.Join(st.services, ", ") + " changed since this one was created"}
	}
	return nil
}

// resolveVolumesFromLive binds spec's volumes_from to the app's containers as they are
// now, right before a container is created: an earlier step of the same Apply may have
// replaced the container shared from.
func (r *applyRun) resolveVolumesFromLive(ctx context.Context, spec *ServiceSpec) (resolvedVolumesFrom, error) {
	if len(volumesFromServices(spec.Service)) == 0 {
		return resolveVolumesFrom(spec, nil)
	}
	var lookupErr error
	res, err := resolveVolumesFrom(spec, func(svc string) (string, bool) {
		filters := client.Filters{}.
			Add("label", LabelProject+"="+r.desired.Project).
			Add("label", LabelService+"="+svc).
			Add("label", LabelApp+"="+r.app.Name)
		list, err := r.d.api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filters})
		if err != nil {
			lookupErr = fmt.Errorf("service %s: volumes_from: list containers of %s: %w", spec.Name, svc, err)
			return "", false
		}
		cs := make([]*ObservedContainer, 0, len(list.Items))
		for _, c := range list.Items {
			if len(c.Names) > 0 {
				cs = append(cs, &ObservedContainer{ID: c.ID, Name: strings.TrimPrefix(c.Names[0], "/")})
			}
		}
		return firstByName(cs)
	})
	if lookupErr != nil {
		return resolvedVolumesFrom{}, lookupErr
	}
	return res, err
}
