package docker

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/client"
)

// A service can point at another service's container: volumes_from (volumesfrom.go) and
// the namespace keys network_mode, ipc and pid with "service:x". compose binds each of
// these to the ID of x's first container when it creates the container, and hashes the
// service with the IDs in place for the config-hash label, so both the create request and
// the label depend on containers, not only on the file. This file binds them the same way.

// namespaceRef is a namespace key whose value is "service:<service>".
type namespaceRef struct {
	key     string // "network_mode", "ipc" or "pid"
	service string
}

// namespaceRefs are the namespace keys of s that name a service, in compose's order
// (network_mode, ipc, pid).
func namespaceRefs(s types.ServiceConfig) []namespaceRef {
	var out []namespaceRef
	for _, kv := range [][2]string{{"network_mode", s.NetworkMode}, {"ipc", s.Ipc}, {"pid", s.Pid}} {
		if svc, ok := strings.CutPrefix(kv[1], types.ServicePrefix); ok {
			out = append(out, namespaceRef{key: kv[0], service: svc})
		}
	}
	return out
}

// referencedServices are the services whose containers s points at (volumes_from and
// namespaces), each once, in entry order.
func referencedServices(s types.ServiceConfig) []string {
	out := volumesFromServices(s)
	for _, ref := range namespaceRefs(s) {
		if !slices.Contains(out, ref.service) {
			out = append(out, ref.service)
		}
	}
	return out
}

// checkNamespaceRefs refuses a namespace key naming an unknown service or the service
// itself, with the key: compose-go checks only network_mode, and only for existence.
func checkNamespaceRefs(p *types.Project, s types.ServiceConfig) error {
	for _, ref := range namespaceRefs(s) {
		if ref.service == s.Name {
			return fmt.Errorf("service %s: %s: service:%s: a service cannot share its own namespace", s.Name, ref.key, ref.service)
		}
		if _, ok := p.Services[ref.service]; !ok {
			return fmt.Errorf("service %s: %s: service:%s: service %s is not in the project", s.Name, ref.key, ref.service, ref.service)
		}
	}
	return nil
}

// resolvedRefs is a service's references bound to containers.
type resolvedRefs struct {
	// volumesFrom is HostConfig.VolumesFrom: container ID or name, with the mode kept.
	volumesFrom []string
	// modes maps a namespace key naming a service to "container:<id>".
	modes map[string]string
	// labelHash is the config-hash label compose writes: the hash of the service with each
	// reference bound to the container (volumes_from entries to the bare ID or name, as
	// compose drops the mode there and from the container it creates).
	labelHash string
}

// mode is the Engine's value for a namespace key: the bound container, or the file's
// value when it names no service. A "service:" value left unbound is an error rather
// than a mode the Engine would refuse.
func (r resolvedRefs) mode(key, value string) (string, error) {
	if bound, ok := r.modes[key]; ok {
		return bound, nil
	}
	if strings.HasPrefix(value, types.ServicePrefix) {
		return "", fmt.Errorf("%s: %s is not bound to a container", key, value)
	}
	return value, nil
}

// resolveRefs binds a service's volumes_from and namespace keys to containers. first
// returns the container compose would pick for a service: its first container by name.
func resolveRefs(spec *ServiceSpec, first func(service string) (string, bool)) (resolvedRefs, error) {
	nss := namespaceRefs(spec.Service)
	if len(spec.Service.VolumesFrom) == 0 && len(nss) == 0 {
		return resolvedRefs{labelHash: spec.ConfigHash}, nil
	}
	s := spec.Service
	var out resolvedRefs
	if len(s.VolumesFrom) > 0 {
		host, bare, err := bindVolumesFrom(spec, first)
		if err != nil {
			return resolvedRefs{}, err
		}
		out.volumesFrom, s.VolumesFrom = host, bare
	}
	for _, ref := range nss {
		id, ok := first(ref.service)
		if !ok {
			return resolvedRefs{}, fmt.Errorf("service %s: %s: service %s has no container to share its namespace with", spec.Name, ref.key, ref.service)
		}
		if out.modes == nil {
			out.modes = map[string]string{}
		}
		mode := types.ContainerPrefix + id
		out.modes[ref.key] = mode
		switch ref.key {
		case "network_mode":
			s.NetworkMode = mode
		case "ipc":
			s.Ipc = mode
		case "pid":
			s.Pid = mode
		}
	}
	h, err := ServiceHash(s)
	if err != nil {
		return resolvedRefs{}, err
	}
	out.labelHash = h
	return out, nil
}

// bindVolumesFrom returns HostConfig.VolumesFrom (modes kept) and the entries as compose
// hashes them (bare container IDs or names).
func bindVolumesFrom(spec *ServiceSpec, first func(service string) (string, bool)) (host, bare []string, err error) {
	for _, e := range spec.Service.VolumesFrom {
		ref, err := parseVolumesFrom(e)
		if err != nil {
			return nil, nil, fmt.Errorf("service %s: %w", spec.Name, err)
		}
		target := ref.container
		if ref.service != "" {
			id, ok := first(ref.service)
			if !ok {
				return nil, nil, fmt.Errorf("service %s: volumes_from: service %s has no container to share volumes with", spec.Name, ref.service)
			}
			target = id
		}
		bare = append(bare, target)
		if ref.mode != "" {
			target += ":" + ref.mode
		}
		host = append(host, target)
	}
	return host, bare, nil
}

// refsState is what the planner works out once per service that points at containers.
type refsState struct {
	// forced are reasons that recreate every container of the service: a service it
	// points at is recreated by this plan, so the new container must point at the new
	// one, as compose does.
	forced []string
	// labelHash is the config-hash label a container that is up to date carries; empty
	// when the service points at no container.
	labelHash string
	// keys and services name the references, for the reason when the label is stale.
	keys, services []string
}

// planRefs decides, from the plan so far (services are planned in dependency order), how
// the service's references to other services' containers affect its containers.
func (p *planner) planRefs(spec *ServiceSpec) refsState {
	var st refsState
	keys := map[string]bool{}
	bySvc := map[string][]string{} // the keys naming each service, in key order
	for _, svc := range volumesFromServices(spec.Service) {
		keys["volumes_from"] = true
		bySvc[svc] = append(bySvc[svc], "volumes_from")
	}
	for _, ref := range namespaceRefs(spec.Service) {
		keys[ref.key] = true
		bySvc[ref.service] = appendOnce(bySvc[ref.service], ref.key)
	}
	if len(spec.Service.VolumesFrom) == 0 && len(keys) == 0 {
		return st
	}
	st.keys = slices.Sorted(maps.Keys(keys))
	st.services = referencedServices(spec.Service)
	for _, svc := range st.services {
		if p.recreated[svc] {
			st.forced = append(st.forced, strings.Join(bySvc[svc], ", ")+": service "+svc+" is recreated")
		}
	}
	res, err := resolveRefs(spec, func(svc string) (string, bool) {
		ours, _ := p.containersOf(svc)
		return firstByName(ours)
	})
	// Without a container to bind to, compose hashes the unbound service, which no
	// container it created carries: the container is replaced once the service is back.
	st.labelHash = res.labelHash
	if err != nil {
		st.labelHash = spec.ConfigHash
	}
	return st
}

// reasons are why container c must be recreated for its references, or nil.
func (st refsState) reasons(c *ObservedContainer) []string {
	if len(st.forced) > 0 {
		return st.forced
	}
	if st.labelHash != "" && c.Labels[LabelConfigHash] != st.labelHash {
		if len(st.services) == 0 {
			// Only container: entries, whose hash cannot go stale: the file changed.
			return nil
		}
		return []string{strings.Join(st.keys, ", ") + ": the container of service " + strings.Join(st.services, ", ") + " changed since this one was created"}
	}
	return nil
}

// resolveRefsLive binds spec's references to the app's containers as they are now, right
// before a container is created: an earlier step of the same Apply may have replaced the
// container pointed at.
func (r *applyRun) resolveRefsLive(ctx context.Context, spec *ServiceSpec) (resolvedRefs, error) {
	if len(referencedServices(spec.Service)) == 0 {
		return resolveRefs(spec, nil)
	}
	var lookupErr error
	// network_mode, ipc and pid often name the same service: one list each.
	seen := map[string]string{}
	res, err := resolveRefs(spec, func(svc string) (string, bool) {
		if id, ok := seen[svc]; ok {
			return id, id != ""
		}
		filters := client.Filters{}.
			Add("label", LabelProject+"="+r.desired.Project).
			Add("label", LabelService+"="+svc).
			Add("label", LabelApp+"="+r.app.Name)
		list, err := r.d.api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filters})
		if err != nil {
			lookupErr = fmt.Errorf("service %s: list containers of %s: %w", spec.Name, svc, err)
			return "", false
		}
		cs := make([]*ObservedContainer, 0, len(list.Items))
		for _, c := range list.Items {
			oc := &ObservedContainer{ID: c.ID, Labels: c.Labels}
			if len(c.Names) > 0 {
				oc.Name = strings.TrimPrefix(c.Names[0], "/")
			}
			if oc.Name != "" && !isTemporary(oc) {
				cs = append(cs, oc)
			}
		}
		id, ok := firstByName(cs)
		seen[svc] = id
		return id, ok
	})
	if lookupErr != nil {
		return resolvedRefs{}, lookupErr
	}
	return res, err
}
