package docker

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	ctr "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
)

func TestCreateOptionsConvertsSupportedKeys(t *testing.T) {
	grace := types.Duration(7 * time.Second)
	interval := types.Duration(2 * time.Second)
	retries := uint64(4)
	initOn := true
	val := "v"
	svc := types.ServiceConfig{
		Name:    "web",
		Restart: "on-failure:3",
		ContainerSpec: types.ContainerSpec{
			Image:           "img:1",
			Command:         types.ShellCommand{"-addr", ":9090"},
			Entrypoint:      types.ShellCommand{},
			Environment:     types.MappingWithEquals{"B": &val, "A": &val, "UNSET": nil},
			Labels:          types.Labels{"user": "x", LabelApp: "forged"},
			User:            "1000:1000",
			WorkingDir:      "/w",
			Hostname:        "h",
			StopSignal:      "SIGINT",
			StopGracePeriod: &grace,
			ReadOnly:        true,
			CapAdd:          []string{"NET_ADMIN"},
			CapDrop:         []string{"ALL"},
			Init:            &initOn,
			Tmpfs:           types.StringList{"/run:size=64k"},
			ExtraHosts:      types.HostsList{"db": {"10.0.0.2"}},
			DNS:             types.StringList{"1.1.1.1"},
			Logging:         &types.LoggingConfig{Driver: "json-file", Options: types.Options{"max-size": "1m"}},
			Ulimits:         map[string]*types.UlimitsConfig{"nofile": {Soft: 10, Hard: 20}, "nproc": {Single: 5}},
			Sysctls:         types.Mapping{"net.core.somaxconn": "1024"},
			Privileged:      true,
			SecurityOpt:     []string{"no-new-privileges"},
			ShmSize:         64 << 20,
			MemLimit:        128 << 20,
			CPUS:            0.5,
			PidsLimit:       100,
			Volumes: []types.ServiceVolumeConfig{
				{Type: types.VolumeTypeBind, Source: "/srv/conf", Target: "/conf", ReadOnly: true},
				{Type: types.VolumeTypeVolume, Source: "data", Target: "/data"},
				{Type: types.VolumeTypeTmpfs, Target: "/cache", Tmpfs: &types.ServiceVolumeTmpfs{Size: 1 << 20}},
			},
			Networks: map[string]*types.ServiceNetworkConfig{
				"front": {Aliases: []string{"www"}},
				"back":  {Priority: 10},
			},
		},
		WorkloadSpec: types.WorkloadSpec{
			Tty:       true,
			StdinOpen: true,
			Ports:     []types.ServicePortConfig{{Target: 8080, Published: "18080", HostIP: "127.0.0.1"}, {Target: 53, Protocol: "udp"}},
			Expose:    types.StringOrNumberList{"9000-9001"},
			DependsOn: types.DependsOnConfig{"db": {Condition: "service_healthy", Restart: true}},
		},
	}
	svc.HealthCheck = &types.HealthCheckConfig{Test: types.HealthCheckTest{"CMD", "/app", "-healthcheck"}, Interval: &interval, Retries: &retries}
	d := &Desired{Project: "p", App: "a", Revision: "r",
		Networks: []NetworkSpec{{Key: "front", Name: "p_front"}, {Key: "back", Name: "p_back"}},
		Volumes:  []VolumeSpec{{Key: "data", Name: "p_data"}},
	}
	spec := &ServiceSpec{Name: "web", ConfigHash: "ch", SpecHash: "sh", Canonical: []byte(`{"image":"img:1"}`), Service: svc}
	opts, extra, err := createOptions(createInput{desired: d, spec: spec, number: 2, name: "p-web-2", imageID: "sha256:abc"})
	if err != nil {
		t.Fatal(err)
	}
	c, h := opts.Config, opts.HostConfig
	if opts.Name != "p-web-2" || c.Image != "img:1" || !slices.Equal(c.Cmd, []string{"-addr", ":9090"}) || c.Entrypoint == nil || len(c.Entrypoint) != 0 {
		t.Errorf("image/command/entrypoint: %q %q %v %#v", opts.Name, c.Image, c.Cmd, c.Entrypoint)
	}
	if !slices.Equal(c.Env, []string{"A=v", "B=v"}) {
		t.Errorf("env %v", c.Env)
	}
	wantLabels := map[string]string{
		"user": "x", LabelApp: "a", LabelProject: "p", LabelService: "web", LabelNumber: "2", LabelOneoff: "False",
		LabelImage: "sha256:abc", LabelDependsOn: "db:service_healthy:true", LabelConfigHash: "ch", LabelSpecHash: "sh",
		LabelDesired: `{"image":"img:1"}`, LabelRevision: "r", LabelVersion: ComposeVersion,
	}
	for k, v := range wantLabels {
		if c.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
		}
	}
	if c.User != "1000:1000" || c.WorkingDir != "/w" || c.Hostname != "h" || c.StopSignal != "SIGINT" || *c.StopTimeout != 7 || !c.Tty || !c.OpenStdin {
		t.Errorf("config scalars: %+v", c)
	}
	if c.Healthcheck == nil || c.Healthcheck.Interval != 2*time.Second || c.Healthcheck.Retries != 4 || c.Healthcheck.Test[0] != "CMD" {
		t.Errorf("healthcheck %+v", c.Healthcheck)
	}
	if h.RestartPolicy != (ctr.RestartPolicy{Name: ctr.RestartPolicyOnFailure, MaximumRetryCount: 3}) {
		t.Errorf("restart %+v", h.RestartPolicy)
	}
	if !h.ReadonlyRootfs || !h.Privileged || !*h.Init || h.ShmSize != 64<<20 || h.Memory != 128<<20 || h.NanoCPUs != 5e8 || *h.PidsLimit != 100 {
		t.Errorf("host scalars: %+v", h)
	}
	if h.Tmpfs["/run"] != "size=64k" || h.ExtraHosts[0] != "db:10.0.0.2" || h.DNS[0] != netip.MustParseAddr("1.1.1.1") {
		t.Errorf("tmpfs/hosts/dns: %v %v %v", h.Tmpfs, h.ExtraHosts, h.DNS)
	}
	if h.LogConfig.Type != "json-file" || h.Sysctls["net.core.somaxconn"] != "1024" || len(h.Ulimits) != 2 || h.Ulimits[1].Soft != 5 || h.Ulimits[1].Hard != 5 {
		t.Errorf("logging/sysctls/ulimits: %+v %v %v", h.LogConfig, h.Sysctls, h.Ulimits)
	}
	if !slices.Equal(h.Binds, []string{"/srv/conf:/conf:ro"}) {
		t.Errorf("binds %v", h.Binds)
	}
	if len(h.Mounts) != 2 || h.Mounts[0].Source != "p_data" || h.Mounts[0].Type != mount.TypeVolume || h.Mounts[1].Type != mount.TypeTmpfs || h.Mounts[1].TmpfsOptions.SizeBytes != 1<<20 {
		t.Errorf("mounts %+v", h.Mounts)
	}
	p8080 := network.MustParsePort("8080/tcp")
	if b := h.PortBindings[p8080]; len(b) != 1 || b[0].HostPort != "18080" || b[0].HostIP != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("port bindings %v", h.PortBindings)
	}
	for _, p := range []string{"8080/tcp", "53/udp", "9000/tcp", "9001/tcp"} {
		if _, ok := c.ExposedPorts[network.MustParsePort(p)]; !ok {
			t.Errorf("port %s not exposed: %v", p, c.ExposedPorts)
		}
	}
	// back has the higher priority, so it is the create-time network; front joins after.
	if h.NetworkMode != "p_back" || opts.NetworkingConfig.EndpointsConfig["p_back"] == nil {
		t.Errorf("primary network %q %v", h.NetworkMode, opts.NetworkingConfig)
	}
	if len(extra) != 1 || extra[0].network != "p_front" || !slices.Equal(extra[0].settings.Aliases, []string{"web", "www"}) {
		t.Errorf("extra networks %+v", extra)
	}
}

func TestCreateOptionsNetworkModeAndErrors(t *testing.T) {
	d := &Desired{Project: "p"}
	spec := &ServiceSpec{Name: "x", Service: types.ServiceConfig{Name: "x", ContainerSpec: types.ContainerSpec{Image: "i", NetworkMode: "host"}}}
	opts, extra, err := createOptions(createInput{desired: d, spec: spec, number: 1, name: "p-x-1"})
	if err != nil || opts.HostConfig.NetworkMode != "host" || opts.NetworkingConfig != nil || extra != nil {
		t.Errorf("network_mode host: %v %v %v", opts.HostConfig.NetworkMode, opts.NetworkingConfig, err)
	}
	for _, bad := range []types.ServiceConfig{
		{Name: "x", Restart: "sometimes"},
		{Name: "x", ContainerSpec: types.ContainerSpec{DNS: types.StringList{"not-an-ip"}}},
		{Name: "x", ContainerSpec: types.ContainerSpec{Volumes: []types.ServiceVolumeConfig{{Type: "npipe", Target: "/x"}}}},
	} {
		spec.Service = bad
		if _, _, err := createOptions(createInput{desired: d, spec: spec, number: 1}); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

func TestContainerName(t *testing.T) {
	if got := containerName("p", &ServiceSpec{Name: "web"}, 3); got != "p-web-3" {
		t.Errorf("got %s", got)
	}
	s := &ServiceSpec{Name: "web", Service: types.ServiceConfig{ContainerName: "fixed"}}
	if got := containerName("p", s, 1); got != "fixed" {
		t.Errorf("got %s", got)
	}
}
