package docker

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/shipwatch/shipwatch/drivers"
)

// Reasons shown to users for choices the planner makes on purpose.
const (
	reasonForeign       = "not managed by shipwatch; left alone"
	reasonForeignUsed   = "exists, not managed by shipwatch; used as is"
	reasonExternal      = "external: not created or removed by shipwatch"
	reasonGone          = "no longer in Git"
	reasonVolumeKept    = "no longer in Git; kept: shipwatch never deletes volumes"
	reasonVolumeChanged = "config changed in Git; volumes are never recreated (data): recreate it by hand"
)

// RefKindContainer is the Ref kind of a single container reported on its own: one with
// the project label that shipwatch does not own.
const RefKindContainer = "container"

// BuildPlan is pure: it compares desired (nil = remove everything the app owns) with
// observed and returns a plan whose Payload is a *Payload with the steps in execution
// order. It follows compose's semantics, with these deliberate choices:
//
//   - Only resources labelled with the app's name are changed or deleted. A container with
//     the project label but not ours is reported as an unchanged "container/<name>" change
//     and never touched; new replicas skip the numbers it uses so names do not clash.
//   - A service is recreated when its spec hash differs (the diff names the fields), when
//     a network it is attached to is recreated or had to be created, or when a container
//     is dead; it is updated when replicas differ (highest numbers removed first) or a
//     container that should run is not running (restart policy always or unless-stopped,
//     a non-zero exit, created or paused); an exit with code 0 under restart "no" or
//     "on-failure" is a completed one-shot and left alone.
//   - A container whose runtime settings were inspected (Runtime set) and differ from what
//     the service implies (`docker update` by hand: limits, restart policy) is updated in
//     place, keeping its ID; only when the Engine cannot give a value back (it reads 0 as
//     "unchanged", so a limit cannot be removed) is it recreated.
//   - A service with volumes_from or network_mode/ipc/pid "service:x" is recreated when a
//     service it points at is recreated, or when its config-hash label no longer names
//     that service's current container (compose binds the reference to a container ID
//     before hashing, and so does Apply), as `docker compose up` does: the new container
//     must share the new volumes or namespaces.
//   - A network whose hash changed is recreated: the containers attached to it are removed
//     first, then the network, and they are created again after it.
//   - Volumes are never deleted nor recreated: a volume gone from Git or changed in Git is
//     reported as unchanged with a reason saying so.
//   - External networks and volumes are only marked; whether they exist is Apply's problem.
//
// Changes are sorted by Ref.String() for stable display; Steps carry execution order:
// network teardowns, network and volume creations, image builds, services in dependency
// order, then pruned containers and pruned networks.
//
//   - An image of a service with a build section is built when it is missing or its build
//     digest label differs; the digest is in the spec hash of the services using it, so
//     exactly those are recreated, and an unchanged context builds nothing.
func BuildPlan(app drivers.App, desired *Desired, observed *Observed) *drivers.Plan {
	if desired == nil {
		desired = &Desired{Project: app.Project, App: app.Name, Revision: app.Revision}
	}
	if observed == nil {
		observed = &Observed{}
	}
	p := &planner{
		app:        app,
		desired:    desired,
		observed:   observed,
		netChanged: map[string]string{},
		recreated:  map[string]bool{},
	}
	p.planNetworks()
	p.planVolumes()
	p.planImages()
	for i := range desired.Services {
		p.planService(&desired.Services[i])
	}
	p.planOrphans()
	p.planForeign()
	return p.finish()
}

// planner accumulates changes and steps, one phase per list.
type planner struct {
	app      drivers.App
	desired  *Desired
	observed *Observed
	changes  []drivers.Change
	// netChanged maps the key of a network that is created or recreated to the word for it.
	netChanged map[string]string
	// recreated holds the services with a container replaced by this plan, for the
	// services that share volumes or namespaces with them.
	recreated map[string]bool

	teardownContainers, teardownNetworks []Step
	createNetworks, createVolumes        []Step
	builds                               []Step
	services                             []Step
	pruneContainers, pruneNetworks       []Step
}

func (p *planner) add(c drivers.Change) int {
	p.changes = append(p.changes, c)
	return len(p.changes) - 1
}

func (p *planner) ours(labels map[string]string) bool {
	return labels[LabelApp] == p.app.Name
}

func (p *planner) planNetworks() {
	wanted := make(map[string]bool, len(p.desired.Networks))
	for i := range p.desired.Networks {
		spec := &p.desired.Networks[i]
		wanted[spec.Name] = true
		ref := drivers.Ref{Kind: "network", Name: spec.Key}
		live := findNetwork(p.observed.Networks, spec.Name)
		switch {
		case bool(spec.Config.External):
			p.add(drivers.Change{Ref: ref, Action: drivers.ActionUnchanged, Reason: reasonExternal})
		case live == nil:
			idx := p.add(drivers.Change{Ref: ref, Action: drivers.ActionCreate, Reason: "missing"})
			p.createNetworks = append(p.createNetworks, Step{Kind: StepCreateNetwork, Change: idx, Network: spec})
			p.netChanged[spec.Key] = "created"
		case !p.ours(live.Labels):
			p.add(drivers.Change{Ref: ref, Action: drivers.ActionUnchanged, Reason: reasonForeignUsed})
		case hashChanged(live.Labels, spec.Hash):
			idx := p.add(drivers.Change{Ref: ref, Action: drivers.ActionRecreate, Reason: "config changed"})
			p.teardownNetworks = append(p.teardownNetworks, Step{Kind: StepRemoveNetwork, Change: idx, ExistingNetwork: live})
			p.createNetworks = append(p.createNetworks, Step{Kind: StepCreateNetwork, Change: idx, Network: spec})
			p.netChanged[spec.Key] = "recreated"
		default:
			p.add(drivers.Change{Ref: ref, Action: drivers.ActionUnchanged})
		}
	}
	for i := range p.observed.Networks {
		live := &p.observed.Networks[i]
		if wanted[live.Name] || !p.ours(live.Labels) {
			continue
		}
		ref := drivers.Ref{Kind: "network", Name: cmp.Or(live.Labels[LabelNetwork], live.Name)}
		idx := p.add(drivers.Change{Ref: ref, Action: drivers.ActionDelete, Reason: reasonGone})
		p.pruneNetworks = append(p.pruneNetworks, Step{Kind: StepRemoveNetwork, Change: idx, ExistingNetwork: live, Prune: true})
	}
}

func (p *planner) planVolumes() {
	wanted := make(map[string]bool, len(p.desired.Volumes))
	for i := range p.desired.Volumes {
		spec := &p.desired.Volumes[i]
		wanted[spec.Name] = true
		ref := drivers.Ref{Kind: "volume", Name: spec.Key}
		live := findVolume(p.observed.Volumes, spec.Name)
		switch {
		case bool(spec.Config.External):
			p.add(drivers.Change{Ref: ref, Action: drivers.ActionUnchanged, Reason: reasonExternal})
		case live == nil:
			idx := p.add(drivers.Change{Ref: ref, Action: drivers.ActionCreate, Reason: "missing"})
			p.createVolumes = append(p.createVolumes, Step{Kind: StepCreateVolume, Change: idx, Volume: spec})
		case !p.ours(live.Labels):
			p.add(drivers.Change{Ref: ref, Action: drivers.ActionUnchanged, Reason: reasonForeignUsed})
		case hashChanged(live.Labels, spec.Hash):
			p.add(drivers.Change{Ref: ref, Action: drivers.ActionUnchanged, Reason: reasonVolumeChanged})
		default:
			p.add(drivers.Change{Ref: ref, Action: drivers.ActionUnchanged})
		}
	}
	for _, live := range p.observed.Volumes {
		if wanted[live.Name] || !p.ours(live.Labels) {
			continue
		}
		ref := drivers.Ref{Kind: "volume", Name: cmp.Or(live.Labels[LabelVolume], live.Name)}
		p.add(drivers.Change{Ref: ref, Action: drivers.ActionUnchanged, Reason: reasonVolumeKept})
	}
}

// hashChanged is false for a resource without a hash label: compose leaves those alone.
func hashChanged(labels map[string]string, want string) bool {
	got, ok := labels[LabelConfigHash]
	return ok && got != want
}

func findNetwork(nets []ObservedNetwork, name string) *ObservedNetwork {
	for i := range nets {
		if nets[i].Name == name {
			return &nets[i]
		}
	}
	return nil
}

func findVolume(vols []ObservedVolume, name string) *ObservedVolume {
	for i := range vols {
		if vols[i].Name == name {
			return &vols[i]
		}
	}
	return nil
}

// planOrphans deletes the containers of services that are no longer in Git, as prune
// steps: dependents before their dependencies (from compose's depends_on label), and
// within a service highest numbers first, as `docker compose down` would.
func (p *planner) planOrphans() {
	wanted := make(map[string]bool, len(p.desired.Services))
	for _, s := range p.desired.Services {
		wanted[s.Name] = true
	}
	byService := map[string][]*ObservedContainer{}
	deps := map[string][]string{}
	for i := range p.observed.Containers {
		c := &p.observed.Containers[i]
		svc := c.Labels[LabelService]
		if p.ours(c.Labels) && !wanted[svc] {
			byService[svc] = append(byService[svc], c)
			deps[svc] = appendOnce(deps[svc], parseDependsOnLabel(c.Labels[LabelDependsOn])...)
		}
	}
	names := slices.Sorted(maps.Keys(byService))
	order, err := topoSort(names, deps)
	if err != nil {
		order = names // a cycle in labels someone edited: fall back to name order
	}
	for _, svc := range slices.Backward(order) {
		cs := byService[svc]
		sortByNumber(cs)
		idx := p.add(drivers.Change{Ref: drivers.Ref{Kind: "service", Name: svc}, Action: drivers.ActionDelete, Reason: reasonGone})
		for _, c := range slices.Backward(cs) {
			p.pruneContainers = append(p.pruneContainers, Step{
				Kind: StepRemoveContainer, Change: idx, Existing: c, Number: number(c), Prune: true,
			})
		}
	}
}

// parseDependsOnLabel parses compose's depends_on label, "db:service_started:false,cache:...",
// into service names.
func parseDependsOnLabel(v string) []string {
	var out []string
	for part := range strings.SplitSeq(v, ",") {
		if name, _, _ := strings.Cut(part, ":"); name != "" {
			out = append(out, name)
		}
	}
	return out
}

// planForeign reports, without touching them, containers that carry the project's labels
// but not ours: started by `docker compose up` by hand, or by another app.
func (p *planner) planForeign() {
	for _, c := range p.observed.Containers {
		if !p.ours(c.Labels) {
			p.add(drivers.Change{
				Ref:       drivers.Ref{Kind: RefKindContainer, Name: c.Name},
				Action:    drivers.ActionUnchanged,
				Reason:    reasonForeign,
				Unmanaged: true,
			})
		}
	}
}

// finish sorts the changes for display and rewrites the steps' change indexes to match.
func (p *planner) finish() *drivers.Plan {
	order := make([]int, len(p.changes))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		ca, cb := p.changes[a], p.changes[b]
		return cmp.Or(
			strings.Compare(ca.Ref.String(), cb.Ref.String()),
			strings.Compare(string(ca.Action), string(cb.Action)),
		)
	})
	newIndex := make([]int, len(p.changes))
	changes := make(drivers.ChangeSet, len(p.changes))
	for to, from := range order {
		newIndex[from] = to
		changes[to] = p.changes[from]
	}
	// Dependents go first when containers are torn down for a network recreation.
	slices.Reverse(p.teardownContainers)
	var steps []Step
	for _, phase := range [][]Step{
		p.teardownContainers, p.teardownNetworks, p.createNetworks, p.createVolumes,
		p.builds, p.services, p.pruneContainers, p.pruneNetworks,
	} {
		for _, s := range phase {
			s.Change = newIndex[s.Change]
			steps = append(steps, s)
		}
	}
	return &drivers.Plan{
		App:     p.app,
		Changes: changes,
		Live:    liveRevision(p.app.Name, p.observed.Containers),
		Payload: &Payload{Desired: p.desired, Observed: p.observed, Steps: steps},
	}
}

// number is a container's compose replica number, 0 when the label is missing or bad.
func number(c *ObservedContainer) int {
	n, err := strconv.Atoi(c.Labels[LabelNumber])
	if err != nil || n < 0 {
		return 0
	}
	return n
}

func sortByNumber(cs []*ObservedContainer) {
	slices.SortFunc(cs, func(a, b *ObservedContainer) int {
		return cmp.Or(cmp.Compare(number(a), number(b)), strings.Compare(a.Name, b.Name))
	})
}

// PlanText is the stable text form of a plan used in golden tests and the CLI: the same
// as Plan.String.
func PlanText(p *drivers.Plan) string { return p.String() }

// StepsText renders a docker plan's steps in execution order, one per line, for golden
// tests and debugging; it is empty for a plan without a docker payload.
func StepsText(p *drivers.Plan) string {
	payload, ok := p.Payload.(*Payload)
	if !ok {
		return ""
	}
	var b strings.Builder
	for i, s := range payload.Steps {
		fmt.Fprintf(&b, "  %2d. %-18s %s%s", i+1, s.Kind, stepTarget(s), replacedText(s))
		if s.Prune {
			b.WriteString(" (prune)")
		}
		fmt.Fprintf(&b, "  [%s]\n", p.Changes[s.Change].Ref)
	}
	return b.String()
}

func stepTarget(s Step) string {
	switch {
	case s.Network != nil:
		return s.Network.Name
	case s.ExistingNetwork != nil:
		return s.ExistingNetwork.Name
	case s.Volume != nil:
		return s.Volume.Name
	case s.Build != nil:
		return s.Build.Image
	case s.Existing != nil:
		return fmt.Sprintf("%s #%d", s.Existing.Name, s.Number)
	case s.Service != nil:
		return fmt.Sprintf("%s #%d", s.Service.Name, s.Number)
	}
	return "?"
}

// serviceState collects what planService decides for one service.
type serviceState struct {
	spec *ServiceSpec
	idx  int
	// recreate, update are the reasons that make the action recreate or update.
	recreate, update []string
	refs             refsState
	diff             string
	hashNoted        bool
	completed        int
	steps            []Step
	// finishing maps the ID of each replacement whose interrupted recreate this plan
	// finishes to the container it replaces (nil when that one is gone); see leftover.go.
	finishing map[string]*ObservedContainer
}

func (p *planner) planService(spec *ServiceSpec) {
	st := &serviceState{spec: spec}
	st.idx = p.add(drivers.Change{Ref: drivers.Ref{Kind: "service", Name: spec.Name}})
	ours, used := p.containersOf(spec.Name)
	ours = p.planLeftovers(st, ours, used)
	keep, extra := ours, []*ObservedContainer(nil)
	if len(ours) > spec.Replicas {
		keep, extra = ours[:spec.Replicas], ours[spec.Replicas:]
	}
	if len(ours) == 0 {
		p.createReplicas(st, spec.Replicas, used)
		if len(st.steps) > 0 {
			p.changes[st.idx].Action = drivers.ActionCreate
			p.changes[st.idx].Reason = strings.Join(append([]string{fmt.Sprintf("missing: %s to create", plural(spec.Replicas, "container"))}, st.update...), "; ")
		}
		p.services = append(p.services, st.steps...)
		return
	}
	nets := p.changedNetworksOf(spec)
	st.refs = p.planRefs(spec)
	for _, c := range keep {
		p.planContainer(st, c, nets)
	}
	if len(st.recreate) > 0 {
		p.recreated[spec.Name] = true
	}
	if len(ours) != spec.Replicas {
		st.update = append(st.update, fmt.Sprintf("replicas %d -> %d", len(ours), spec.Replicas))
	}
	p.createReplicas(st, spec.Replicas-len(keep), used)
	for _, c := range slices.Backward(extra) {
		st.steps = append(st.steps, Step{Kind: StepRemoveContainer, Change: st.idx, Existing: c, Number: number(c)})
		st.steps = append(st.steps, stepRemoveReplaced(st, c)...)
	}
	p.services = append(p.services, st.steps...)
	p.changes[st.idx] = st.change(p.changes[st.idx].Ref)
}

// containersOf returns the app's containers of a service sorted by number, and the numbers
// taken by any container of the service, ours or not, so new ones get free names. The
// leftovers of interrupted recreates are not replicas (see planLeftovers).
func (p *planner) containersOf(service string) ([]*ObservedContainer, map[int]bool) {
	var ours []*ObservedContainer
	used := map[int]bool{}
	for i := range p.observed.Containers {
		c := &p.observed.Containers[i]
		if c.Labels[LabelService] != service || p.ours(c.Labels) && p.leftover(c) {
			continue
		}
		used[number(c)] = true
		if p.ours(c.Labels) {
			ours = append(ours, c)
		}
	}
	sortByNumber(ours)
	return ours, used
}

// changedNetworksOf lists the service's networks that this plan creates or recreates,
// as "network <key> <created|recreated>" in key order.
func (p *planner) changedNetworksOf(spec *ServiceSpec) []string {
	var out []string
	for _, key := range slices.Sorted(maps.Keys(spec.Service.Networks)) {
		if word, ok := p.netChanged[key]; ok {
			out = append(out, "network "+key+" "+word)
		}
	}
	return out
}

// planContainer decides what one kept replica needs.
func (p *planner) planContainer(st *serviceState, c *ObservedContainer, nets []string) {
	if old, ok := st.finishing[c.ID]; ok {
		p.planFinish(st, c, old)
		return
	}
	spec := st.spec
	n := number(c)
	hashDiffers := c.Labels[LabelSpecHash] != spec.SpecHash
	if hashDiffers && !st.hashNoted {
		st.hashNoted = true
		st.recreate = append(st.recreate, hashReason(st, c))
	}
	shared := st.refs.reasons(c)
	switch {
	case slices.ContainsFunc(nets, func(s string) bool { return strings.HasSuffix(s, " recreated") }):
		// The old network cannot be removed while this container is attached to it.
		p.teardownContainers = append(p.teardownContainers, Step{Kind: StepRemoveContainer, Change: st.idx, Existing: c, Number: n})
		st.steps = append(st.steps, Step{Kind: StepCreateContainer, Change: st.idx, Service: spec, Number: n})
		st.recreate = appendOnce(st.recreate, nets...)
	case hashDiffers || len(nets) > 0 || len(shared) > 0:
		st.steps = append(st.steps, Step{Kind: StepRecreateContainer, Change: st.idx, Service: spec, Existing: c, Number: n})
		st.recreate = appendOnce(st.recreate, nets...)
		st.recreate = appendOnce(st.recreate, shared...)
	case c.State == "dead":
		st.steps = append(st.steps, Step{Kind: StepRecreateContainer, Change: st.idx, Service: spec, Existing: c, Number: n})
		st.recreate = append(st.recreate, c.Name+" is dead")
	case p.planUnattached(st, c):
	default:
		why, start := startReason(c, spec)
		if why != "" && !start {
			// A completed one-shot: its limits no longer matter, and a recreate would run it again.
			st.completed++
			return
		}
		if p.planRuntime(st, c) {
			return
		}
		if start {
			st.steps = append(st.steps, Step{Kind: StepStartContainer, Change: st.idx, Service: spec, Existing: c, Number: n})
			st.update = append(st.update, "start "+c.Name+": "+why)
		}
	}
}

// planRuntime heals settings changed by `docker update` (which leaves labels and hashes
// alone) when the container was inspected: in place with an update-container step, or by a
// recreate when the Engine cannot give a value back (a limit added to an unlimited
// service). It reports whether it planned a recreate. Values read "live -> desired".
func (p *planner) planRuntime(st *serviceState, c *ObservedContainer) bool {
	if c.Runtime == nil {
		return false
	}
	want, err := desiredRuntime(st.spec.Service)
	if err != nil {
		return false // an invalid restart policy fails the create in Apply, with its own error
	}
	drift := compareRuntime(want, *c.Runtime)
	if len(drift.Changes) == 0 {
		return false
	}
	reason := "changed outside Git: " + strings.Join(drift.Changes, ", ")
	if st.spec.Replicas > 1 {
		reason = c.Name + " " + reason
	}
	step := Step{Change: st.idx, Service: st.spec, Existing: c, Number: number(c)}
	if len(drift.Unsettable) > 0 {
		step.Kind = StepRecreateContainer
		st.steps = append(st.steps, step)
		st.recreate = append(st.recreate, reason+" (docker update cannot unset "+strings.Join(drift.Unsettable, ", ")+")")
		return true
	}
	step.Kind = StepUpdateContainer
	st.steps = append(st.steps, step)
	st.update = append(st.update, reason)
	return false
}

// hashReason says why a container's spec hash differs, naming the changed fields, and
// records the diff.
func hashReason(st *serviceState, c *ObservedContainer) string {
	spec := st.spec
	live := []byte(c.Labels[LabelDesired])
	st.diff = MaskedDiff(spec.Name, live, spec.Canonical)
	fields := changedFields(live, spec.Canonical)
	var parts []string
	if len(fields) > 0 {
		parts = append(parts, "config changed: "+strings.Join(fields, ", "))
	}
	if b := spec.Build; b != nil && c.Labels[LabelBuildDigest] != b.Digest {
		parts = append(parts, "image "+b.Image+" rebuilt")
	}
	if len(parts) == 0 {
		return "config changed"
	}
	return strings.Join(parts, "; ")
}

// startReason says whether a live container that should run needs a start, and why; a
// completed one-shot returns a reason and false.
func startReason(c *ObservedContainer, spec *ServiceSpec) (string, bool) {
	switch c.State {
	case "created":
		return "created, never started", true
	case "paused":
		return "paused", true
	case "exited":
	default: // running, restarting (the Engine is on it), removing
		return "", false
	}
	exited := fmt.Sprintf("exited with code %d", c.ExitCode)
	if c.ExitCode != 0 {
		return exited, true
	}
	policy := cmp.Or(c.RestartPolicy, spec.Service.Restart, "no")
	if policy == "always" || policy == "unless-stopped" {
		return exited + ", restart " + policy, true
	}
	return "completed", false
}

func (p *planner) createReplicas(st *serviceState, count int, used map[int]bool) {
	for n := 1; count > 0; n++ {
		if used[n] {
			continue
		}
		used[n] = true
		st.steps = append(st.steps, Step{Kind: StepCreateContainer, Change: st.idx, Service: st.spec, Number: n})
		count--
	}
}

func (st *serviceState) change(ref drivers.Ref) drivers.Change {
	switch {
	case len(st.recreate) > 0:
		return drivers.Change{Ref: ref, Action: drivers.ActionRecreate, Reason: strings.Join(append(st.recreate, st.update...), "; "), Diff: st.diff}
	case len(st.update) > 0:
		return drivers.Change{Ref: ref, Action: drivers.ActionUpdate, Reason: strings.Join(st.update, "; ")}
	case st.completed > 0:
		return drivers.Change{Ref: ref, Action: drivers.ActionUnchanged, Reason: "completed one-shot: exited 0"}
	}
	return drivers.Change{Ref: ref, Action: drivers.ActionUnchanged}
}

func appendOnce(list []string, items ...string) []string {
	for _, it := range items {
		if !slices.Contains(list, it) {
			list = append(list, it)
		}
	}
	return list
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}
