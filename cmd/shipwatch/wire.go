package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/drivers/docker"
	"github.com/shipwatch/shipwatch/drivers/kubernetes"
	"github.com/shipwatch/shipwatch/internal/config"
	"github.com/shipwatch/shipwatch/internal/metrics"
	"github.com/shipwatch/shipwatch/internal/state"
	"github.com/shipwatch/shipwatch/manifests"
	"github.com/shipwatch/shipwatch/reconciler"
	"github.com/shipwatch/shipwatch/source"
)

// env is everything a verb needs, built from the config file.
type env struct {
	cfg     *config.Config
	log     *slog.Logger
	metrics *metrics.Metrics
	cache   *source.Cache
	clients []*client.Client
	// closers release drivers' background work (the Kubernetes driver's informers).
	closers []func() error
	// notifier receives the reconciler's events; nil in one-shot verbs.
	notifier reconciler.Notifier
	// lock and store are the state dir, once a verb has taken it (see openState);
	// exclusive says the lock excludes every other shipwatch process.
	lock      *state.Lock
	store     *state.Store
	exclusive bool
	warnings  []string
}

// setup loads the config and prepares logging and metrics. The Git cache is made when a
// verb first needs it (gitCache), after the verb has taken the state dir or not.
func (g *globals) setup() (*env, error) {
	log, err := g.logger()
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(g.configFile)
	if err != nil {
		return nil, err
	}
	warnings, err := cfg.CheckCredentialFiles()
	for _, w := range warnings {
		log.Warn("credential file", "err", w)
	}
	if err != nil {
		return nil, err
	}
	if cfg.StateDir, err = filepath.Abs(cfg.StateDir); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	return &env{cfg: cfg, log: log, metrics: metrics.New(version)}, nil
}

// gitCache returns the Git cache, making it on first use. Only the holder of the state
// dir's exclusive lock uses stateDir/git: go-git's storage is not safe for two writing
// processes, and opening the cache removes leftovers of interrupted checkouts, which may be
// the daemon's checkout in progress. Any other process (validate, a diff while a daemon
// runs) fetches into a private temporary cache, removed when it exits.
func (e *env) gitCache() (*source.Cache, error) {
	if e.cache != nil {
		return e.cache, nil
	}
	dir := filepath.Join(e.cfg.StateDir, "git")
	if !e.exclusive {
		tmp, err := os.MkdirTemp("", "shipwatch-git-")
		if err != nil {
			return nil, fmt.Errorf("private git cache: %w", err)
		}
		e.closers = append(e.closers, func() error { return source.RemoveAll(tmp) })
		dir = tmp
	}
	cache, err := source.New(source.Options{Dir: dir, Observer: e.metrics, Logger: e.log})
	if err != nil {
		return nil, err
	}
	e.cache = cache
	return cache, nil
}

func (e *env) close() {
	for _, c := range e.clients {
		_ = c.Close()
	}
	for _, c := range e.closers {
		_ = c()
	}
	if e.store != nil {
		_ = e.store.Close()
	}
	_ = e.lock.Release()
}

// reconciler builds the reconciler for every configured app, with one driver per distinct
// Docker Engine or Kubernetes cluster, context and namespace.
func (e *env) reconciler(ctx context.Context) (*reconciler.Reconciler, error) {
	byTarget := map[string]drivers.Driver{}
	var specs []reconciler.AppSpec
	for _, a := range e.cfg.Instances() {
		key := a.Driver + "|" + a.Docker.Host + "|" + a.Kubernetes.Kubeconfig + "|" + a.Kubernetes.Context + "|" + a.Kubernetes.Namespace
		drv, ok := byTarget[key]
		if !ok {
			var err error
			if drv, err = e.newDriver(ctx, a); err != nil {
				return nil, fmt.Errorf("app %s: %w", a.Name, err)
			}
			byTarget[key] = drv
		}
		spec, err := e.appSpec(a)
		if err != nil {
			return nil, err
		}
		spec.Driver = drv
		specs = append(specs, spec)
	}
	opts := reconciler.Options{
		Apps: specs, Workers: e.cfg.Workers, Metrics: e.metrics, Logger: e.log,
		ShutdownTimeout: e.cfg.ShutdownTimeout.Duration, ApplyTimeout: e.cfg.ApplyTimeout.Duration,
		Notifier: e.notifier, Warnings: e.warnings,
	}
	if e.store != nil { // a nil *state.Store would be a non-nil interface
		opts.Store = e.store
	}
	return reconciler.New(opts)
}

// newDriver connects the driver an app asks for.
func (e *env) newDriver(ctx context.Context, a config.App) (drivers.Driver, error) {
	if a.Driver == "kubernetes" {
		rc, err := kubernetes.NewConfig(a.Kubernetes.Kubeconfig, a.Kubernetes.Context)
		if err != nil {
			return nil, err
		}
		drv, err := kubernetes.New(ctx, kubernetes.Options{
			Config: rc, Namespace: a.Kubernetes.Namespace, Version: version, Logger: e.log,
			// Per app: the apps of one cluster and namespace share this driver.
			ForceConflicts: func(app string) bool {
				for _, x := range e.cfg.Instances() {
					if x.BackendName() == app {
						return x.Kubernetes.ForceConflicts
					}
				}
				return false
			},
		})
		if err != nil {
			return nil, err
		}
		e.closers = append(e.closers, drv.Close)
		return drv, nil
	}
	cli, err := docker.NewClient(a.Docker.Host)
	if err != nil {
		return nil, err
	}
	e.clients = append(e.clients, cli)
	return docker.New(docker.Options{Client: cli, FilesDir: filepath.Join(e.cfg.StateDir, "files"), Logger: e.log})
}

// appSpec is an app's source, loader and policy, without a driver.
func (e *env) appSpec(a config.App) (reconciler.AppSpec, error) {
	r, ok := e.cfg.Repo(a.Repo)
	if !ok {
		return reconciler.AppSpec{}, fmt.Errorf("app %s: unknown repo %q", a.Name, a.Repo)
	}
	cache, err := e.gitCache()
	if err != nil {
		return reconciler.AppSpec{}, err
	}
	return reconciler.AppSpec{
		Name: a.Name, App: cmp.Or(a.Base, a.Name), Env: a.Env, Backend: a.BackendName(),
		Repo: r.Name, Ref: string(a.Ref), Project: a.Compose.Project,
		Interval: r.Interval.Duration, Drift: reconciler.DriftPolicy(a.Drift),
		Sync: reconciler.SyncPolicy(a.Sync), Suspend: a.Suspend,
		Prune: a.PruneEnabled(), HealthTimeout: a.HealthTimeout.Duration,
		OnFailure: reconciler.FailurePolicy(a.OnFailure),
		Source:    repoSource{cache: cache, repo: sourceRepo(r)},
		Load:      loader(a),
	}, nil
}

func sourceRepo(r config.Repo) source.Repo {
	return source.Repo{Name: r.Name, URL: r.URL, Auth: source.Auth{
		TokenFile: r.Auth.TokenFile, UsernameFile: r.Auth.UsernameFile,
		PasswordFile: r.Auth.PasswordFile, SSHKeyFile: r.Auth.SSHKeyFile,
		KnownHostsFile: r.Auth.KnownHostsFile,
	}}
}

// repoSource binds the shared Git cache to one repo, as the reconciler's Source.
type repoSource struct {
	cache *source.Cache
	repo  source.Repo
}

func (s repoSource) Resolve(ctx context.Context, ref string) (string, error) {
	rev, err := s.cache.Resolve(ctx, s.repo, ref)
	return rev, stalledIf(err)
}

func (s repoSource) Checkout(ctx context.Context, ref, revision string) (string, func(), error) {
	dir, release, err := s.cache.Hold(ctx, s.repo, ref, revision)
	return dir, release, stalledIf(err)
}

func (s repoSource) Commit(ctx context.Context, ref, spec string) (string, error) {
	rev, err := s.cache.Commit(ctx, s.repo, ref, spec)
	return rev, stalledIf(err)
}

// stalledIf marks the source's error classes that retrying cannot fix (a ref that does not
// exist, a rejected credential, an untrusted host key, a configuration that cannot work) as
// reconciler.ErrStalled: the app then waits an interval, not a backoff of seconds.
func stalledIf(err error) error {
	for _, class := range []error{source.ErrNotFound, source.ErrAuth, source.ErrHostKey, source.ErrConfig} {
		if errors.Is(err, class) {
			return fmt.Errorf("%w (%w)", err, reconciler.ErrStalled)
		}
	}
	return err
}

// loader loads an app's manifests from a checkout, as its driver expects them.
func loader(a config.App) reconciler.Loader {
	if a.Driver == "kubernetes" {
		return func(ctx context.Context, checkout, revision string) (*manifests.Bundle, error) {
			objs, err := manifests.LoadKube(ctx, manifests.KubeOptions{
				Root: checkout, Path: a.Path, AllowRemoteBases: a.Kustomize.AllowRemoteBases,
			})
			if err != nil {
				return nil, err
			}
			return &manifests.Bundle{Revision: revision, Objects: objs}, nil
		}
	}
	return func(ctx context.Context, checkout, revision string) (*manifests.Bundle, error) {
		c, err := manifests.LoadCompose(ctx, manifests.ComposeOptions{
			Root: checkout, Path: a.Path, Files: a.Compose.Files, EnvFiles: a.Compose.EnvFiles,
			Profiles: a.Compose.Profiles, Project: a.Compose.Project,
		})
		if err != nil {
			return nil, err
		}
		return &manifests.Bundle{Revision: revision, Compose: c}, nil
	}
}

// secretFile returns a reader of a credential file, trimmed, read at each use so that
// rotation needs no restart; nil when no file is configured.
func secretFile(path string) func() (string, error) {
	if path == "" {
		return nil
	}
	return func() (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("read %s: %w", path, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
}
