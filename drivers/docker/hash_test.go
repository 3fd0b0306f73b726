package docker

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// richService is the fixture compose v5 pins its hash golden values on (see its
// pkg/compose/hash_test.go); matching them proves our bytes are compose's.
func richService() types.ServiceConfig {
	s := types.ServiceConfig{Name: "web", Restart: types.RestartPolicyAlways, Deploy: &types.DeployConfig{Replicas: ptr(3)}}
	s.Image = "nginx:latest"
	s.Command = types.ShellCommand{"nginx", "-g", "daemon off;"}
	s.User = "nobody"
	s.Tty = true
	s.StdinOpen = true
	s.Environment = types.MappingWithEquals{"A": ptr("1"), "B": nil}
	s.Labels = types.Labels{"com.example": "v"}
	s.Annotations = types.Mapping{"note": "x"}
	s.CapAdd = []string{"NET_ADMIN"}
	s.ExtraHosts = types.HostsList{"alpha": []string{"10.0.0.1"}}
	s.Ports = []types.ServicePortConfig{{Target: 80, Published: "8080", Protocol: "tcp"}}
	s.HealthCheck = &types.HealthCheckConfig{Test: types.HealthCheckTest{"CMD", "true"}}
	s.Volumes = []types.ServiceVolumeConfig{{Type: types.VolumeTypeVolume, Source: "data", Target: "/data"}}
	s.Networks = map[string]*types.ServiceNetworkConfig{"default": nil}
	return s
}

func TestHashesMatchCompose(t *testing.T) {
	got, err := ServiceHash(richService())
	if err != nil {
		t.Fatal(err)
	}
	if want := "75bc312132c71fac4971d123202631b6978ac9d796336621af744d46611b42a2"; got != want {
		t.Errorf("service hash = %s, want compose's %s", got, want)
	}
	nw, err := networkHash(types.NetworkConfig{Name: "proj_default", Driver: "bridge"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "eeef29d8955b1d4e9382986e213c80789065d989d7a6d035163e0180159aaac0"; nw != want {
		t.Errorf("network hash = %s, want compose's %s", nw, want)
	}
	vol, err := volumeHash(types.VolumeConfig{Name: "proj_data"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "dd3953f0ff20e0f9044086b0483690f2cc2b4653e57aaaa5fa8ea2735da61000"; vol != want {
		t.Errorf("volume hash = %s, want compose's %s", vol, want)
	}
}

func TestServiceHashStableAcrossMapOrder(t *testing.T) {
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = "VAR_" + strconv.Itoa(i)
	}
	var first string
	for round := range 20 {
		rand.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		s := richService()
		s.Environment = types.MappingWithEquals{}
		s.Labels = types.Labels{}
		for _, k := range keys {
			s.Environment[k] = ptr("v-" + k)
			s.Labels["l."+k] = k
		}
		h, err := ServiceHash(s)
		if err != nil {
			t.Fatal(err)
		}
		if round == 0 {
			first = h
		} else if h != first {
			t.Fatalf("round %d: hash %s != %s", round, h, first)
		}
	}
}

func TestServiceHashIgnoresClearedFields(t *testing.T) {
	base, err := ServiceHash(richService())
	if err != nil {
		t.Fatal(err)
	}
	cleared := map[string]func(*types.ServiceConfig){
		"build":           func(s *types.ServiceConfig) { s.Build = &types.BuildConfig{Context: "."} },
		"pull_policy":     func(s *types.ServiceConfig) { s.PullPolicy = types.PullPolicyAlways },
		"scale":           func(s *types.ServiceConfig) { s.Scale = ptr(7) },
		"deploy.replicas": func(s *types.ServiceConfig) { s.Deploy.Replicas = ptr(9) },
		"depends_on":      func(s *types.ServiceConfig) { s.DependsOn = types.DependsOnConfig{"db": {Required: true}} },
		"profiles":        func(s *types.ServiceConfig) { s.Profiles = []string{"debug"} },
	}
	for name, mutate := range cleared {
		s := richService()
		mutate(&s)
		if h, err := ServiceHash(s); err != nil || h != base {
			t.Errorf("%s changed the hash (%s, %v)", name, h, err)
		}
	}
	counted := map[string]func(*types.ServiceConfig){
		"image":       func(s *types.ServiceConfig) { s.Image = "nginx:1.27" },
		"environment": func(s *types.ServiceConfig) { s.Environment["A"] = ptr("2") },
		"deploy.mode": func(s *types.ServiceConfig) { s.Deploy.Mode = "global" },
	}
	for name, mutate := range counted {
		s := richService()
		mutate(&s)
		if h, err := ServiceHash(s); err != nil || h == base {
			t.Errorf("%s did not change the hash (%v)", name, err)
		}
	}
}

func TestServiceHashLeavesInputAlone(t *testing.T) {
	s := richService()
	if _, err := ServiceHash(s); err != nil {
		t.Fatal(err)
	}
	if s.Deploy.Replicas == nil || *s.Deploy.Replicas != 3 {
		t.Fatal("ServiceHash cleared the caller's deploy.replicas")
	}
}

func TestPinKeyOrderAppendsUnknownKeysSorted(t *testing.T) {
	out, err := pinKeyOrder([]byte(`{"zz":2,"image":"x","aa":1,"profiles":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"profiles":[],"image":"x","aa":1,"zz":2}`; string(out) != want {
		t.Fatalf("got %s, want %s", out, want)
	}
}
