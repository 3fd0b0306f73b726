package docker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/manifests"
)

// Options configures a Driver.
type Options struct {
	// Client talks to the Engine; see NewClient.
	Client *client.Client
	// FilesDir is the absolute directory where repo files that services mount are copied,
	// content-addressed, so a container never mounts the live checkout.
	FilesDir string
	// Logger receives the driver's logs; nil discards them.
	Logger *slog.Logger
}

// Driver converges compose projects on one Docker Engine. It is safe for concurrent use by
// different apps. Its only per-app state is which containers' runtime settings the next
// Plan must inspect (see runtimeInspections); everything else is read from the Engine.
type Driver struct {
	api      engine
	filesDir string
	log      *slog.Logger

	runtimeMu sync.Mutex
	// planned holds the apps whose runtime settings were all inspected once, since the
	// start or since their event stream last broke.
	planned map[string]bool
	// updated holds, per app, the IDs of containers the Watch saw `docker update`d since
	// the last Plan read them.
	updated map[string]map[string]bool

	keyMu sync.Mutex
	key   []byte // see secretKey; nil until a project with secrets is planned
}

var _ drivers.Driver = (*Driver)(nil)

// New returns a driver for the Engine behind opts.Client.
func New(opts Options) (*Driver, error) {
	if opts.Client == nil {
		return nil, errors.New("docker driver: no engine client")
	}
	if opts.FilesDir == "" || !filepath.IsAbs(opts.FilesDir) {
		return nil, fmt.Errorf("docker driver: files directory %q must be an absolute path", opts.FilesDir)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Owner only: it holds copies of the repo files services mount, secrets among them, and
	// the key of their addresses. The copies stay readable inside: containers running as
	// any user read them through their bind mounts, which do not need this directory's
	// permissions.
	if err := os.MkdirAll(opts.FilesDir, 0o700); err != nil {
		return nil, fmt.Errorf("docker driver: files directory: %w", err)
	}
	if err := os.Chmod(opts.FilesDir, 0o700); err != nil {
		return nil, fmt.Errorf("docker driver: restrict files directory %s: %w", opts.FilesDir, err)
	}
	return &Driver{api: opts.Client, filesDir: filepath.Clean(opts.FilesDir), log: log.With("driver", "docker")}, nil
}

// NewClient connects to the Engine at host ("unix:///var/run/docker.sock",
// "tcp://127.0.0.1:2375"); an empty host means DOCKER_HOST, then the default socket. The
// API version is negotiated on the first call, so older Engines (API 1.41) work.
func NewClient(host string) (*client.Client, error) {
	opts := []client.Opt{client.FromEnv}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	c, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client for %q: %w", host, err)
	}
	return c, nil
}

// Plan observes the app's live resources and plans the changes to reach the bundle. An
// empty bundle plans the removal of everything the app owns.
func (d *Driver) Plan(ctx context.Context, app drivers.App, bundle *manifests.Bundle) (*drivers.Plan, error) {
	var compose *manifests.Compose
	if !bundle.Empty() {
		compose = bundle.Compose
	}
	opts := DesireOptions{FilesDir: d.filesDir}
	if compose != nil && compose.Project != nil {
		key, err := d.secretKey()
		if err != nil {
			return nil, fmt.Errorf("app %s: %w", app.Name, err)
		}
		opts.SecretKey = key
	}
	desired, err := Desire(app, compose, opts)
	if err != nil {
		return nil, fmt.Errorf("app %s: desired state: %w", app.Name, err)
	}
	if compose != nil {
		addProjectLabels(desired, compose)
	}
	project := app.Project
	if desired != nil && desired.Project != "" {
		project = desired.Project
	}
	observed, err := d.observe(ctx, app.Name, project, desired)
	if err != nil {
		return nil, fmt.Errorf("app %s: %w", app.Name, err)
	}
	plan := BuildPlan(app, desired, observed)
	d.keepRuntimeDrift(app.Name, plan)
	return plan, nil
}

// keepRuntimeDrift marks the containers this plan found changed by `docker update`, so the
// next Plan inspects them again: until an apply heals them (drift: alert, a held app) the
// drift must stay visible, not vanish with the mark the Watch set.
func (d *Driver) keepRuntimeDrift(app string, plan *drivers.Plan) {
	p, ok := plan.Payload.(*Payload)
	if !ok {
		return
	}
	for _, s := range p.Steps {
		if s.Existing != nil && s.Existing.Runtime != nil && (s.Kind == StepUpdateContainer || s.Kind == StepRecreateContainer) {
			d.markUpdated(app, s.Existing.ID)
		}
	}
}

// addProjectLabels records where the project came from, as the compose CLI does, in the
// labels that are not part of the config hash.
func addProjectLabels(d *Desired, c *manifests.Compose) {
	if d == nil || c.Project == nil {
		return
	}
	for i := range d.Services {
		s := &d.Services[i].Service
		// Clone: the map may be shared with the caller's bundle.
		s.CustomLabels = maps.Clone(s.CustomLabels)
		if s.CustomLabels == nil {
			s.CustomLabels = map[string]string{}
		}
		if _, ok := s.CustomLabels[LabelWorkingDir]; !ok {
			s.CustomLabels[LabelWorkingDir] = c.Project.WorkingDir
		}
		if _, ok := s.CustomLabels[LabelConfigFiles]; !ok {
			s.CustomLabels[LabelConfigFiles] = strings.Join(c.Project.ComposeFiles, ",")
		}
	}
}
