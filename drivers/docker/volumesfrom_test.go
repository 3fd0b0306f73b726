package docker

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/shipwatch/shipwatch/drivers"
)

func TestParseVolumesFrom(t *testing.T) {
	ok := map[string]volumesFromRef{
		"db":                {service: "db"},
		"db:ro":             {service: "db", mode: "ro"},
		"db:rw":             {service: "db", mode: "rw"},
		"container:data":    {container: "data"},
		"container:data:rw": {container: "data", mode: "rw"},
		"container:data:ro": {container: "data", mode: "ro"},
	}
	for in, want := range ok {
		got, err := parseVolumesFrom(in)
		if err != nil || got != want {
			t.Errorf("parseVolumesFrom(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "db:z", "db:ro:x", "container:", "container", "container:data:ro,z", ":ro"} {
		if _, err := parseVolumesFrom(in); !errors.Is(err, ErrUnsupported) {
			t.Errorf("parseVolumesFrom(%q) err = %v, want ErrUnsupported", in, err)
		}
	}
}

func TestDesireVolumesFromChecks(t *testing.T) {
	cases := map[string]struct {
		entry, want string
	}{
		"unknown service": {"cache:ro", "service cache is not in the project"},
		"itself":          {"backup", "cannot share its own volumes"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := shopCompose()
			addBackup(c)
			b := c.Project.Services["backup"]
			b.VolumesFrom = []string{tc.entry}
			c.Project.Services["backup"] = b
			_, err := Desire(testApp, c, DesireOptions{FilesDir: testFilesDir, SecretKey: testSecretKey})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "backup") {
				t.Fatalf("err = %v, want one naming backup and %q", err, tc.want)
			}
		})
	}
}

// A project not loaded by compose-go may lack the implicit depends_on; the shared
// service must still be created first.
func TestDesireOrdersVolumesFromFirst(t *testing.T) {
	c := shopCompose()
	addBackup(c)
	b := c.Project.Services["backup"]
	b.DependsOn = nil
	b.VolumesFrom = []string{"web:ro"} // "backup" sorts before "web"
	c.Project.Services["backup"] = b
	names := serviceNames(mustDesire(t, c))
	if slices.Index(names, "web") > slices.Index(names, "backup") {
		t.Fatalf("order %v: backup must come after web", names)
	}
}

// The config hash of a service with volumes_from is that of the file as written, which is
// what `docker compose config --hash` prints (test/composecompat checks it against the CLI).
func TestVolumesFromConfigHashIsUnresolved(t *testing.T) {
	c := shopCompose()
	addBackup(c)
	spec := specOf(t, mustDesire(t, c), "backup")
	want, err := ServiceHash(c.Project.Services["backup"])
	if err != nil {
		t.Fatal(err)
	}
	if spec.ConfigHash != want {
		t.Fatalf("config hash %s, want %s", spec.ConfigHash, want)
	}
}

func TestResolveVolumesFrom(t *testing.T) {
	c := shopCompose()
	addBackup(c)
	b := c.Project.Services["backup"]
	b.VolumesFrom = []string{"db:ro", "api", "container:legacy:rw"}
	c.Project.Services["backup"] = b
	spec := specOf(t, mustDesire(t, c), "backup")
	containers := map[string][]*ObservedContainer{
		// compose picks the first by name, and so "-1" before "-10" before "-2".
		"db":  {{ID: "id-db-2", Name: "shop-db-2"}, {ID: "id-db-10", Name: "shop-db-10"}, {ID: "id-db-1", Name: "shop-db-1"}},
		"api": {{ID: "id-api-3", Name: "shop-api-3"}, {ID: "id-api-10", Name: "shop-api-10"}},
	}
	res, err := resolveRefs(spec, func(svc string) (string, bool) { return firstByName(containers[svc]) })
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"id-db-1:ro", "id-api-10", "legacy:rw"}; !slices.Equal(res.volumesFrom, want) {
		t.Errorf("host VolumesFrom = %v, want %v", res.volumesFrom, want)
	}
	// compose hashes the service with bare IDs and names: the mode is dropped there.
	bare := spec.Service
	bare.VolumesFrom = []string{"id-db-1", "id-api-10", "legacy"}
	want, err := ServiceHash(bare)
	if err != nil {
		t.Fatal(err)
	}
	if res.labelHash != want || res.labelHash == spec.ConfigHash {
		t.Errorf("label hash %s, want %s (and not the unresolved %s)", res.labelHash, want, spec.ConfigHash)
	}

	delete(containers, "db")
	_, err = resolveRefs(spec, func(svc string) (string, bool) { return firstByName(containers[svc]) })
	if err == nil || !strings.Contains(err.Error(), "service db has no container") {
		t.Fatalf("err = %v, want one saying db has no container", err)
	}
}

func TestCreateOptionsVolumesFrom(t *testing.T) {
	c := shopCompose()
	addBackup(c)
	d := mustDesire(t, c)
	spec := specOf(t, d, "backup")
	in := createInput{desired: d, spec: spec, number: 1, name: "shop-backup-1", imageID: "sha256:img",
		refs: resolvedRefs{volumesFrom: []string{"id-db-1:ro"}, labelHash: "resolved"}}
	opts, _, err := createOptions(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := opts.HostConfig.VolumesFrom; !slices.Equal(got, []string{"id-db-1:ro"}) {
		t.Errorf("VolumesFrom = %v", got)
	}
	if got := opts.Config.Labels[LabelConfigHash]; got != "resolved" {
		t.Errorf("config-hash label = %q, want the resolved hash", got)
	}
	if got := opts.Config.Labels[LabelSpecHash]; got != spec.SpecHash {
		t.Errorf("spec-hash label = %q, want %q", got, spec.SpecHash)
	}
	if got := opts.Config.Labels[LabelDependsOn]; got != "db:service_started:false" {
		t.Errorf("depends_on label = %q", got)
	}
}

func TestPlanVolumesFromCascade(t *testing.T) {
	c := shopCompose()
	addBackup(c)
	d := mustDesire(t, c)
	cases := map[string]refCase{
		"in sync": {action: drivers.ActionUnchanged},
		"shared container dead and recreated": {live: func(o *Observed) { liveContainer(o, "shop-db-1").State = "dead" },
			action: drivers.ActionRecreate, reasonPart: "volumes_from: service db is recreated"},
		"shared container missing": {live: func(o *Observed) {
			o.Containers = slices.DeleteFunc(o.Containers, func(c ObservedContainer) bool { return c.Name == "shop-db-1" })
		}, action: drivers.ActionRecreate, reasonPart: "volumes_from: the container of service db changed"},
		"shared container only restarted": {live: func(o *Observed) {
			c := liveContainer(o, "shop-db-1")
			c.State, c.ExitCode = "exited", 0
		}, action: drivers.ActionUnchanged},
	}
	runRefCases(t, d, "db", "backup", cases)
}

// A mode change is a config change of the dependent only.
func TestPlanVolumesFromModeChange(t *testing.T) {
	c := shopCompose()
	addBackup(c)
	o := observedFrom(mustDesire(t, c))
	b := c.Project.Services["backup"]
	b.VolumesFrom = []string{"db:rw"}
	c.Project.Services["backup"] = b
	p := BuildPlan(testApp, mustDesire(t, c), o)
	if got := planChange(t, p, "service/backup"); got.Action != drivers.ActionRecreate || !strings.Contains(got.Reason, "volumes_from") {
		t.Fatalf("service/backup = %s (%s)", got.Action, got.Reason)
	}
	if got := planChange(t, p, "service/db"); got.Action != drivers.ActionUnchanged {
		t.Fatalf("service/db = %s (%s)", got.Action, got.Reason)
	}
}
