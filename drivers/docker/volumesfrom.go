package docker

import (
	"fmt"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
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
