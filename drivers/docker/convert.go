package docker

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	ctr "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// createInput is everything needed to turn one replica of a service into an Engine create
// request.
type createInput struct {
	desired *Desired
	spec    *ServiceSpec
	number  int
	name    string // the container name to create under (a temporary one when recreating)
	imageID string
	// refs are the service's volumes_from and network_mode/ipc/pid "service:x" bound to
	// containers (see resolveRefs); refs.labelHash, when set, is the config-hash label
	// instead of the service's ConfigHash.
	refs resolvedRefs
}

// endpoint is a network a container joins after creation: API 1.41 accepts only one
// endpoint in the create call, so the others are connected before the first start.
type endpoint struct {
	network  string
	settings *network.EndpointSettings
}

// containerName is the name compose gives replica n of a service.
func containerName(project string, s *ServiceSpec, n int) string {
	if s.Service.ContainerName != "" {
		return s.Service.ContainerName
	}
	return fmt.Sprintf("%s-%s-%d", project, s.Name, n)
}

// createOptions converts a compose service to the Engine's create request plus the extra
// networks to connect before starting.
func createOptions(in createInput) (client.ContainerCreateOptions, []endpoint, error) {
	s := in.spec.Service
	cfg, err := containerConfig(in)
	if err != nil {
		return client.ContainerCreateOptions{}, nil, err
	}
	host, err := hostConfig(in)
	if err != nil {
		return client.ContainerCreateOptions{}, nil, err
	}
	if err := addPorts(s, cfg, host); err != nil {
		return client.ContainerCreateOptions{}, nil, err
	}
	netCfg, extra, err := networking(in, host)
	if err != nil {
		return client.ContainerCreateOptions{}, nil, err
	}
	return client.ContainerCreateOptions{
		Name:             in.name,
		Config:           cfg,
		HostConfig:       host,
		NetworkingConfig: netCfg,
	}, extra, nil
}

func containerConfig(in createInput) (*ctr.Config, error) {
	s := in.spec.Service
	cfg := &ctr.Config{
		Image:      in.spec.Image(),
		Hostname:   s.Hostname,
		Domainname: s.DomainName,
		User:       s.User,
		WorkingDir: s.WorkingDir,
		StopSignal: s.StopSignal,
		Tty:        s.Tty,
		OpenStdin:  s.StdinOpen,
		Env:        environment(s.Environment),
		Labels:     containerLabels(in),
	}
	// nil means "use the image's", an empty non-nil list means "reset": keep the distinction.
	if s.Command != nil {
		cfg.Cmd = []string(s.Command)
	}
	if s.Entrypoint != nil {
		cfg.Entrypoint = []string(s.Entrypoint)
	}
	if s.StopGracePeriod != nil {
		secs := int(time.Duration(*s.StopGracePeriod).Seconds())
		cfg.StopTimeout = &secs
	}
	cfg.Healthcheck = healthcheck(s.HealthCheck)
	return cfg, nil
}

// environment renders the resolved environment sorted by key; unset variables (nil values)
// are left out, as compose does.
func environment(env types.MappingWithEquals) []string {
	keys := slices.Sorted(maps.Keys(env))
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if v := env[k]; v != nil {
			out = append(out, k+"="+*v)
		}
	}
	return out
}

func healthcheck(h *types.HealthCheckConfig) *ctr.HealthConfig {
	if h == nil {
		return nil
	}
	if h.Disable {
		return &ctr.HealthConfig{Test: []string{"NONE"}}
	}
	hc := &ctr.HealthConfig{Test: []string(h.Test)}
	dur := func(d *types.Duration) time.Duration {
		if d == nil {
			return 0
		}
		return time.Duration(*d)
	}
	hc.Interval = dur(h.Interval)
	hc.Timeout = dur(h.Timeout)
	hc.StartPeriod = dur(h.StartPeriod)
	hc.StartInterval = dur(h.StartInterval)
	if h.Retries != nil {
		hc.Retries = int(*h.Retries)
	}
	return hc
}

// containerLabels are the user's labels plus compose's and shipwatch's own; ours win so a
// user label cannot forge ownership.
func containerLabels(in createInput) map[string]string {
	s := in.spec.Service
	labels := make(map[string]string, len(s.Labels)+len(s.CustomLabels)+16)
	maps.Copy(labels, s.Labels)
	maps.Copy(labels, s.CustomLabels)
	maps.Copy(labels, map[string]string{
		LabelProject:    in.desired.Project,
		LabelService:    in.spec.Name,
		LabelConfigHash: cmp.Or(in.refs.labelHash, in.spec.ConfigHash),
		LabelNumber:     strconv.Itoa(in.number),
		LabelOneoff:     "False",
		LabelImage:      in.imageID,
		LabelDependsOn:  dependsOnLabel(s.DependsOn),
		LabelVersion:    ComposeVersion,
		LabelApp:        in.desired.App,
		LabelRevision:   in.desired.Revision,
		LabelSpecHash:   in.spec.SpecHash,
		LabelDesired:    string(in.spec.Canonical),
	})
	if in.spec.Build != nil {
		labels[LabelBuildDigest] = in.spec.Build.Digest
	}
	return labels
}

// dependsOnLabel renders depends_on the way compose does: "name:condition:restart", sorted.
func dependsOnLabel(deps types.DependsOnConfig) string {
	names := slices.Sorted(maps.Keys(deps))
	parts := make([]string, 0, len(names))
	for _, n := range names {
		d := deps[n]
		parts = append(parts, fmt.Sprintf("%s:%s:%t", n, d.Condition, d.Restart))
	}
	return strings.Join(parts, ",")
}

func hostConfig(in createInput) (*ctr.HostConfig, error) {
	s := in.spec.Service
	restart, err := restartPolicy(s.Restart)
	if err != nil {
		return nil, err
	}
	h := &ctr.HostConfig{
		RestartPolicy:  restart,
		CapAdd:         s.CapAdd,
		CapDrop:        s.CapDrop,
		Init:           s.Init,
		Privileged:     s.Privileged,
		ReadonlyRootfs: s.ReadOnly,
		SecurityOpt:    s.SecurityOpt,
		ShmSize:        int64(s.ShmSize),
		Sysctls:        map[string]string(s.Sysctls),
		ExtraHosts:     s.ExtraHosts.AsList(":"),
		VolumesFrom:    in.refs.volumesFrom,
	}
	if h.IpcMode, err = namespaceMode[ctr.IpcMode](in, "ipc", s.Ipc); err != nil {
		return nil, err
	}
	if h.PidMode, err = namespaceMode[ctr.PidMode](in, "pid", s.Pid); err != nil {
		return nil, err
	}
	slices.Sort(h.ExtraHosts)
	setResources(s, &h.Resources)
	if s.Logging != nil {
		h.LogConfig = ctr.LogConfig{Type: s.Logging.Driver, Config: map[string]string(s.Logging.Options)}
	}
	for _, d := range s.DNS {
		addr, err := netip.ParseAddr(d)
		if err != nil {
			return nil, fmt.Errorf("service %s: dns %q: %w", in.spec.Name, d, err)
		}
		h.DNS = append(h.DNS, addr)
	}
	for _, name := range slices.Sorted(maps.Keys(s.Ulimits)) {
		u := s.Ulimits[name]
		soft, hard := int64(u.Soft), int64(u.Hard)
		if u.Single != 0 {
			soft, hard = int64(u.Single), int64(u.Single)
		}
		h.Ulimits = append(h.Ulimits, &ctr.Ulimit{Name: name, Soft: soft, Hard: hard})
	}
	for _, t := range s.Tmpfs {
		if h.Tmpfs == nil {
			h.Tmpfs = map[string]string{}
		}
		path, opts, _ := strings.Cut(t, ":")
		h.Tmpfs[path] = opts
	}
	if err := addVolumes(in, h); err != nil {
		return nil, err
	}
	return h, nil
}

// setResources maps the service-level limits, then deploy.resources over them, as compose
// does outside swarm (the loader already refused distinct values for the same limit).
// CPUs are multiplied in float32, like compose: float64 would give 300000011 nano-CPUs for
// "0.3" where compose gives 300000000. A CPU reservation is swarm-only: compose hashes it
// and the Engine never sees it, and so it is here.
func setResources(s types.ServiceConfig, r *ctr.Resources) {
	r.Memory = int64(s.MemLimit)
	r.MemoryReservation = int64(s.MemReservation)
	r.NanoCPUs = int64(s.CPUS * 1e9)
	if s.PidsLimit != 0 {
		limit := s.PidsLimit
		r.PidsLimit = &limit
	}
	if s.Deploy == nil {
		return
	}
	if l := s.Deploy.Resources.Limits; l != nil {
		if l.MemoryBytes != 0 {
			r.Memory = int64(l.MemoryBytes)
		}
		if l.NanoCPUs != 0 {
			r.NanoCPUs = int64(l.NanoCPUs * 1e9)
		}
		if l.Pids > 0 {
			limit := l.Pids
			r.PidsLimit = &limit
		}
	}
	if res := s.Deploy.Resources.Reservations; res != nil && res.MemoryBytes != 0 {
		r.MemoryReservation = int64(res.MemoryBytes)
	}
}

func restartPolicy(s string) (ctr.RestartPolicy, error) {
	if s == "" {
		return ctr.RestartPolicy{Name: ctr.RestartPolicyDisabled}, nil
	}
	name, count, hasCount := strings.Cut(s, ":")
	p := ctr.RestartPolicy{Name: ctr.RestartPolicyMode(name)}
	switch p.Name {
	case ctr.RestartPolicyDisabled, ctr.RestartPolicyAlways, ctr.RestartPolicyUnlessStopped:
	case ctr.RestartPolicyOnFailure:
		if hasCount {
			n, err := strconv.Atoi(count)
			if err != nil {
				return p, fmt.Errorf("restart %q: %w", s, err)
			}
			p.MaximumRetryCount = n
		}
	default:
		return p, fmt.Errorf("restart %q: unknown policy", s)
	}
	return p, nil
}

// addVolumes turns compose volumes into binds (so the Engine creates a missing host path,
// like compose) and mounts for named, anonymous and tmpfs volumes.
func addVolumes(in createInput, h *ctr.HostConfig) error {
	for _, v := range in.spec.Service.Volumes {
		switch v.Type {
		case types.VolumeTypeBind:
			opts := []string{"rw"}
			if v.ReadOnly {
				opts[0] = "ro"
			}
			if v.Bind != nil && v.Bind.Propagation != "" {
				opts = append(opts, v.Bind.Propagation)
			}
			if v.Bind != nil && v.Bind.SELinux != "" {
				opts = append(opts, v.Bind.SELinux)
			}
			h.Binds = append(h.Binds, v.Source+":"+v.Target+":"+strings.Join(opts, ","))
		case types.VolumeTypeVolume:
			m := mount.Mount{Type: mount.TypeVolume, Source: volumeName(in.desired, v.Source), Target: v.Target, ReadOnly: v.ReadOnly}
			if v.Volume != nil && (v.Volume.NoCopy || v.Volume.Subpath != "") {
				m.VolumeOptions = &mount.VolumeOptions{NoCopy: v.Volume.NoCopy, Subpath: v.Volume.Subpath}
			}
			h.Mounts = append(h.Mounts, m)
		case types.VolumeTypeTmpfs:
			m := mount.Mount{Type: mount.TypeTmpfs, Target: v.Target, ReadOnly: v.ReadOnly}
			if v.Tmpfs != nil {
				m.TmpfsOptions = &mount.TmpfsOptions{SizeBytes: int64(v.Tmpfs.Size)}
				if v.Tmpfs.Mode != 0 {
					m.TmpfsOptions.Mode = fileMode(v.Tmpfs.Mode)
				}
			}
			h.Mounts = append(h.Mounts, m)
		default:
			return fmt.Errorf("service %s: volume %s: type %q is not supported", in.spec.Name, v.Target, v.Type)
		}
	}
	return nil
}

// volumeName maps a project volume key to its Engine name; other sources (external names,
// empty for anonymous volumes) pass through.
func volumeName(d *Desired, key string) string {
	for _, v := range d.Volumes {
		if v.Key == key {
			return v.Name
		}
	}
	return key
}

func addPorts(s types.ServiceConfig, cfg *ctr.Config, h *ctr.HostConfig) error {
	for _, p := range s.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = "tcp"
		}
		port, err := network.ParsePort(fmt.Sprintf("%d/%s", p.Target, proto))
		if err != nil {
			return fmt.Errorf("service %s: port %d: %w", s.Name, p.Target, err)
		}
		binding := network.PortBinding{HostPort: p.Published}
		if p.HostIP != "" {
			ip, err := netip.ParseAddr(p.HostIP)
			if err != nil {
				return fmt.Errorf("service %s: port %d host_ip: %w", s.Name, p.Target, err)
			}
			binding.HostIP = ip
		}
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = network.PortSet{}
			h.PortBindings = network.PortMap{}
		}
		cfg.ExposedPorts[port] = struct{}{}
		h.PortBindings[port] = append(h.PortBindings[port], binding)
	}
	for _, e := range s.Expose {
		if !strings.Contains(e, "/") {
			e += "/tcp"
		}
		pr, err := network.ParsePortRange(e)
		if err != nil {
			return fmt.Errorf("service %s: expose %q: %w", s.Name, e, err)
		}
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = network.PortSet{}
		}
		for port := range pr.All() {
			cfg.ExposedPorts[port] = struct{}{}
		}
	}
	return nil
}

// networking sets the network mode and the first endpoint; the rest are returned to be
// connected before the first start.
func networking(in createInput, h *ctr.HostConfig) (*network.NetworkingConfig, []endpoint, error) {
	s := in.spec.Service
	if s.NetworkMode != "" {
		mode, err := namespaceMode[ctr.NetworkMode](in, "network_mode", s.NetworkMode)
		h.NetworkMode = mode
		return nil, nil, err
	}
	keys := slices.Collect(maps.Keys(s.Networks))
	// compose attaches the highest priority network first, ties by name.
	slices.SortFunc(keys, func(a, b string) int {
		pa, pb := priority(s.Networks[a]), priority(s.Networks[b])
		if pa != pb {
			return pb - pa
		}
		return strings.Compare(a, b)
	})
	var eps []endpoint
	for _, key := range keys {
		ep, err := endpointSettings(in, key, s.Networks[key])
		if err != nil {
			return nil, nil, err
		}
		eps = append(eps, ep)
	}
	if len(eps) == 0 {
		return nil, nil, nil
	}
	h.NetworkMode = ctr.NetworkMode(eps[0].network)
	cfg := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{eps[0].network: eps[0].settings}}
	return cfg, eps[1:], nil
}

func priority(n *types.ServiceNetworkConfig) int {
	if n == nil {
		return 0
	}
	return n.Priority
}

func endpointSettings(in createInput, key string, n *types.ServiceNetworkConfig) (endpoint, error) {
	name := key
	for _, ns := range in.desired.Networks {
		if ns.Key == key {
			name = ns.Name
		}
	}
	es := &network.EndpointSettings{}
	if n.ServiceNameAliasEnabled() {
		es.Aliases = append(es.Aliases, in.spec.Name)
	}
	if n == nil {
		return endpoint{network: name, settings: es}, nil
	}
	es.Aliases = append(es.Aliases, n.Aliases...)
	es.DriverOpts = map[string]string(n.DriverOpts)
	es.GwPriority = n.GatewayPriority
	if n.Ipv4Address != "" || n.Ipv6Address != "" {
		es.IPAMConfig = &network.EndpointIPAMConfig{}
		for _, a := range []struct {
			s   string
			dst *netip.Addr
		}{{n.Ipv4Address, &es.IPAMConfig.IPv4Address}, {n.Ipv6Address, &es.IPAMConfig.IPv6Address}} {
			if a.s == "" {
				continue
			}
			addr, err := netip.ParseAddr(a.s)
			if err != nil {
				return endpoint{}, fmt.Errorf("service %s: network %s address %q: %w", in.spec.Name, key, a.s, err)
			}
			*a.dst = addr
		}
	}
	return endpoint{network: name, settings: es}, nil
}

// namespaceMode is the Engine's value for a namespace key, "service:x" bound to the
// container in.refs names.
func namespaceMode[M ~string](in createInput, key, value string) (M, error) {
	mode, err := in.refs.mode(key, value)
	if err != nil {
		return "", fmt.Errorf("service %s: %w", in.spec.Name, err)
	}
	return M(mode), nil
}

func fileMode(m uint32) os.FileMode { return os.FileMode(m) }
