// Package kubernetes converges an app's Kubernetes objects with server-side apply (field
// manager "shipwatch"), keeps the app's inventory in the cluster as a KEP-3659 ApplySet so any
// daemon instance prunes correctly, and reports health with kstatus.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/pkg/ssa"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/shipwatch/shipwatch/drivers"
)

// Labels and annotations shipwatch sets or reads on Kubernetes objects.
const (
	// FieldManager is the server-side apply field manager of every write.
	FieldManager = "shipwatch"
	// LabelApp carries the app name on every applied object; nothing without it is pruned.
	LabelApp = "dev.shipwatch.app"
	// AnnotationRecreate, set to "true" on a desired object, allows replacing it when an
	// immutable field changes; without it such a change is an error.
	AnnotationRecreate = "shipwatch.dev/recreate"
	// DefaultNamespace is used when Options.Namespace is empty.
	DefaultNamespace = "default"
)

// Options configures a Driver.
type Options struct {
	// Config reaches the API server; see NewConfig.
	Config *rest.Config
	// Namespace is given to namespaced objects that name none, and holds each app's
	// inventory parent Secret. Empty means "default".
	Namespace string
	// Version is written into the ApplySet tooling annotation (shipwatch/<version>); empty
	// means "dev".
	Version string
	// Logger receives the driver's logs; nil discards them.
	Logger *slog.Logger
	// ForceConflicts says, by app name, whether the app may take fields that another field
	// manager owns on objects it never applied (an adopted object, a field an autoscaler
	// owns). Otherwise, and when nil, such a field is a conflict that fails the plan
	// (ErrFieldConflict). Objects an app applied before are always applied with force: a
	// field taken from them is drift. It is per app because apps of one cluster and
	// namespace share a Driver.
	ForceConflicts func(app string) bool
}

// Driver converges Kubernetes apps. Its only per-app state is a cache that saves requests
// (informers and memoised no-op results); the inventory lives in the cluster, so it is safe
// for concurrent use by different apps and a fresh Driver continues where another left off.
// Call Close to stop the informers.
type Driver struct {
	client    client.Client
	dynamic   dynamic.Interface
	mapper    meta.RESTMapper
	manager   *ssa.ResourceManager
	namespace string
	version   string
	log       *slog.Logger
	// forceConflicts is Options.ForceConflicts; see forces.
	forceConflicts func(app string) bool
	// cache holds informers and no-op memos that live until Close.
	cache *objectCache
}

var _ drivers.Driver = (*Driver)(nil)

// NewConfig loads a client configuration. An empty kubeconfig tries the in-cluster
// configuration first (unless a context is named), then KUBECONFIG and ~/.kube/config; a
// non-empty context selects that kubeconfig context instead of the current one.
func NewConfig(kubeconfig, kubeContext string) (*rest.Config, error) {
	if kubeconfig == "" && kubeContext == "" {
		if cfg, err := rest.InClusterConfig(); err == nil {
			cfg.UserAgent = FieldManager
			return cfg, nil
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: kubeContext}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %q (context %q): %w", kubeconfig, kubeContext, err)
	}
	cfg.UserAgent = FieldManager
	return cfg, nil
}

// New connects to the API server behind opts.Config and checks that it answers.
func New(ctx context.Context, opts Options) (*Driver, error) {
	if opts.Config == nil {
		return nil, errors.New("kubernetes driver: no client config")
	}
	cfg := rest.CopyConfig(opts.Config)
	if cfg.UserAgent == "" {
		cfg.UserAgent = FieldManager
	}
	if cfg.QPS == 0 {
		// client-go's default of 5 requests/s (burst 10) made a 100-object first apply take
		// 98 s instead of 7 s (docs/benchmarks.md); a plan costs two requests per object.
		cfg.QPS, cfg.Burst = 100, 200
	}
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes driver: http client: %w", err)
	}
	mapper, err := apiutil.NewDynamicRESTMapper(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("kubernetes driver: rest mapper: %w", err)
	}
	c, err := client.New(cfg, client.Options{HTTPClient: httpClient, Mapper: mapper})
	if err != nil {
		return nil, fmt.Errorf("kubernetes driver: client: %w", err)
	}
	dyn, err := dynamic.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("kubernetes driver: dynamic client: %w", err)
	}
	if err := ping(ctx, httpClient, cfg); err != nil {
		return nil, err
	}
	ns := opts.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	version := opts.Version
	if version == "" {
		version = "dev"
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	poller := polling.NewStatusPoller(c, mapper, polling.Options{})
	return &Driver{
		client:         c,
		dynamic:        dyn,
		mapper:         mapper,
		manager:        ssa.NewResourceManager(c, poller, ssa.Owner{Field: FieldManager, Group: "shipwatch.dev"}),
		namespace:      ns,
		version:        version,
		log:            log.With("driver", "kubernetes"),
		forceConflicts: opts.ForceConflicts,
		cache:          newObjectCache(ctx, dyn, mapper),
	}, nil
}

// forces says whether app takes conflicting fields on objects it did not apply before.
func (d *Driver) forces(app string) bool {
	return d.forceConflicts != nil && d.forceConflicts(app)
}

// Close stops the informers that Plan started; the Driver must not be used afterwards.
func (d *Driver) Close() error {
	d.cache.close()
	return nil
}

// ping asks the API server for /version so a wrong address or credential fails at start.
func ping(ctx context.Context, httpClient *http.Client, cfg *rest.Config) error {
	rc, err := rest.UnversionedRESTClientForConfigAndClient(withDefaults(cfg), httpClient)
	if err != nil {
		return fmt.Errorf("kubernetes driver: rest client: %w", err)
	}
	if err := rc.Get().AbsPath("/version").Do(ctx).Error(); err != nil {
		return fmt.Errorf("kubernetes driver: reach api server %s: %w", cfg.Host, err)
	}
	return nil
}

// withDefaults fills what an unversioned REST client insists on.
func withDefaults(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	if c.NegotiatedSerializer == nil {
		c.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	}
	return c
}
