// Package drivers defines what the reconciler asks of a deployment backend (Docker Engine,
// Kubernetes) and the backend-neutral types it gets back: plans, change sets, health and
// live-change events. Drivers own everything about their backend; the reconciler owns order,
// timing, retries and policy.
package drivers

import (
	"context"
	"errors"
	"time"

	"github.com/shipwatch/shipwatch/manifests"
)

// Driver converges one backend towards desired state. Implementations must be safe for
// concurrent use by different apps; the reconciler never runs two passes of one app at once.
type Driver interface {
	// Plan reads live state and compares it with desired. It writes nothing. An empty
	// (non-nil) bundle plans the removal of everything the app owns.
	Plan(ctx context.Context, app App, desired *manifests.Bundle) (*Plan, error)
	// Apply carries out a plan and returns what it did, per resource, in the order done.
	// On error the returned change set holds what was done before the failure.
	Apply(ctx context.Context, plan *Plan, opts ApplyOptions) (ChangeSet, error)
	// Health is one snapshot of the app's resources; the reconciler does the waiting.
	Health(ctx context.Context, app App) (Health, error)
	// Watch reports live changes to the app's resources until ctx ends, so that drift is
	// planned within seconds instead of at the next poll. The channel is closed when ctx
	// ends. Events are hints: the receiver re-plans, it never trusts an event's content.
	Watch(ctx context.Context, app App) (<-chan Event, error)
}

// ErrInvalidSpec is wrapped by driver errors caused by the desired state itself (an image
// that does not exist, a volume whose configuration changed): retrying the same revision
// cannot help, so the reconciler waits for a new one.
var ErrInvalidSpec = errors.New("invalid desired state")

// App identifies one deployed application to a driver.
type App struct {
	// Name is the configured app name; drivers record it in the shipwatch app label.
	Name string
	// Project is the backend grouping: the compose project name for Docker.
	Project string
	// Revision is the Git commit being planned or applied; drivers record it in a label.
	Revision string
}

// ApplyOptions tunes one Apply call.
type ApplyOptions struct {
	// Prune deletes resources the app owns that are no longer desired. When false, delete
	// changes are reported with Skipped set and the resources are left running.
	Prune bool
	// Progress, when set, is called as each change starts and finishes, so a CLI or log can
	// show long work as it happens. It is called from the Apply goroutine.
	Progress func(Progress)
}

// Progress reports one step of an Apply.
type Progress struct {
	Change Change
	// Done is false when the step starts and true when it has finished.
	Done bool
	// Err is the step's failure, set only when Done.
	Err error
}

// Action is what a plan does to one resource.
type Action string

// The actions a plan can hold. Recreate replaces a resource that cannot be changed in place
// (a container whose configuration changed).
const (
	ActionCreate    Action = "create"
	ActionUpdate    Action = "update"
	ActionRecreate  Action = "recreate"
	ActionDelete    Action = "delete"
	ActionUnchanged Action = "unchanged"
)

// Ref names one resource of an app in a backend-neutral way.
type Ref struct {
	// Kind is the backend's kind of resource: "service", "network", "volume" for Docker;
	// the object kind ("Deployment") for Kubernetes.
	Kind string `json:"kind"`
	// Namespace is empty for resources that have none.
	Namespace string `json:"namespace,omitempty"`
	// Name is the resource's name within its kind (compose service name, network key).
	Name string `json:"name"`
}

// String renders kind/name or kind/namespace/name, stable for sorting and display.
func (r Ref) String() string {
	if r.Namespace == "" {
		return r.Kind + "/" + r.Name
	}
	return r.Kind + "/" + r.Namespace + "/" + r.Name
}

// Change is one resource's entry in a plan or change set.
type Change struct {
	Ref    Ref    `json:"ref"`
	Action Action `json:"action"`
	// Reason says why, in words a user can act on ("config changed: environment, image").
	Reason string `json:"reason,omitempty"`
	// Diff is a unified diff of normalised live vs desired with secret values masked; empty
	// for unchanged resources.
	Diff string `json:"diff,omitempty"`
	// Skipped is set in an Apply result when a change was deliberately not carried out
	// (a delete with pruning disabled).
	Skipped bool `json:"skipped,omitempty"`
	// Unmanaged marks a resource inside the app's scope that the driver does not own (a
	// container started by hand with the project's label). It is drift to report, never
	// something to change: its Action is unchanged.
	Unmanaged bool `json:"unmanaged,omitempty"`
}

// ChangeSet is an ordered list of changes.
type ChangeSet []Change

// Unmanaged reports the changes marked Unmanaged.
func (cs ChangeSet) Unmanaged() ChangeSet {
	var out ChangeSet
	for _, c := range cs {
		if c.Unmanaged {
			out = append(out, c)
		}
	}
	return out
}

// Changed reports the changes whose action is not unchanged.
func (cs ChangeSet) Changed() ChangeSet {
	var out ChangeSet
	for _, c := range cs {
		if c.Action != ActionUnchanged {
			out = append(out, c)
		}
	}
	return out
}

// Plan is what a driver would do to make live state match desired.
type Plan struct {
	App     App
	Changes ChangeSet
	// Live is the revision live state records as running, read by the same observation.
	Live LiveRevision
	// Payload is the driver's own data that Apply needs (desired specs, observed IDs).
	// Only the driver that made the plan reads it.
	Payload any
}

// LiveRevision is what a backend records about the revision that runs, so that a restarted
// daemon (or a new leader) tells a new revision from drift without remembering anything.
type LiveRevision struct {
	// Revision is the recorded commit; empty when the app has nothing deployed.
	Revision string
	// Complete is true when the record moves only when a whole apply completes and moves
	// at every applied revision (Kubernetes: the inventory's annotation). It is false for a
	// per-resource record that a revision changing no resource leaves behind (Docker: the
	// newest container's revision label); the reconciler then prefers its own store.
	Complete bool
}

// InSync reports whether live state matches: nothing to change and nothing unmanaged in
// the app's scope.
func (p *Plan) InSync() bool {
	return len(p.Changes.Changed()) == 0 && len(p.Changes.Unmanaged()) == 0
}

// HealthStatus is the health vocabulary users know from Argo CD.
type HealthStatus string

// Health statuses; Worse orders them for aggregation.
const (
	HealthHealthy     HealthStatus = "Healthy"
	HealthProgressing HealthStatus = "Progressing"
	HealthDegraded    HealthStatus = "Degraded"
	HealthMissing     HealthStatus = "Missing"
	HealthUnknown     HealthStatus = "Unknown"
)

// HealthStatuses lists the health statuses, for one-hot gauges.
func HealthStatuses() []string {
	return []string{string(HealthHealthy), string(HealthProgressing), string(HealthDegraded), string(HealthMissing), string(HealthUnknown)}
}

// rank orders statuses so an app's health is its worst resource's.
func (s HealthStatus) rank() int {
	switch s {
	case HealthHealthy:
		return 0
	case HealthProgressing:
		return 1
	case HealthUnknown:
		return 2
	case HealthMissing:
		return 3
	default: // Degraded and anything unexpected
		return 4
	}
}

// Worse returns the worse of two statuses: an app is as healthy as its worst resource.
func Worse(a, b HealthStatus) HealthStatus {
	if b.rank() > a.rank() {
		return b
	}
	return a
}

// ResourceHealth is the health of one resource.
type ResourceHealth struct {
	Ref     Ref
	Status  HealthStatus
	Message string
}

// Health is a snapshot of an app's health: the worst of its resources.
type Health struct {
	Status    HealthStatus
	Resources []ResourceHealth
}

// ImageReporter is implemented by drivers that can say which images an app runs: what a
// promotion records, and pins, as "the same artifact".
type ImageReporter interface {
	Images(ctx context.Context, app App) ([]Image, error)
}

// Image is one image a resource of an app runs.
type Image struct {
	Resource Ref `json:"resource"`
	// Ref is the reference as the manifests write it ("registry/web:1.2").
	Ref string `json:"ref"`
	// Digest is the registry reference by digest ("registry/web@sha256:..."); empty for an
	// image no registry knows (built locally).
	Digest string `json:"digest,omitempty"`
}

// Event is a live change the driver saw on one of the app's resources.
type Event struct {
	Ref Ref
	// Reason is the backend's word for what happened ("die", "destroy", "MODIFIED").
	Reason string
	Time   time.Time
}
