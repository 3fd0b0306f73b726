package docker

import (
	"cmp"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// A recreate creates the new container under a temporary name, stops and removes the old
// one, renames the new one and starts it. Killed or cut off halfway (SIGKILL of the daemon,
// an Engine connection lost), it leaves the new container under its temporary name, never
// started, and maybe the old one stopped. The new container's labels say so, and the next
// plan finishes the recreate or removes what was left: nothing stays down for good and no
// retry collides with an earlier attempt's name.
const (
	// LabelReplaces is set on a container created to replace another: the old one's ID.
	LabelReplaces = "dev.shipwatch.replaces"
	// LabelTemporaryName is the name a replacement was created under, unique per attempt.
	// While the container still has that name, its recreate did not finish; once renamed,
	// it is an ordinary container of its service.
	LabelTemporaryName = "dev.shipwatch.temporary-name"
)

// StepFinishRecreate finishes an interrupted recreate: the replacement is checked, the old
// container (Step.Replaced, when there still is one) removed, the replacement renamed and
// started. It has the same downtime window as a recreate's end.
const StepFinishRecreate StepKind = "finish-recreate"

// isTemporary says whether c is a replacement still under its temporary name: the leftover
// of a recreate that did not finish, not a running replica.
func isTemporary(c *ObservedContainer) bool {
	tmp := c.Labels[LabelTemporaryName]
	return tmp != "" && c.Name == tmp
}

// legacyTemporary is the temporary name earlier versions gave a replacement, without the
// labels: "<name>_<12 hex digits of the old container's ID>", the same on every attempt.
var legacyTemporary = regexp.MustCompile(`^(.+)_[0-9a-f]{12}$`)

// leftover says whether c, one of the app's containers, was left by an interrupted
// recreate: by its labels, or by the legacy temporary name of its service and number.
func (p *planner) leftover(c *ObservedContainer) bool {
	if isTemporary(c) {
		return true
	}
	if c.Labels[LabelTemporaryName] != "" {
		return false // renamed: a finished replacement
	}
	spec := p.serviceSpec(c.Labels[LabelService])
	if spec == nil {
		return false
	}
	m := legacyTemporary.FindStringSubmatch(c.Name)
	return m != nil && m[1] == containerName(p.desired.Project, spec, number(c))
}

func (p *planner) serviceSpec(name string) *ServiceSpec {
	for i := range p.desired.Services {
		if p.desired.Services[i].Name == name {
			return &p.desired.Services[i]
		}
	}
	return nil
}

// leftoversOf returns the app's leftovers of a service, the newest first: the last attempt
// is the one worth finishing.
func (p *planner) leftoversOf(service string) []*ObservedContainer {
	var out []*ObservedContainer
	for i := range p.observed.Containers {
		c := &p.observed.Containers[i]
		if c.Labels[LabelService] == service && p.ours(c.Labels) && p.leftover(c) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b *ObservedContainer) int {
		return cmp.Or(cmp.Compare(b.Created, a.Created), strings.Compare(b.Name, a.Name))
	})
	return out
}

// planLeftovers decides, for each leftover of the service, to finish its recreate or to
// remove it, and returns the service's replicas as they will be: a replacement being
// finished stands in for the container it replaces. Removals come first in the service's
// steps. used gets the numbers of the replacements being finished.
//
// A replacement is finished when it is exactly what Git wants now (spec hash, networks,
// the containers it points at) and was never started, and the container it replaces is
// gone or stopped and holds the name: the recreate had already taken the service down, so
// finishing it is the shortest way back. In any other case (the old container still runs,
// Git moved on, a legacy leftover) it is removed and the service is planned as usual.
func (p *planner) planLeftovers(st *serviceState, ours []*ObservedContainer, used map[int]bool) []*ObservedContainer {
	left := p.leftoversOf(st.spec.Name)
	if len(left) == 0 {
		return ours
	}
	nets := p.changedNetworksOf(st.spec)
	refs := p.planRefs(st.spec)
	finished := map[int]bool{}
	for _, l := range left {
		n := number(l)
		old, ok := p.finishable(st.spec, l, nets, refs)
		// A number held by a container other than the one replaced is not free to take.
		if ok && !finished[n] && (old != nil || !used[n]) {
			finished[n], used[n] = true, true
			if st.finishing == nil {
				st.finishing = map[string]*ObservedContainer{}
			}
			st.finishing[l.ID] = old
			ours = slices.DeleteFunc(ours, func(c *ObservedContainer) bool { return old != nil && c.ID == old.ID })
			ours = append(ours, l)
			continue
		}
		st.steps = append(st.steps, Step{Kind: StepRemoveContainer, Change: st.idx, Existing: l, Number: n})
		st.update = append(st.update, "remove "+l.Name+", left by an interrupted recreate")
	}
	sortByNumber(ours)
	return ours
}

// finishable says whether leftover l can be finished, and which container it replaces
// (nil when that one is gone).
func (p *planner) finishable(spec *ServiceSpec, l *ObservedContainer, nets []string, refs refsState) (*ObservedContainer, bool) {
	replaces := l.Labels[LabelReplaces]
	if replaces == "" || l.State != "created" || l.Labels[LabelSpecHash] != spec.SpecHash ||
		len(nets) > 0 || len(refs.reasons(l)) > 0 || len(p.missingNetworks(spec, l)) > 0 {
		return nil, false
	}
	name := containerName(p.desired.Project, spec, number(l))
	for i := range p.observed.Containers {
		c := &p.observed.Containers[i]
		if c.Name != name {
			continue
		}
		if c.ID != replaces || !p.ours(c.Labels) || isRunning(c) {
			return nil, false
		}
		return c, true
	}
	return nil, true
}

// isRunning is true for the states in which a container serves (or is about to again).
func isRunning(c *ObservedContainer) bool {
	switch c.State {
	case "running", "restarting", "paused":
		return true
	}
	return false
}

// planFinish plans the end of an interrupted recreate for replacement l.
func (p *planner) planFinish(st *serviceState, l, old *ObservedContainer) {
	name := containerName(p.desired.Project, st.spec, number(l))
	if old != nil && old.Labels[LabelSpecHash] != st.spec.SpecHash && !st.hashNoted {
		st.hashNoted = true
		st.recreate = append(st.recreate, hashReason(st, old))
	}
	st.steps = append(st.steps, Step{Kind: StepFinishRecreate, Change: st.idx, Service: st.spec, Existing: l, Replaced: old, Number: number(l)})
	st.recreate = append(st.recreate, "finish the interrupted recreate of "+name+" with "+l.Name)
}

// missingNetworks are the keys of the service's networks that container c is not attached
// to. Only a container that never ran is checked: one created by an Apply cut off between
// the create and its network connections.
func (p *planner) missingNetworks(spec *ServiceSpec, c *ObservedContainer) []string {
	if spec.Service.NetworkMode != "" {
		return nil
	}
	var out []string
	for _, key := range slices.Sorted(maps.Keys(spec.Service.Networks)) {
		n := findNetwork(p.observed.Networks, p.networkName(key))
		if n == nil || !slices.Contains(n.Containers, c.Name) {
			out = append(out, key)
		}
	}
	return out
}

func (p *planner) networkName(key string) string {
	for _, n := range p.desired.Networks {
		if n.Key == key {
			return n.Name
		}
	}
	return key
}

// planUnattached recreates a container that was created but never started and lacks some
// of its networks (an Apply cut off halfway through its creation): starting it would run
// it cut off from those networks. It reports whether it planned the recreate.
func (p *planner) planUnattached(st *serviceState, c *ObservedContainer) bool {
	if c.State != "created" {
		return false
	}
	missing := p.missingNetworks(st.spec, c)
	if len(missing) == 0 {
		return false
	}
	st.steps = append(st.steps, Step{Kind: StepRecreateContainer, Change: st.idx, Service: st.spec, Existing: c, Number: number(c)})
	st.recreate = append(st.recreate, c.Name+" was created but not attached to network "+strings.Join(missing, ", "))
	return true
}

// stepRemoveReplaced is the removal of the container that c, a replacement being finished,
// stands in for, when c turns out to be one replica too many: both go.
func stepRemoveReplaced(st *serviceState, c *ObservedContainer) []Step {
	if old := st.finishing[c.ID]; old != nil {
		return []Step{{Kind: StepRemoveContainer, Change: st.idx, Existing: old, Number: number(old)}}
	}
	return nil
}

// replacedText is how the steps text names the container a finish step replaces.
func replacedText(s Step) string {
	if s.Kind != StepFinishRecreate {
		return ""
	}
	if s.Replaced == nil {
		return " (replaced container gone)"
	}
	return " (replaces " + s.Replaced.Name + ")"
}
