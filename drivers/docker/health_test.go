package docker

import (
	"os"
	"path/filepath"
	"testing"

	ctr "github.com/moby/moby/api/types/container"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/manifests"
)

func TestObservedContainerReadsStatusString(t *testing.T) {
	for _, tc := range []struct {
		status, state, desired string
		exit                   int
		health, restart        string
	}{
		{"Up 3 seconds (healthy)", "running", `{"restart":"always"}`, 0, "healthy", "always"},
		{"Up 1 second (health: starting)", "running", "", 0, "starting", ""},
		{"Up 2 minutes (unhealthy)", "running", `{}`, 0, "unhealthy", "no"},
		{"Exited (137) 5 seconds ago", "exited", `{"restart":"on-failure:3"}`, 137, "", "on-failure"},
		{"Exited (0) About a minute ago", "exited", `not json`, 0, "", ""},
	} {
		c := observedContainer(ctr.Summary{ID: "id", Names: []string{"/p-web-1"}, State: ctr.ContainerState(tc.state),
			Status: tc.status, Labels: map[string]string{LabelDesired: tc.desired}})
		if c.Name != "p-web-1" || c.ExitCode != tc.exit || c.Health != tc.health || c.RestartPolicy != tc.restart {
			t.Errorf("%q %q: got name %s exit %d health %q restart %q", tc.status, tc.desired, c.Name, c.ExitCode, c.Health, c.RestartPolicy)
		}
	}
}

func TestContainerHealth(t *testing.T) {
	for _, tc := range []struct {
		c    ObservedContainer
		want drivers.HealthStatus
	}{
		{ObservedContainer{State: "running"}, drivers.HealthHealthy},
		{ObservedContainer{State: "running", Health: "healthy"}, drivers.HealthHealthy},
		{ObservedContainer{State: "running", Health: "starting"}, drivers.HealthProgressing},
		{ObservedContainer{State: "running", Health: "unhealthy"}, drivers.HealthDegraded},
		{ObservedContainer{State: "exited", ExitCode: 0, RestartPolicy: "no"}, drivers.HealthHealthy},
		{ObservedContainer{State: "exited", ExitCode: 0, RestartPolicy: "always"}, drivers.HealthDegraded},
		{ObservedContainer{State: "exited", ExitCode: 1, RestartPolicy: "no"}, drivers.HealthDegraded},
		{ObservedContainer{State: "restarting"}, drivers.HealthDegraded},
		{ObservedContainer{State: "dead"}, drivers.HealthDegraded},
		{ObservedContainer{State: "created"}, drivers.HealthProgressing},
	} {
		if got, _ := containerHealth(tc.c); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.c, got, tc.want)
		}
	}
}

func TestDependencyMet(t *testing.T) {
	healthy := ObservedContainer{Name: "a", State: "running", Health: "healthy"}
	starting := ObservedContainer{Name: "b", State: "running", Health: "starting"}
	for _, tc := range []struct {
		name    string
		cs      []ObservedContainer
		cond    string
		done    bool
		wantErr bool
	}{
		{"none yet", nil, "service_healthy", false, false},
		{"all healthy", []ObservedContainer{healthy}, "service_healthy", true, false},
		{"one starting", []ObservedContainer{healthy, starting}, "service_healthy", false, false},
		{"unhealthy", []ObservedContainer{{Name: "c", State: "running", Health: "unhealthy"}}, "service_healthy", false, true},
		{"no healthcheck", []ObservedContainer{{Name: "c", State: "running"}}, "service_healthy", false, true},
		{"exited while waiting for health", []ObservedContainer{{Name: "c", State: "exited"}}, "service_healthy", false, true},
		{"completed", []ObservedContainer{{Name: "c", State: "exited"}}, "service_completed_successfully", true, false},
		{"still running", []ObservedContainer{healthy}, "service_completed_successfully", false, false},
		{"failed", []ObservedContainer{{Name: "c", State: "exited", ExitCode: 2}}, "service_completed_successfully", false, true},
	} {
		done, err := dependencyMet(tc.cs, tc.cond)
		if done != tc.done || (err != nil) != tc.wantErr {
			t.Errorf("%s: done %t err %v", tc.name, done, err)
		}
	}
}

func TestCheckOwned(t *testing.T) {
	if err := checkOwned("container", "c", "a", map[string]string{LabelApp: "a"}); err != nil {
		t.Error(err)
	}
	for _, labels := range []map[string]string{nil, {LabelApp: "b"}, {LabelApp: ""}} {
		if err := checkOwned("container", "c", "a", labels); err == nil {
			t.Errorf("%v: owned", labels)
		}
	}
	if err := checkOwned("container", "c", "", map[string]string{LabelApp: ""}); err == nil {
		t.Error("empty app name owns unlabelled resources")
	}
}

func TestMaterialiseCopiesReadOnlyOnce(t *testing.T) {
	repo := t.TempDir()
	files := t.TempDir()
	t.Cleanup(func() { _ = removeTree(files) })
	if err := os.MkdirAll(filepath.Join(repo, "conf", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "conf", "sub", "a.txt"), []byte("A"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "one.txt"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	mf := []MaterialisedFile{
		{Source: manifests.RepoFile{Path: filepath.Join(repo, "conf"), Rel: "conf", Dir: true}, Target: filepath.Join(files, "d1", "conf")},
		{Source: manifests.RepoFile{Path: filepath.Join(repo, "one.txt"), Rel: "one.txt"}, Target: filepath.Join(files, "d2", "one.txt")},
	}
	if err := materialise(mf); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(files, "d1", "conf", "sub", "a.txt"))
	if err != nil || string(got) != "A" {
		t.Fatalf("copied dir file: %q %v", got, err)
	}
	st, err := os.Stat(filepath.Join(files, "d2", "one.txt"))
	if err != nil || st.Mode().Perm() != 0o444 {
		t.Fatalf("copied file mode: %v %v", st, err)
	}
	// An existing target is kept: its path names its content.
	if err := os.WriteFile(filepath.Join(repo, "one.txt"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := materialise(mf); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(files, "d2", "one.txt")); string(got) != "1" {
		t.Errorf("existing target rewritten: %q", got)
	}
	// Symlinks could leave the checkout: refused.
	if err := os.Symlink("/etc/passwd", filepath.Join(repo, "link")); err != nil {
		t.Fatal(err)
	}
	bad := []MaterialisedFile{{Source: manifests.RepoFile{Path: repo, Rel: ".", Dir: true}, Target: filepath.Join(files, "d3", "all")}}
	if err := materialise(bad); err == nil {
		t.Error("symlink copied")
	}
	if _, err := os.Lstat(filepath.Join(files, "d3", "all")); err == nil {
		t.Error("partial copy left at the target")
	}
}
