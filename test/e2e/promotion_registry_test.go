package e2e

import (
	"context"
	"encoding/base64"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/internal/testimage"
)

// variantImage is a second test image: the same program with another text, so its layer,
// and so its digest, differ from image's.
const variantImage = "shipwatch-e2e-variant:v1"

// buildVariant builds variantImage once per machine (the tag is the cache key).
func buildVariant(t *testing.T) {
	t.Helper()
	prog := strings.Replace(testimage.Program, `"one-shot exiting with"`, `"one-shot (variant) exiting with"`, 1)
	if prog == testimage.Program {
		t.Fatal("the variant program is the same as testimage.Program: update buildVariant")
	}
	testimage.Build(t.Context(), t, engine, variantImage, prog)
}

// startRegistry runs a real OCI registry (go-containerregistry's) on a loopback port of this
// process until the test ends and returns its host:port. The Engine treats 127.0.0.0/8
// registries as insecure, so it pushes and pulls over plain HTTP.
func startRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// pushImage tags the local image as ref, pushes it through the Engine and removes the tag
// again, so that a stage naming ref really pulls it; it returns the digest reference the
// registry gave the image (ref's repository @sha256:...). The Engine's references to the
// registry's images are removed when the test ends (the images stay: other tags hold them).
func pushImage(t *testing.T, local, ref string) string {
	t.Helper()
	ctx := t.Context()
	if _, err := engine.ImageTag(ctx, client.ImageTagOptions{Source: local, Target: ref}); err != nil {
		t.Fatalf("tag %s as %s: %v", local, ref, err)
	}
	untag(t, ref)
	resp, err := engine.ImagePush(ctx, ref, client.ImagePushOptions{RegistryAuth: base64.StdEncoding.EncodeToString([]byte("{}"))})
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	if err := resp.Wait(ctx); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	digest := repoDigest(t, ref, ref)
	if digest == "" {
		t.Fatalf("the Engine recorded no digest for %s after pushing it", ref)
	}
	removeRef(t, ref)
	untag(t, digest)
	return digest
}

// repoDigest returns the digest reference of the image id (a reference or an image ID) in
// the repository of ref, as the Engine recorded it; "" when none is.
func repoDigest(t *testing.T, id, ref string) string {
	t.Helper()
	insp, err := engine.ImageInspect(t.Context(), id)
	if err != nil {
		t.Fatalf("inspect image %s: %v", id, err)
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		t.Fatalf("parse %s: %v", ref, err)
	}
	for _, rd := range insp.RepoDigests {
		if d, err := reference.ParseNormalizedNamed(rd); err == nil && d.Name() == named.Name() {
			return reference.FamiliarString(d)
		}
	}
	return ""
}

// imageID is the local ID of an image reference.
func imageID(t *testing.T, ref string) string {
	t.Helper()
	insp, err := engine.ImageInspect(t.Context(), ref)
	if err != nil {
		t.Fatalf("inspect image %s: %v", ref, err)
	}
	return insp.ID
}

// removeRef removes one reference (tag or digest) of a local image, not the image.
func removeRef(t *testing.T, ref string) {
	t.Helper()
	if _, err := engine.ImageRemove(t.Context(), ref, client.ImageRemoveOptions{}); err != nil {
		t.Fatalf("remove the reference %s: %v", ref, err)
	}
}

// untag removes ref from the Engine when the test ends, if it is there then.
func untag(t *testing.T, ref string) {
	t.Helper()
	base := context.WithoutCancel(t.Context())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(base, 30*time.Second)
		defer cancel()
		_, _ = engine.ImageRemove(ctx, ref, client.ImageRemoveOptions{})
	})
}
