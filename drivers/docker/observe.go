package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	ctr "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// observe reads the project's live state: one container list, one network list and one
// volume list by project label, plus one image list when a service is built. Only when a desired network or volume is missing from the
// labelled set does it look it up by name (an external or hand-made resource), and only
// non-running containers whose restart policy the labels do not tell are inspected, plus
// those whose runtime settings must be read (see runtimeInspections).
func (d *Driver) observe(ctx context.Context, app, project string, desired *Desired) (*Observed, error) {
	inspect := d.runtimeInspections(app)
	containers, attached, err := d.listContainers(ctx, project, inspect)
	d.runtimeInspected(app, inspect, err == nil)
	if err != nil {
		return nil, err
	}
	networks, err := d.listNetworks(ctx, project, desired, attached)
	if err != nil {
		return nil, err
	}
	volumes, err := d.listVolumes(ctx, project, desired)
	if err != nil {
		return nil, err
	}
	images, err := d.observeImages(ctx, desired)
	if err != nil {
		return nil, err
	}
	return &Observed{Containers: containers, Networks: networks, Volumes: volumes, Images: images}, nil
}

// listContainers lists every container of the project, stopped ones included, sorted by
// name, and the names of the containers attached to each network (by network name), which
// the Engine's network list does not report. Containers in inspect are inspected too.
func (d *Driver) listContainers(ctx context.Context, project string, inspect inspectSet) ([]ObservedContainer, map[string][]string, error) {
	res, err := d.api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: projectFilter(project)})
	if err != nil {
		return nil, nil, fmt.Errorf("list containers of project %s: %w", project, err)
	}
	out := make([]ObservedContainer, 0, len(res.Items))
	attached := map[string][]string{}
	for _, c := range res.Items {
		oc := observedContainer(c)
		restartUnknown := oc.State != string(ctr.StateRunning) && oc.RestartPolicy == ""
		if restartUnknown || inspect.has(oc.ID) {
			if err := d.inspectContainer(ctx, &oc); err != nil {
				return nil, nil, err
			}
		}
		out = append(out, oc)
		if c.NetworkSettings != nil {
			for name := range c.NetworkSettings.Networks {
				attached[name] = append(attached[name], oc.Name)
			}
		}
	}
	slices.SortFunc(out, func(a, b ObservedContainer) int { return strings.Compare(a.Name, b.Name) })
	for _, names := range attached {
		slices.Sort(names)
	}
	return out, attached, nil
}

// inspectContainer reads what the list call does not give: the live restart policy, the
// exit code, and the runtime settings `docker update` changes.
func (d *Driver) inspectContainer(ctx context.Context, oc *ObservedContainer) error {
	res, err := d.api.ContainerInspect(ctx, oc.ID, client.ContainerInspectOptions{})
	if err != nil {
		return fmt.Errorf("inspect container %s: %w", oc.Name, err)
	}
	if hc := res.Container.HostConfig; hc != nil {
		// The label's policy, when there is one, stays: a policy changed by `docker update`
		// is runtime drift to heal, not a reason to leave an exited container stopped.
		if oc.RestartPolicy == "" {
			oc.RestartPolicy = string(hc.RestartPolicy.Name)
		}
		oc.Runtime = runtimeFromHostConfig(hc)
	}
	if st := res.Container.State; st != nil {
		oc.ExitCode = st.ExitCode
	}
	return nil
}

var (
	exitStatus   = regexp.MustCompile(`^Exited \((-?\d+)\)`)
	healthStatus = regexp.MustCompile(`\((healthy|unhealthy|health: starting)\)`)
)

// observedContainer reads what the list call gives: the exit code and health come from the
// status string on API 1.41 (the structured fields are newer), the restart policy from the
// desired-state label shipwatch wrote.
func observedContainer(c ctr.Summary) ObservedContainer {
	oc := ObservedContainer{ID: c.ID, Labels: c.Labels, State: string(c.State), Created: c.Created}
	if len(c.Names) > 0 {
		oc.Name = strings.TrimPrefix(c.Names[0], "/")
	}
	if m := exitStatus.FindStringSubmatch(c.Status); m != nil {
		oc.ExitCode, _ = strconv.Atoi(m[1])
	}
	switch {
	case c.Health != nil && c.Health.Status != ctr.NoHealthcheck && c.Health.Status != "":
		oc.Health = string(c.Health.Status)
	default:
		if m := healthStatus.FindStringSubmatch(c.Status); m != nil {
			oc.Health = strings.TrimPrefix(m[1], "health: ")
		}
	}
	oc.RestartPolicy = restartFromLabel(c.Labels[LabelDesired])
	return oc
}

// restartFromLabel reads the restart policy from the canonical service JSON; "" when the
// label is missing or unreadable (the caller then inspects).
func restartFromLabel(desired string) string {
	if desired == "" {
		return ""
	}
	var svc struct {
		Restart *string `json:"restart"`
	}
	if err := json.Unmarshal([]byte(desired), &svc); err != nil {
		return ""
	}
	if svc.Restart == nil || *svc.Restart == "" {
		return string(ctr.RestartPolicyDisabled)
	}
	name, _, _ := strings.Cut(*svc.Restart, ":")
	return name
}

// listNetworks returns the project's networks; attachments come from the container list,
// since the Engine's network list does not report them.
func (d *Driver) listNetworks(ctx context.Context, project string, desired *Desired, attached map[string][]string) ([]ObservedNetwork, error) {
	res, err := d.api.NetworkList(ctx, client.NetworkListOptions{Filters: projectFilter(project)})
	if err != nil {
		return nil, fmt.Errorf("list networks of project %s: %w", project, err)
	}
	byName := map[string]ObservedNetwork{}
	for _, n := range res.Items {
		byName[n.Name] = ObservedNetwork{ID: n.ID, Name: n.Name, Labels: n.Labels}
	}
	var missing []string
	if desired != nil {
		for _, n := range desired.Networks {
			if _, ok := byName[n.Name]; !ok {
				missing = append(missing, n.Name)
			}
		}
	}
	if len(missing) > 0 {
		// The name filter matches substrings; exact names are kept below.
		res, err := d.api.NetworkList(ctx, client.NetworkListOptions{Filters: client.Filters{}.Add("name", missing...)})
		if err != nil {
			return nil, fmt.Errorf("list networks %s: %w", strings.Join(missing, ", "), err)
		}
		for _, n := range res.Items {
			if slices.Contains(missing, n.Name) {
				byName[n.Name] = ObservedNetwork{ID: n.ID, Name: n.Name, Labels: n.Labels}
			}
		}
	}
	out := make([]ObservedNetwork, 0, len(byName))
	for _, n := range byName {
		n.Containers = attached[n.Name]
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b ObservedNetwork) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// listVolumes returns the project's volumes plus desired ones that exist without the label.
func (d *Driver) listVolumes(ctx context.Context, project string, desired *Desired) ([]ObservedVolume, error) {
	res, err := d.api.VolumeList(ctx, client.VolumeListOptions{Filters: projectFilter(project)})
	if err != nil {
		return nil, fmt.Errorf("list volumes of project %s: %w", project, err)
	}
	byName := map[string]ObservedVolume{}
	for _, v := range res.Items {
		byName[v.Name] = ObservedVolume{Name: v.Name, Labels: v.Labels}
	}
	var missing []string
	if desired != nil {
		for _, v := range desired.Volumes {
			if _, ok := byName[v.Name]; !ok {
				missing = append(missing, v.Name)
			}
		}
	}
	if len(missing) > 0 {
		res, err := d.api.VolumeList(ctx, client.VolumeListOptions{Filters: client.Filters{}.Add("name", missing...)})
		if err != nil {
			return nil, fmt.Errorf("list volumes %s: %w", strings.Join(missing, ", "), err)
		}
		for _, v := range res.Items {
			if slices.Contains(missing, v.Name) {
				byName[v.Name] = ObservedVolume{Name: v.Name, Labels: v.Labels}
			}
		}
	}
	out := make([]ObservedVolume, 0, len(byName))
	for _, v := range byName {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b ObservedVolume) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// inspectSet is the containers one observation inspects for runtime settings.
type inspectSet struct {
	all bool
	ids map[string]bool
}

func (s inspectSet) has(id string) bool { return s.all || s.ids[id] }

// runtimeInspections says which containers of app the next observation inspects, and
// takes the Watch's marks so that an update seen while it runs is kept for the next one.
//
// The trade-off: `docker update` changes nothing ContainerList reports, and an inspect per
// container per pass would make a no-op reconcile of 50 services cost 53 Engine reads
// instead of 3. So every container is inspected on the app's first Plan (a daemon that
// was down, a one-shot `shipwatch diff`, a broken event stream: updates may have been
// missed) and afterwards only those the Watch saw an `update` event for. A driver whose
// Watch is not running for the app therefore sees `docker update` only on its first Plan.
func (d *Driver) runtimeInspections(app string) inspectSet {
	d.runtimeMu.Lock()
	defer d.runtimeMu.Unlock()
	s := inspectSet{all: !d.planned[app], ids: d.updated[app]}
	delete(d.updated, app)
	return s
}

// runtimeInspected records the outcome of an observation: after success the app needs no
// full inspection again; after a failure the marks taken are put back.
func (d *Driver) runtimeInspected(app string, s inspectSet, ok bool) {
	d.runtimeMu.Lock()
	defer d.runtimeMu.Unlock()
	if ok {
		if d.planned == nil {
			d.planned = map[string]bool{}
		}
		d.planned[app] = true
		return
	}
	for id := range s.ids {
		d.markUpdatedLocked(app, id)
	}
}

// markUpdated records that a container of app was changed by `docker update`.
func (d *Driver) markUpdated(app, id string) {
	d.runtimeMu.Lock()
	defer d.runtimeMu.Unlock()
	d.markUpdatedLocked(app, id)
}

func (d *Driver) markUpdatedLocked(app, id string) {
	if d.updated == nil {
		d.updated = map[string]map[string]bool{}
	}
	if d.updated[app] == nil {
		d.updated[app] = map[string]bool{}
	}
	d.updated[app][id] = true
}

// forgetRuntime makes the next Plan of app inspect every container again: its event
// stream broke, so updates may have gone unseen.
func (d *Driver) forgetRuntime(app string) {
	d.runtimeMu.Lock()
	defer d.runtimeMu.Unlock()
	delete(d.planned, app)
}
