package docker

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/distribution/reference"
	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers"
)

var _ drivers.ImageReporter = (*Driver)(nil)

// Images reports, per service of the app, the image its containers run: the reference as
// the compose file writes it and the registry digest the Engine recorded when it pulled it.
// An image only built here has no digest.
func (d *Driver) Images(ctx context.Context, app drivers.App) ([]drivers.Image, error) {
	res, err := d.api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: projectFilter(app.Project)})
	if err != nil {
		return nil, fmt.Errorf("app %s: list containers: %w", app.Name, err)
	}
	seen := map[string]bool{}
	var out []drivers.Image
	for _, c := range res.Items {
		svc := c.Labels[LabelService]
		if c.Labels[LabelApp] != app.Name || seen[svc] {
			continue
		}
		seen[svc] = true
		ref, err := d.configuredImage(ctx, c.ID)
		if err != nil {
			return nil, fmt.Errorf("app %s: service %s: %w", app.Name, svc, err)
		}
		img := drivers.Image{Resource: drivers.Ref{Kind: "service", Name: svc}, Ref: ref}
		if img.Digest, err = d.repoDigest(ctx, c.ImageID, ref); err != nil {
			return nil, fmt.Errorf("app %s: service %s: %w", app.Name, svc, err)
		}
		out = append(out, img)
	}
	slices.SortFunc(out, func(a, b drivers.Image) int { return cmp.Compare(a.Resource.Name, b.Resource.Name) })
	return out, nil
}

// configuredImage returns the image reference a container was created with, as the compose
// file wrote it. The container list cannot be used for it: once that reference no longer
// names the container's image locally (the tag was pulled again after it moved in the
// registry, or removed), the Engine lists the image ID instead, which names no repository,
// so no digest could be found and a promotion would copy the (moved) tag unpinned.
func (d *Driver) configuredImage(ctx context.Context, id string) (string, error) {
	res, err := d.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return "", fmt.Errorf("inspect container %s: %w", id, err)
	}
	if res.Container.Config == nil || res.Container.Config.Image == "" {
		return "", fmt.Errorf("container %s has no image in its config", id)
	}
	return res.Container.Config.Image, nil
}

// repoDigest returns the digest reference of image id in the repository ref names, from the
// Engine's record of its pulls; "" when none was recorded.
func (d *Driver) repoDigest(ctx context.Context, id, ref string) (string, error) {
	insp, err := d.api.ImageInspect(ctx, id)
	if err != nil {
		return "", fmt.Errorf("inspect image %s: %w", ref, err)
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", nil // a reference the Engine accepted but we cannot name: no digest claimed
	}
	for _, rd := range insp.RepoDigests {
		dn, err := reference.ParseNormalizedNamed(rd)
		if err == nil && dn.Name() == named.Name() {
			return reference.FamiliarString(dn), nil
		}
	}
	return "", nil
}
