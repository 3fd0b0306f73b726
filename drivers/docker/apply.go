package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers"
)

// Apply executes the plan's steps in order. Steps that prune are skipped unless
// opts.Prune is set; their changes come back with Skipped. On error the change set holds
// the changes finished before the failing one.
func (d *Driver) Apply(ctx context.Context, plan *drivers.Plan, opts drivers.ApplyOptions) (drivers.ChangeSet, error) {
	payload, ok := plan.Payload.(*Payload)
	if !ok || payload == nil || payload.Desired == nil {
		return nil, fmt.Errorf("app %s: apply: plan was not made by the docker driver", plan.App.Name)
	}
	r := &applyRun{
		d:        d,
		app:      plan.App,
		desired:  payload.Desired,
		opts:     opts,
		log:      d.log.With("app", plan.App.Name, "revision", plan.App.Revision),
		imageIDs: map[string]string{},
		depsOK:   map[string]bool{},
	}
	return r.run(ctx, plan.Changes, payload.Steps)
}

// applyRun is the state of one Apply call.
type applyRun struct {
	d        *Driver
	app      drivers.App
	desired  *Desired
	opts     drivers.ApplyOptions
	log      *slog.Logger
	imageIDs map[string]string // image reference -> ID, inspected once per Apply
	depsOK   map[string]bool   // dependencies already waited for
}

func (r *applyRun) run(ctx context.Context, changes drivers.ChangeSet, steps []Step) (drivers.ChangeSet, error) {
	last := map[int]int{} // change index -> index of its last step
	skippedAll := map[int]bool{}
	for i, s := range steps {
		if s.Change < 0 || s.Change >= len(changes) {
			return nil, fmt.Errorf("app %s: apply: step %d refers to change %d of %d", r.app.Name, i, s.Change, len(changes))
		}
		last[s.Change] = i
		skippedAll[s.Change] = true
	}
	for _, s := range steps {
		if !s.Prune || r.opts.Prune {
			skippedAll[s.Change] = false
		}
	}
	var done drivers.ChangeSet
	started := map[int]bool{}
	for i, s := range steps {
		change := changes[s.Change]
		change.Skipped = skippedAll[s.Change]
		if !started[s.Change] {
			started[s.Change] = true
			r.progress(drivers.Progress{Change: change})
		}
		var err error
		if !s.Prune || r.opts.Prune {
			r.log.Info("apply step", "resource", change.Ref.String(), "action", string(s.Kind))
			err = r.step(ctx, s)
		}
		if err != nil {
			r.progress(drivers.Progress{Change: change, Done: true, Err: err})
			return done, fmt.Errorf("app %s: %s %s: %w", r.app.Name, change.Action, change.Ref, err)
		}
		if last[s.Change] == i {
			r.progress(drivers.Progress{Change: change, Done: true})
			done = append(done, change)
		}
	}
	return done, nil
}

func (r *applyRun) progress(p drivers.Progress) {
	if r.opts.Progress != nil {
		r.opts.Progress(p)
	}
}

func (r *applyRun) step(ctx context.Context, s Step) error {
	switch s.Kind {
	case StepCreateNetwork:
		return r.createNetwork(ctx, s.Network)
	case StepRemoveNetwork:
		return r.removeNetwork(ctx, s.ExistingNetwork)
	case StepCreateVolume:
		return r.createVolume(ctx, s.Volume)
	case StepBuildImage:
		return r.buildImage(ctx, s.Build)
	case StepCreateContainer:
		return r.createContainer(ctx, s)
	case StepRecreateContainer:
		return r.recreateContainer(ctx, s)
	case StepFinishRecreate:
		return r.finishRecreate(ctx, s)
	case StepStartContainer:
		return r.startContainer(ctx, s)
	case StepUpdateContainer:
		return r.updateContainer(ctx, s)
	case StepRemoveContainer:
		return r.removeContainer(ctx, s.Existing)
	default:
		return fmt.Errorf("unknown step %q", s.Kind)
	}
}

// ownLabels are the labels every resource shipwatch creates carries, on top of the user's.
func (r *applyRun) ownLabels(user map[string]string, extra map[string]string) map[string]string {
	labels := maps.Clone(user)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, extra)
	labels[LabelProject] = r.desired.Project
	labels[LabelVersion] = ComposeVersion
	labels[LabelApp] = r.app.Name
	return labels
}

func (r *applyRun) createNetwork(ctx context.Context, spec *NetworkSpec) error {
	if spec == nil {
		return errors.New("create network: no spec")
	}
	cfg := spec.Config
	ipam, err := ipamConfig(cfg)
	if err != nil {
		return fmt.Errorf("network %s: %w", spec.Name, err)
	}
	user := maps.Clone(map[string]string(cfg.Labels))
	if user == nil {
		user = map[string]string{}
	}
	maps.Copy(user, cfg.CustomLabels)
	_, err = r.d.api.NetworkCreate(ctx, spec.Name, client.NetworkCreateOptions{
		Driver:     cfg.Driver,
		Options:    map[string]string(cfg.DriverOpts),
		IPAM:       ipam,
		Internal:   cfg.Internal,
		Attachable: cfg.Attachable,
		EnableIPv4: cfg.EnableIPv4,
		EnableIPv6: cfg.EnableIPv6,
		Labels:     r.ownLabels(user, map[string]string{LabelNetwork: spec.Key, LabelConfigHash: spec.Hash}),
	})
	if err != nil {
		return fmt.Errorf("create network %s: %w", spec.Name, err)
	}
	return nil
}

func ipamConfig(cfg types.NetworkConfig) (*network.IPAM, error) {
	if cfg.Ipam.Driver == "" && len(cfg.Ipam.Config) == 0 && len(cfg.Ipam.Options) == 0 {
		return nil, nil
	}
	ipam := &network.IPAM{Driver: cfg.Ipam.Driver, Options: map[string]string(cfg.Ipam.Options)}
	for _, pool := range cfg.Ipam.Config {
		var c network.IPAMConfig
		var err error
		if pool.Subnet != "" {
			if c.Subnet, err = netip.ParsePrefix(pool.Subnet); err != nil {
				return nil, fmt.Errorf("ipam subnet %q: %w", pool.Subnet, err)
			}
		}
		if pool.IPRange != "" {
			if c.IPRange, err = netip.ParsePrefix(pool.IPRange); err != nil {
				return nil, fmt.Errorf("ipam ip_range %q: %w", pool.IPRange, err)
			}
		}
		if pool.Gateway != "" {
			if c.Gateway, err = netip.ParseAddr(pool.Gateway); err != nil {
				return nil, fmt.Errorf("ipam gateway %q: %w", pool.Gateway, err)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(pool.AuxiliaryAddresses)) {
			a, err := netip.ParseAddr(pool.AuxiliaryAddresses[k])
			if err != nil {
				return nil, fmt.Errorf("ipam aux_addresses %s: %w", k, err)
			}
			if c.AuxAddress == nil {
				c.AuxAddress = map[string]netip.Addr{}
			}
			c.AuxAddress[k] = a
		}
		ipam.Config = append(ipam.Config, c)
	}
	return ipam, nil
}

func (r *applyRun) removeNetwork(ctx context.Context, live *ObservedNetwork) error {
	if live == nil {
		return errors.New("remove network: no network")
	}
	res, err := r.d.api.NetworkInspect(ctx, live.ID, client.NetworkInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect network %s: %w", live.Name, err)
	}
	if err := checkOwned("network", live.Name, r.app.Name, res.Network.Labels); err != nil {
		return err
	}
	if _, err := r.d.api.NetworkRemove(ctx, live.ID, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove network %s: %w", live.Name, err)
	}
	return nil
}

func (r *applyRun) createVolume(ctx context.Context, spec *VolumeSpec) error {
	if spec == nil {
		return errors.New("create volume: no spec")
	}
	cfg := spec.Config
	user := maps.Clone(map[string]string(cfg.Labels))
	if user == nil {
		user = map[string]string{}
	}
	maps.Copy(user, cfg.CustomLabels)
	_, err := r.d.api.VolumeCreate(ctx, client.VolumeCreateOptions{
		Name:       spec.Name,
		Driver:     cfg.Driver,
		DriverOpts: map[string]string(cfg.DriverOpts),
		Labels:     r.ownLabels(user, map[string]string{LabelVolume: spec.Key, LabelConfigHash: spec.Hash}),
	})
	if err != nil {
		return fmt.Errorf("create volume %s: %w", spec.Name, err)
	}
	return nil
}

// imageID returns the ID of a service's image, pulling it only when it is missing and the
// pull policy allows: a present image is never pulled, so deploys need no registry. A
// built image is never pulled.
func (r *applyRun) imageID(ctx context.Context, spec *ServiceSpec) (string, error) {
	ref := spec.Image()
	if id, ok := r.imageIDs[ref]; ok {
		return id, nil
	}
	res, err := r.d.api.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		if spec.Build != nil {
			// Removed since the plan built it or found it: the next pass builds it again.
			return "", fmt.Errorf("service %s: built image %s was removed before it was used", spec.Name, ref)
		}
		if spec.Service.PullPolicy == "never" {
			return "", fmt.Errorf("service %s: image %s: %w (pull_policy: never)", spec.Name, ref, ErrImageNotFound)
		}
		r.log.Info("pull image", "resource", "service/"+spec.Name)
		if err := r.pull(ctx, ref); err != nil {
			if cerrdefs.IsNotFound(err) || cerrdefs.IsUnauthorized(err) || cerrdefs.IsPermissionDenied(err) {
				return "", fmt.Errorf("service %s: image %s: %w: pull: %w", spec.Name, ref, ErrImageNotFound, err)
			}
			return "", fmt.Errorf("service %s: image %s: %w: %w", spec.Name, ref, ErrImagePull, err)
		}
		res, err = r.d.api.ImageInspect(ctx, ref)
	}
	if err != nil {
		return "", fmt.Errorf("service %s: inspect image %s: %w", spec.Name, ref, err)
	}
	r.imageIDs[ref] = res.ID
	return res.ID, nil
}

func (r *applyRun) pull(ctx context.Context, ref string) error {
	resp, err := r.d.api.ImagePull(ctx, ref, client.ImagePullOptions{})
	if err != nil {
		return err
	}
	defer resp.Close()
	return resp.Wait(ctx)
}

// createContainer creates and starts one new replica.
func (r *applyRun) createContainer(ctx context.Context, s Step) error {
	name := containerName(r.desired.Project, s.Service, s.Number)
	id, err := r.create(ctx, s.Service, s.Number, name, nil)
	if err != nil {
		return err
	}
	if err := r.waitDependencies(ctx, s.Service); err != nil {
		return err
	}
	return r.start(ctx, id, name)
}

func (r *applyRun) startContainer(ctx context.Context, s Step) error {
	id, name := "", containerName(r.desired.Project, s.Service, s.Number)
	if s.Existing != nil {
		id, name = s.Existing.ID, s.Existing.Name
	} else {
		id = name
	}
	if s.Service != nil {
		if err := r.waitDependencies(ctx, s.Service); err != nil {
			return err
		}
	}
	return r.start(ctx, id, name)
}

// updateContainer gives a container back its desired runtime settings in place. The
// request is recomputed from the step's service and the inspected values rather than
// stored in the plan, so it only ever carries what compose sets.
func (r *applyRun) updateContainer(ctx context.Context, s Step) error {
	c := s.Existing
	if c == nil || c.Runtime == nil || s.Service == nil {
		return errors.New("update container: no inspected container")
	}
	want, err := desiredRuntime(s.Service.Service)
	if err != nil {
		return fmt.Errorf("service %s: %w", s.Service.Name, err)
	}
	drift := compareRuntime(want, *c.Runtime)
	if len(drift.Unsettable) > 0 {
		return fmt.Errorf("update container %s: cannot unset %v in place", c.Name, drift.Unsettable)
	}
	// No ownership re-check: the container is addressed by ID, whose labels cannot change,
	// and the planner only updates the app's own containers.
	if _, err := r.d.api.ContainerUpdate(ctx, c.ID, drift.Update); err != nil {
		return fmt.Errorf("update container %s: %w", c.Name, err)
	}
	return nil
}

func (r *applyRun) removeContainer(ctx context.Context, c *ObservedContainer) error {
	if c == nil {
		return errors.New("remove container: no container")
	}
	if err := r.checkContainerOwned(ctx, c); err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil
		}
		return err
	}
	return r.stopRemove(ctx, c)
}

// checkContainerOwned re-reads the container's labels right before it is replaced or
// deleted: the plan may be old, and the name may have been taken over.
func (r *applyRun) checkContainerOwned(ctx context.Context, c *ObservedContainer) error {
	res, err := r.d.api.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
	if err != nil {
		return fmt.Errorf("inspect container %s: %w", c.Name, err)
	}
	var labels map[string]string
	if res.Container.Config != nil {
		labels = res.Container.Config.Labels
	}
	return checkOwned("container", c.Name, r.app.Name, labels)
}

// stopRemove stops a container with its own stop timeout (set from stop_grace_period when
// it was created) and removes it.
func (r *applyRun) stopRemove(ctx context.Context, c *ObservedContainer) error {
	if _, err := r.d.api.ContainerStop(ctx, c.ID, client.ContainerStopOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("stop container %s: %w", c.Name, err)
	}
	if _, err := r.d.api.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove container %s: %w", c.Name, err)
	}
	return nil
}

// create makes a container for replica number of spec under name, joined to all its
// networks, and returns its ID. labels are added to the container's own (a replacement's).
func (r *applyRun) create(ctx context.Context, spec *ServiceSpec, number int, name string, labels map[string]string) (string, error) {
	if spec == nil {
		return "", errors.New("create container: no service")
	}
	imageID, err := r.imageID(ctx, spec)
	if err != nil {
		return "", err
	}
	if err := materialise(spec.Files); err != nil {
		return "", fmt.Errorf("service %s: %w", spec.Name, err)
	}
	refs, err := r.resolveRefsLive(ctx, spec)
	if err != nil {
		return "", err
	}
	opts, extra, err := createOptions(createInput{desired: r.desired, spec: spec, number: number, name: name, imageID: imageID, refs: refs})
	if err != nil {
		return "", err
	}
	// Only a recreate marks a replacement: a user label must not make a container look
	// like the leftover of one (the planner would remove it on every pass).
	delete(opts.Config.Labels, LabelReplaces)
	delete(opts.Config.Labels, LabelTemporaryName)
	maps.Copy(opts.Config.Labels, labels)
	res, err := r.d.api.ContainerCreate(ctx, opts)
	if err != nil {
		err = fmt.Errorf("create container %s: %w", name, err)
		if labels[LabelTemporaryName] == name {
			// The Engine may have created it before the call failed (a cancelled request,
			// a cut connection). The name is this attempt's alone, so it can go by name.
			return "", r.discard(ctx, name, name, err)
		}
		return "", err
	}
	for _, ep := range extra {
		_, err := r.d.api.NetworkConnect(ctx, ep.network, client.NetworkConnectOptions{Container: res.ID, EndpointConfig: ep.settings})
		if err != nil {
			return "", r.discard(ctx, res.ID, name, fmt.Errorf("connect container %s to network %s: %w", name, ep.network, err))
		}
	}
	return res.ID, nil
}

func (r *applyRun) start(ctx context.Context, id, name string) error {
	if _, err := r.d.api.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("start container %s: %w", name, err)
	}
	return nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// materialise copies repo files to their content-addressed targets. A target that exists
// already holds the same content (its path embeds the digest), so it is left as is. Copies
// go to a temporary name first and are renamed, so a container never sees half a file,
// and are made read-only: containers must not write back into what Git describes.
func materialise(files []MaterialisedFile) error {
	for _, f := range files {
		if _, err := os.Lstat(f.Target); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(f.Target), 0o755); err != nil {
			return fmt.Errorf("materialise %s: %w", f.Source.Rel, err)
		}
		tmp := fmt.Sprintf("%s.tmp-%d-%d", f.Target, os.Getpid(), time.Now().UnixNano())
		if err := copyTree(f.Source.Path, tmp); err != nil {
			_ = removeTree(tmp)
			return fmt.Errorf("materialise %s: %w", f.Source.Rel, err)
		}
		if err := os.Rename(tmp, f.Target); err != nil {
			_ = removeTree(tmp)
			if _, statErr := os.Lstat(f.Target); statErr == nil {
				continue // another apply put the same content there first
			}
			return fmt.Errorf("materialise %s: %w", f.Source.Rel, err)
		}
	}
	return nil
}

// copyTree copies a file or directory read-only; symlinks are refused, since they could
// point out of the checkout.
func copyTree(src, dst string) error {
	var dirs []string
	err := filepath.WalkDir(src, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case e.Type()&fs.ModeSymlink != 0:
			return fmt.Errorf("%s is a symlink", path)
		case e.IsDir():
			dirs = append(dirs, target)
			return os.MkdirAll(target, 0o755)
		case e.Type().IsRegular():
			return copyFile(path, target)
		default:
			return fmt.Errorf("%s is not a regular file", path)
		}
	})
	if err != nil {
		return err
	}
	// Directories last and deepest first: a read-only directory refuses new entries.
	for _, d := range slices.Backward(dirs) {
		if err := os.Chmod(d, 0o555); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// removeTree removes a partial copy, making its directories writable first.
func removeTree(path string) error {
	_ = filepath.WalkDir(path, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
	return os.RemoveAll(path)
}
