package docker

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	ctr "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers"
)

// movedTagEngine has one container of web.dev created from 127.0.0.1:5000/web:v1, a tag
// that has since moved to another image (or been removed) on this Engine: the Engine then
// lists the container with its image ID, and only inspect still tells the reference.
type movedTagEngine struct{ engine }

func (movedTagEngine) ContainerList(context.Context, client.ContainerListOptions) (client.ContainerListResult, error) {
	return client.ContainerListResult{Items: []ctr.Summary{{ID: "c1", Image: "sha256:aaaa", ImageID: "sha256:aaaa",
		Labels: map[string]string{LabelApp: "web.dev", LabelService: "web"}}}}, nil
}

func (movedTagEngine) ContainerInspect(context.Context, string, client.ContainerInspectOptions) (client.ContainerInspectResult, error) {
	var res client.ContainerInspectResult
	res.Container.Config = &ctr.Config{Image: "127.0.0.1:5000/web:v1"}
	return res, nil
}

func (movedTagEngine) ImageInspect(_ context.Context, id string, _ ...client.ImageInspectOption) (client.ImageInspectResult, error) {
	if id != "sha256:aaaa" {
		return client.ImageInspectResult{}, errNotExpected
	}
	return client.ImageInspectResult{InspectResponse: image.InspectResponse{ID: id,
		RepoDigests: []string{"other/web@" + digestC, "127.0.0.1:5000/web@" + digestB}}}, nil
}

var errNotExpected = errors.New("inspect of an unexpected image")

// A digest of 64 hex digits, as the reference grammar wants.
var (
	digestB = "sha256:" + strings.Repeat("b", 64)
	digestC = "sha256:" + strings.Repeat("c", 64)
)

// The image a service runs is reported by the reference its container was created with and
// that repository's digest, also after the tag moved: a promotion must pin what runs.
func TestImagesAfterTheTagMoved(t *testing.T) {
	d := &Driver{api: movedTagEngine{}, log: slog.New(slog.DiscardHandler)}
	got, err := d.Images(t.Context(), drivers.App{Name: "web.dev", Project: "web-dev"})
	if err != nil {
		t.Fatal(err)
	}
	want := []drivers.Image{{Resource: drivers.Ref{Kind: "service", Name: "web"}, Ref: "127.0.0.1:5000/web:v1",
		Digest: "127.0.0.1:5000/web@" + digestB}}
	if !slices.Equal(got, want) {
		t.Errorf("Images = %+v, want %+v", got, want)
	}
}
