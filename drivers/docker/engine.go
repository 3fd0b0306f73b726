package docker

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers"
)

// engine is the part of the Engine API the driver uses; *client.Client implements it.
// Keeping it small documents exactly which calls the driver makes.
type engine interface {
	Ping(ctx context.Context, options client.PingOptions) (client.PingResult, error)
	ContainerList(ctx context.Context, options client.ContainerListOptions) (client.ContainerListResult, error)
	ContainerInspect(ctx context.Context, id string, options client.ContainerInspectOptions) (client.ContainerInspectResult, error)
	ContainerCreate(ctx context.Context, options client.ContainerCreateOptions) (client.ContainerCreateResult, error)
	ContainerStart(ctx context.Context, id string, options client.ContainerStartOptions) (client.ContainerStartResult, error)
	ContainerStop(ctx context.Context, id string, options client.ContainerStopOptions) (client.ContainerStopResult, error)
	ContainerRemove(ctx context.Context, id string, options client.ContainerRemoveOptions) (client.ContainerRemoveResult, error)
	ContainerUpdate(ctx context.Context, id string, options client.ContainerUpdateOptions) (client.ContainerUpdateResult, error)
	ContainerRename(ctx context.Context, id string, options client.ContainerRenameOptions) (client.ContainerRenameResult, error)
	NetworkList(ctx context.Context, options client.NetworkListOptions) (client.NetworkListResult, error)
	NetworkInspect(ctx context.Context, id string, options client.NetworkInspectOptions) (client.NetworkInspectResult, error)
	NetworkCreate(ctx context.Context, name string, options client.NetworkCreateOptions) (client.NetworkCreateResult, error)
	NetworkConnect(ctx context.Context, id string, options client.NetworkConnectOptions) (client.NetworkConnectResult, error)
	NetworkRemove(ctx context.Context, id string, options client.NetworkRemoveOptions) (client.NetworkRemoveResult, error)
	VolumeList(ctx context.Context, options client.VolumeListOptions) (client.VolumeListResult, error)
	VolumeCreate(ctx context.Context, options client.VolumeCreateOptions) (client.VolumeCreateResult, error)
	ImageInspect(ctx context.Context, image string, options ...client.ImageInspectOption) (client.ImageInspectResult, error)
	ImageList(ctx context.Context, options client.ImageListOptions) (client.ImageListResult, error)
	ImageBuild(ctx context.Context, buildContext io.Reader, options client.ImageBuildOptions) (client.ImageBuildResult, error)
	ImagePull(ctx context.Context, ref string, options client.ImagePullOptions) (client.ImagePullResponse, error)
	Events(ctx context.Context, options client.EventsListOptions) client.EventsResult
}

// ErrImageNotFound means a service's image is not on the Engine and cannot be pulled (pull
// policy never, or the registry says it does not exist or may not be read): the manifests
// (or the operator) must change, retrying alone will not help. It wraps
// drivers.ErrInvalidSpec, so the reconciler stalls on the revision (and onFailure: rollback
// applies).
var ErrImageNotFound = fmt.Errorf("image not found: %w", drivers.ErrInvalidSpec)

// ErrImagePull means a pull failed for a reason that may pass (the registry unreachable or
// failing): retried with backoff.
var ErrImagePull = errors.New("image pull failed")

// ErrNotOwned means a resource about to be deleted does not carry the app's ownership
// label: the driver refuses to delete what it did not create for this app.
var ErrNotOwned = errors.New("not owned by this app")

// projectFilter selects the resources compose (and shipwatch) labelled with a project.
func projectFilter(project string) client.Filters {
	return client.Filters{}.Add("label", LabelProject+"="+project)
}

// checkOwned is the last guard before a delete: the live labels must name the app.
func checkOwned(kind, name, app string, labels map[string]string) error {
	if app == "" || labels[LabelApp] != app {
		return fmt.Errorf("delete %s %s: label %s=%q, want %q: %w", kind, name, LabelApp, labels[LabelApp], app, ErrNotOwned)
	}
	return nil
}
