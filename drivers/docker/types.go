// Package docker is the Docker Engine driver: it converges compose projects over the Engine
// API, staying compatible with the docker compose CLI (same labels, same config hash), so
// `docker compose -p PROJECT ps` and `down` keep working on what shipwatch started.
//
// The flow is observe (read containers, networks and volumes by label), desire (a pure
// function of the loaded project), plan (a pure function of desired and observed) and apply.
package docker

import (
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/shipwatch/shipwatch/manifests"
)

// Labels compose sets, which shipwatch sets too so the compose CLI recognises its work.
const (
	LabelProject     = "com.docker.compose.project"
	LabelService     = "com.docker.compose.service"
	LabelConfigHash  = "com.docker.compose.config-hash"
	LabelNumber      = "com.docker.compose.container-number"
	LabelOneoff      = "com.docker.compose.oneoff"
	LabelNetwork     = "com.docker.compose.network"
	LabelVolume      = "com.docker.compose.volume"
	LabelVersion     = "com.docker.compose.version"
	LabelImage       = "com.docker.compose.image"
	LabelDependsOn   = "com.docker.compose.depends_on"
	LabelWorkingDir  = "com.docker.compose.project.working_dir"
	LabelConfigFiles = "com.docker.compose.project.config_files"
)

// Labels of shipwatch's own. LabelApp marks ownership: the driver never deletes a resource
// that does not carry it with the app's name.
const (
	LabelApp      = "dev.shipwatch.app"
	LabelRevision = "dev.shipwatch.revision"
	// LabelSpecHash covers the config hash plus the digests of the repo files the service
	// reads (keyed ones for secret files), so a changed bind-mounted file, config or secret
	// recreates exactly the services that read it.
	LabelSpecHash = "dev.shipwatch.spec-hash"
	// LabelDesired holds the canonical desired JSON of the service, so a later diff can
	// name the fields that changed since the container was created.
	LabelDesired = "dev.shipwatch.desired"
	// LabelBuildDigest is set on images shipwatch builds: the digest of everything the
	// build reads (context files, Dockerfile, args, target, labels). An image whose label
	// differs from the desired digest is rebuilt.
	LabelBuildDigest = "dev.shipwatch.build-digest"
)

// RefKindImage is the Ref kind of an image built from the repository.
const RefKindImage = "image"

// ComposeVersion is written to LabelVersion; it names the compose release whose hashing
// this driver matches.
const ComposeVersion = "5.5.0"

// Desired is the desired state of one compose project, derived purely from a bundle.
type Desired struct {
	Project  string
	App      string
	Revision string
	Networks []NetworkSpec // sorted by Key
	Volumes  []VolumeSpec  // sorted by Key
	Services []ServiceSpec // in dependency order (dependencies first), ties by name
}

// ServiceSpec is one service as it should run.
type ServiceSpec struct {
	Name     string
	Replicas int
	// ConfigHash is compose's com.docker.compose.config-hash of Service.
	ConfigHash string
	// SpecHash is ConfigHash plus the repo files' digests (see LabelSpecHash).
	SpecHash string
	// Canonical is the stable, indented JSON of the service used for diffs; environment
	// values are NOT masked here: masking happens when a diff is rendered.
	Canonical []byte
	// Service is the compose service with bind sources from the checkout rewritten to
	// their content-addressed copies under the driver's files directory.
	Service types.ServiceConfig
	// Files are the repo files to copy into the files directory before creating
	// containers, with the destination path each was rewritten to.
	Files []MaterialisedFile
	// Build is set for a service built from the repository; its image is Build.Image.
	Build *BuildSpec
}

// Image is the image reference containers of the service run: the built image's for a
// service with a build section, else the service's image.
func (s *ServiceSpec) Image() string {
	if s.Build != nil {
		return s.Build.Image
	}
	return s.Service.Image
}

// BuildSpec is one image to build from the checkout.
type BuildSpec struct {
	// Image is the tag given to the built image: the service's image, else
	// <project>-<service> as compose names it.
	Image string
	// Context is the confined, digested build context.
	Context manifests.BuildContext
	// Args are the build args; values may be secrets and are never logged or shown.
	Args map[string]*string
	// Target is the Dockerfile stage to build; empty for the last.
	Target string
	// Labels are the user's image labels from build.labels.
	Labels map[string]string
	// NoCache builds without the Engine's layer cache.
	NoCache bool
	// Digest covers the context digest, the Dockerfile path, args, target and labels; it
	// is written to LabelBuildDigest and included in the spec hash of the service.
	Digest string
	// Services are the services that run this image, sorted.
	Services []string
}

// MaterialisedFile is a repo file and the content-addressed path a container mounts it from.
type MaterialisedFile struct {
	Source manifests.RepoFile
	Target string // absolute path under the files directory
}

// NetworkSpec is one network of the project.
type NetworkSpec struct {
	Key    string // the key under `networks:` ("default" for the implicit one)
	Name   string // the engine name (project_key unless `name:` is set)
	Config types.NetworkConfig
	// Hash covers the network config; a changed hash means the network is recreated.
	Hash string
}

// VolumeSpec is one named volume of the project.
type VolumeSpec struct {
	Key    string
	Name   string
	Config types.VolumeConfig
	Hash   string
}

// Observed is the live state of a project as read from the Engine by label.
type Observed struct {
	Containers []ObservedContainer // sorted by Name
	Networks   []ObservedNetwork   // sorted by Name
	Volumes    []ObservedVolume    // sorted by Name
	// Images are the images of built services found by reference; read only when a
	// desired service has a build section.
	Images []ObservedImage // sorted by ID
}

// ObservedImage is a local image found by one of the references of built services.
type ObservedImage struct {
	ID string
	// Tags are the image's repository tags, e.g. "shop-api:latest".
	Tags   []string
	Labels map[string]string
}

// ObservedContainer is the part of a container the planner needs.
type ObservedContainer struct {
	ID     string
	Name   string
	Labels map[string]string
	// Created is the container's creation time, Unix seconds.
	Created int64
	// State is the Engine's state word: created, running, paused, restarting, exited, dead.
	State    string
	ExitCode int
	// Health is the healthcheck status (starting, healthy, unhealthy) or empty.
	Health string
	// RestartPolicy is the container's restart policy name ("no", "always", ...).
	RestartPolicy string
	// Runtime holds what `docker update` can change; nil when the container was not
	// inspected. The driver inspects every container of an app on its first Plan of it and
	// when the app's event stream (re)connects, then only those its Watch saw updated.
	Runtime *RuntimeSettings
}

// ObservedNetwork is a network carrying the project label, or found by a desired name.
type ObservedNetwork struct {
	ID     string
	Name   string
	Labels map[string]string
	// Containers are the names of containers attached.
	Containers []string
}

// ObservedVolume is a volume carrying the project label, or found by a desired name.
type ObservedVolume struct {
	Name   string
	Labels map[string]string
}

// StepKind is one kind of Engine operation.
type StepKind string

// The operations Apply knows. A recreate is one step so the executor can keep the service's
// downtime to one stop + start: create the new container under a temporary name, stop and
// remove the old one, rename and start the new one.
const (
	StepCreateNetwork     StepKind = "create-network"
	StepRemoveNetwork     StepKind = "remove-network"
	StepCreateVolume      StepKind = "create-volume"
	StepCreateContainer   StepKind = "create-container"
	StepRecreateContainer StepKind = "recreate-container"
	StepStartContainer    StepKind = "start-container"
	// StepUpdateContainer gives a container back the runtime settings (limits, restart
	// policy) changed by `docker update`, in place: the container keeps its ID and runs on.
	StepUpdateContainer StepKind = "update-container"
	StepRemoveContainer StepKind = "remove-container"
	StepBuildImage      StepKind = "build-image"
)

// Step is one Engine operation of a plan, in execution order.
type Step struct {
	Kind StepKind
	// Change is the index in Plan.Changes of the change this step carries out; several
	// steps (one per replica) can share a change.
	Change  int
	Network *NetworkSpec
	Volume  *VolumeSpec
	Service *ServiceSpec
	// Number is the replica's com.docker.compose.container-number for container steps.
	Number int
	// Existing is the live container a recreate, start or remove acts on, or the live
	// network a remove acts on (then only ID and Name are set).
	Existing *ObservedContainer
	// Build is the image a build-image step builds.
	Build *BuildSpec
	// ExistingNetwork is the live network a remove-network acts on.
	ExistingNetwork *ObservedNetwork
	// Replaced is the container a finish-recreate step removes before its replacement
	// (Existing) takes the name; nil when it is gone already.
	Replaced *ObservedContainer
	// Prune marks a step that deletes something no longer in Git; Apply skips it unless
	// ApplyOptions.Prune is set.
	Prune bool
}

// Payload is what a docker plan carries in drivers.Plan.Payload for Apply.
type Payload struct {
	Desired  *Desired
	Observed *Observed
	Steps    []Step
}
