// Package testproject removes what a test left on the Docker Engine, by compose project
// label only, so tests never touch containers that are not theirs.
package testproject

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/moby/moby/client"
)

// Remove force-removes every container (with its anonymous volumes), network and volume
// labelled com.docker.compose.project=project. It goes on past a failed removal and returns
// all failures joined.
func Remove(ctx context.Context, cli *client.Client, project string) error {
	filter := client.Filters{}.Add("label", "com.docker.compose.project="+project)
	var errs []error
	cs, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filter})
	if err != nil {
		return fmt.Errorf("list containers of %s: %w", project, err)
	}
	for _, c := range cs.Items {
		if _, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			errs = append(errs, fmt.Errorf("remove container %s: %w", c.ID, err))
		}
	}
	ns, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: filter})
	if err != nil {
		return fmt.Errorf("list networks of %s: %w", project, err)
	}
	for _, n := range ns.Items {
		if _, err := cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("remove network %s: %w", n.Name, err))
		}
	}
	vs, err := cli.VolumeList(ctx, client.VolumeListOptions{Filters: filter})
	if err != nil {
		return fmt.Errorf("list volumes of %s: %w", project, err)
	}
	for _, v := range vs.Items {
		if _, err := cli.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{Force: true}); err != nil {
			errs = append(errs, fmt.Errorf("remove volume %s: %w", v.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Unique returns a fresh compose project name with prefix ("swe2e") and registers Clean
// for it.
func Unique(t testing.TB, cli *client.Client, prefix string) string {
	t.Helper()
	p := prefix + "-" + strings.ToLower(rand.Text()[:8])
	Clean(t, cli, p)
	return p
}

// Containers maps each service of the project to the IDs of its running containers (all
// containers, also stopped ones, with all set).
func Containers(t testing.TB, cli *client.Client, project string, all bool) map[string][]string {
	t.Helper()
	f := client.Filters{}.Add("label", "com.docker.compose.project="+project)
	cs, err := cli.ContainerList(t.Context(), client.ContainerListOptions{All: all, Filters: f})
	if err != nil {
		t.Fatalf("list containers of %s: %v", project, err)
	}
	out := map[string][]string{}
	for _, c := range cs.Items {
		svc := c.Labels["com.docker.compose.service"]
		out[svc] = append(out[svc], c.ID)
	}
	return out
}
