package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

const (
	// cleanupTimeout bounds the removal of a container an Apply made and could not use. The
	// removal runs even when the Apply's context is cancelled: that is when it matters.
	cleanupTimeout = 30 * time.Second
	// swapTimeout bounds the swap of a recreate (stop and remove the old container, rename
	// and start the new one) beyond the service's stop grace period. Once begun, the swap
	// is not cancelled with the Apply: stopping halfway would leave the service down.
	swapTimeout = time.Minute
)

// recreateContainer replaces a container with one downtime window of one stop + start:
// the new container is created under a temporary name first, so a failing create leaves
// the old one running. The temporary name is new on every attempt, and the new container's
// labels name the container it replaces, so an attempt cut short is recognised and
// finished or removed by the next plan (see leftover.go) and never blocks a retry.
func (r *applyRun) recreateContainer(ctx context.Context, s Step) error {
	old := s.Existing
	if old == nil {
		return errors.New("recreate: no existing container")
	}
	if err := r.checkContainerOwned(ctx, old); err != nil {
		return err
	}
	name := containerName(r.desired.Project, s.Service, s.Number)
	tmp, err := temporaryName(name, old.ID)
	if err != nil {
		return err
	}
	id, err := r.create(ctx, s.Service, s.Number, tmp, map[string]string{LabelReplaces: old.ID, LabelTemporaryName: tmp})
	if err != nil {
		return err
	}
	if err := r.waitDependencies(ctx, s.Service); err != nil {
		return r.discard(ctx, id, tmp, err)
	}
	if err := ctx.Err(); err != nil {
		// Given up before the service went down: the old container keeps running.
		return r.discard(ctx, id, tmp, fmt.Errorf("recreate %s: %w", name, err))
	}
	return r.swap(ctx, s.Service, old, id, tmp, name)
}

// finishRecreate ends a recreate that an earlier Apply began: the replacement (Existing,
// created under its temporary name and never started) takes the name once the container it
// replaces (Replaced, stopped, or nil when gone) is removed.
func (r *applyRun) finishRecreate(ctx context.Context, s Step) error {
	repl, old := s.Existing, s.Replaced
	if repl == nil || s.Service == nil {
		return errors.New("finish recreate: no replacement")
	}
	if err := r.checkContainerOwned(ctx, repl); err != nil {
		return err
	}
	if old != nil {
		err := r.checkContainerOwned(ctx, old)
		switch {
		case cerrdefs.IsNotFound(err):
			old = nil // removed since the plan: nothing left to replace
		case err != nil:
			return err
		}
	}
	if err := r.waitDependencies(ctx, s.Service); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("finish recreate of %s: %w", repl.Name, err)
	}
	return r.swap(ctx, s.Service, old, repl.ID, repl.Name, containerName(r.desired.Project, s.Service, s.Number))
}

// swap is the window in which the service has no container of this replica running: the
// old container (when there is one) is stopped and removed, the new one renamed from tmp to
// name and started. It runs on a context the caller cannot cancel, bounded by swapTimeout
// plus the service's stop grace period, so an Apply cancelled meanwhile still leaves the
// service running; a failure before the old container is gone discards the new one.
func (r *applyRun) swap(ctx context.Context, spec *ServiceSpec, old *ObservedContainer, id, tmp, name string) error {
	timeout := swapTimeout
	if g := spec.Service.StopGracePeriod; g != nil {
		timeout += time.Duration(*g)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if old != nil {
		if err := r.stopRemove(ctx, old); err != nil {
			return r.discard(ctx, id, tmp, err)
		}
	}
	if _, err := r.d.api.ContainerRename(ctx, id, client.ContainerRenameOptions{NewName: name}); err != nil {
		// Left under its temporary name: the next plan finishes it.
		return fmt.Errorf("rename container %s to %s: %w", tmp, name, err)
	}
	return r.start(ctx, id, name)
}

// discard removes a container (by ID, or by a name unique to this Apply) created for a
// change that could not go on, so the next pass starts clean, and returns the original
// error. It runs on a context of its own: the caller's may be the reason it is needed. A
// removal that fails is left to the next plan, which recognises the container by label.
func (r *applyRun) discard(ctx context.Context, idOrName, name string, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_, err := r.d.api.ContainerRemove(ctx, idOrName, client.ContainerRemoveOptions{Force: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		r.log.Warn("remove unused container", "resource", name, "err", err)
	}
	return cause
}

// temporaryName is the name a replacement is created under: the final name, the old
// container's short ID and a random part, so that no two attempts share it.
func temporaryName(name, oldID string) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("temporary name for %s: %w", name, err)
	}
	return fmt.Sprintf("%s_%s_%s", name, shortID(oldID), hex.EncodeToString(b[:])), nil
}
