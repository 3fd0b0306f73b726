package docker

import (
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	ctr "github.com/moby/moby/api/types/container"
)

func TestSetResourcesLikeCompose(t *testing.T) {
	type want struct{ memory, reservation, nanoCPUs, pids int64 }
	deploy := func(limits, reservations *types.Resource) *types.DeployConfig {
		return &types.DeployConfig{Resources: types.Resources{Limits: limits, Reservations: reservations}}
	}
	cases := []struct {
		name string
		svc  types.ServiceConfig
		want want
	}{
		{"none", types.ServiceConfig{}, want{}},
		{"service level", types.ServiceConfig{ContainerSpec: types.ContainerSpec{
			MemLimit: 128 << 20, MemReservation: 64 << 20, CPUS: 1.5, PidsLimit: 100,
		}}, want{128 << 20, 64 << 20, 1_500_000_000, 100}},
		{"deploy.resources", types.ServiceConfig{Deploy: deploy(
			&types.Resource{MemoryBytes: 256 << 20, NanoCPUs: 0.5, Pids: 20},
			&types.Resource{MemoryBytes: 32 << 20, NanoCPUs: 0.25},
		)}, want{256 << 20, 32 << 20, 500_000_000, 20}},
		// compose multiplies in float32: 0.3 gives 300000000, float64 would give 300000011.
		{"cpus rounding", types.ServiceConfig{ContainerSpec: types.ContainerSpec{CPUS: 0.3}}, want{nanoCPUs: 300_000_000}},
		{"deploy cpus rounding", types.ServiceConfig{Deploy: deploy(&types.Resource{NanoCPUs: 2.7}, nil)}, want{nanoCPUs: 2_700_000_000}},
		// A deploy value set to zero leaves the service-level one, as in compose.
		{"deploy zero keeps service level", types.ServiceConfig{
			ContainerSpec: types.ContainerSpec{MemLimit: 64 << 20, PidsLimit: 7},
			Deploy:        deploy(&types.Resource{}, &types.Resource{}),
		}, want{memory: 64 << 20, pids: 7}},
		// A CPU reservation is swarm-only: hashed, never sent to the Engine.
		{"cpu reservation ignored", types.ServiceConfig{Deploy: deploy(nil, &types.Resource{NanoCPUs: 2})}, want{}},
		{"unlimited pids", types.ServiceConfig{ContainerSpec: types.ContainerSpec{PidsLimit: -1}}, want{pids: -1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r ctr.Resources
			setResources(tc.svc, &r)
			var pids int64
			if r.PidsLimit != nil {
				pids = *r.PidsLimit
			}
			got := want{r.Memory, r.MemoryReservation, r.NanoCPUs, pids}
			if got != tc.want {
				t.Fatalf("resources = %+v, want %+v", got, tc.want)
			}
			if (r.PidsLimit != nil) != (tc.want.pids != 0) {
				t.Fatalf("PidsLimit set = %v, want %v", r.PidsLimit != nil, tc.want.pids != 0)
			}
		})
	}
}
