package docker

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/distribution/reference"

	"github.com/shipwatch/shipwatch/drivers"
)

// ErrInvalidProject marks a project the Engine would refuse part-way through an apply (an
// image reference it cannot parse, one host port published twice). It is found before
// anything is created, so a revision never half-applies and then retries the Engine's
// error forever; it wraps drivers.ErrInvalidSpec, so the revision stalls.
var ErrInvalidProject = fmt.Errorf("invalid compose project (%w)", drivers.ErrInvalidSpec)

// checkImageRefs refuses image references the Engine cannot parse. A service with only a
// build section has its image named by the driver.
func checkImageRefs(p *types.Project) error {
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		img := p.Services[name].Image
		if img == "" {
			continue
		}
		if _, err := reference.ParseNormalizedNamed(img); err != nil {
			return fmt.Errorf("services.%s.image: %q: %v: %w", name, img, err, ErrInvalidProject)
		}
	}
	return nil
}

// binding is one fixed host port a service publishes.
type binding struct {
	service  string
	hostIP   string
	port     int
	protocol string
}

func (b binding) String() string { return strconv.Itoa(b.port) + "/" + b.protocol }

// overlaps reports whether two bindings want the same host port: the same port and
// protocol on the same address, or on all addresses for either of them.
func (b binding) overlaps(o binding) bool {
	return b.port == o.port && b.protocol == o.protocol &&
		(b.hostIP == o.hostIP || anyAddress(b.hostIP) || anyAddress(o.hostIP))
}

func anyAddress(ip string) bool { return ip == "" || ip == "0.0.0.0" || ip == "::" || ip == "[::]" }

// checkPortClashes refuses a project in which two containers would publish the same host
// port: two services, or two replicas of one service with a fixed port. The Engine would
// create the first and fail on the second. Ranges ("8000-8010:80") let the Engine pick a
// free port and are not checked.
func checkPortClashes(p *types.Project) error {
	var seen []binding
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		s := p.Services[name]
		for _, port := range s.Ports {
			n, err := strconv.Atoi(port.Published)
			if err != nil || n == 0 {
				continue // empty (a random port) or a range
			}
			b := binding{service: name, hostIP: port.HostIP, port: n, protocol: cmp.Or(strings.ToLower(port.Protocol), "tcp")}
			if n := s.GetScale(); n > 1 {
				return fmt.Errorf("services.%s.ports: host port %s is fixed but the service runs %d replicas: %w",
					name, b, n, ErrInvalidProject)
			}
			for _, other := range seen {
				if b.overlaps(other) {
					who := "service " + other.service
					if other.service == name {
						who = "the same service twice"
					}
					return fmt.Errorf("services.%s.ports: host port %s is also published by %s: %w", name, b, who, ErrInvalidProject)
				}
			}
			seen = append(seen, b)
		}
	}
	return nil
}
