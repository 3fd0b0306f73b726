package kubernetes

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/shipwatch/shipwatch/drivers"
)

// defaultSyncWait bounds how long a Plan waits for a new informer's first list before it
// plans without the cache; a slow list must not make a plan slower than the uncached path.
const defaultSyncWait = 5 * time.Second

// objectCache makes a no-op Plan cheap: label-selected informers mirror each app's live
// objects, and a memo remembers, per object, that a desired object with a given hash was
// unchanged against a given live resourceVersion. While both still match, the dry-run apply
// would give the same answer, so Plan reuses it without a request.
type objectCache struct {
	dynamic dynamic.Interface
	mapper  meta.RESTMapper
	// ctx is owned by the Driver so informers outlive any one Plan; Close cancels it.
	ctx      context.Context
	cancel   context.CancelFunc
	syncWait time.Duration
	wg       sync.WaitGroup

	mu        sync.Mutex
	informers map[informerKey]cache.SharedIndexInformer
	memo      map[memoKey]memoEntry
}

// informerKey names one informer: an app's objects of one resource in one namespace ("" for
// cluster-scoped resources). The app is part of the key because the label selector is.
type informerKey struct{ app, resource, namespace string }

// memoKey includes the app so a result is never reused for another app.
type memoKey struct{ app, member string }

type memoEntry struct {
	hash   [sha256.Size]byte
	rv     string
	change drivers.Change
}

// observation is what Plan learned about one desired object before planning it.
type observation struct {
	key  memoKey
	hash [sha256.Size]byte
	// rv is the live resourceVersion in the informer cache; empty when the cache cannot
	// vouch for the object (not synced, kind unknown, object absent), which disables the memo.
	rv string
	// live is the cached live object (nil when rv is empty); the informer owns it, so it
	// must be copied before any change.
	live *unstructured.Unstructured
}

func newObjectCache(ctx context.Context, dyn dynamic.Interface, mapper meta.RESTMapper) *objectCache {
	// WithoutCancel: the informers belong to the Driver, not to the call that built it.
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	return &objectCache{
		dynamic:   dyn,
		mapper:    mapper,
		ctx:       cctx,
		cancel:    cancel,
		syncWait:  defaultSyncWait,
		informers: map[informerKey]cache.SharedIndexInformer{},
		memo:      map[memoKey]memoEntry{},
	}
}

// close stops every informer and waits for them.
func (c *objectCache) close() {
	c.cancel()
	c.wg.Wait()
}

// observe hashes the prepared desired object and reads its live resourceVersion from the
// app's informer, starting the informer on first use.
func (c *objectCache) observe(ctx context.Context, app string, obj *unstructured.Unstructured) observation {
	o := observation{key: memoKey{app: app, member: memberOf(obj).key()}}
	// encoding/json sorts map keys, so equal objects hash equally.
	raw, err := json.Marshal(obj.Object)
	if err != nil {
		return o
	}
	o.hash = sha256.Sum256(raw)
	if live := c.live(ctx, app, obj); live != nil {
		o.rv, o.live = live.GetResourceVersion(), live
	}
	return o
}

// reuse returns the memoised change when the object and its live version are as they were.
func (c *objectCache) reuse(o observation) (drivers.Change, bool) {
	if o.rv == "" {
		return drivers.Change{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.memo[o.key]
	if !ok || e.rv != o.rv || e.hash != o.hash {
		return drivers.Change{}, false
	}
	return e.change, true
}

// remember memoises an unchanged result. The resourceVersion is the one read from the cache
// before the dry-run: the dry-run saw that version or a newer one, so while the cache still
// shows it, the answer holds; once the cache moves on, the entry stops matching.
func (c *objectCache) remember(o observation, ch drivers.Change) {
	if o.rv == "" || ch.Action != drivers.ActionUnchanged {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.memo[o.key] = memoEntry{hash: o.hash, rv: o.rv, change: ch}
}

// forget drops the entries of objects an Apply touched.
func (c *objectCache) forget(app string, members []member) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range members {
		delete(c.memo, memoKey{app: app, member: m.key()})
	}
}

// live returns the cached live object, or nil when the cache cannot say.
func (c *objectCache) live(ctx context.Context, app string, obj *unstructured.Unstructured) *unstructured.Unstructured {
	gvk := obj.GroupVersionKind()
	mapping, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil
	}
	ns := obj.GetNamespace()
	if mapping.Scope.Name() != meta.RESTScopeNameNamespace {
		ns = metav1.NamespaceAll
	}
	inf := c.informer(app, mapping.Resource, ns)
	if inf == nil || !c.synced(ctx, inf) {
		return nil
	}
	key := obj.GetName()
	if ns != metav1.NamespaceAll {
		key = ns + "/" + key
	}
	item, ok, err := inf.GetStore().GetByKey(key)
	if err != nil || !ok {
		return nil
	}
	u, ok := item.(*unstructured.Unstructured)
	if !ok || u.GetLabels()[LabelApp] != app {
		return nil
	}
	return u
}

// informer returns the app's informer for gvr in ns, starting it if needed; nil once closed.
func (c *objectCache) informer(app string, gvr schema.GroupVersionResource, ns string) cache.SharedIndexInformer {
	k := informerKey{app: app, resource: gvr.GroupResource().String(), namespace: ns}
	c.mu.Lock()
	defer c.mu.Unlock()
	if inf, ok := c.informers[k]; ok {
		return inf
	}
	if c.ctx.Err() != nil {
		return nil
	}
	sel := labels.SelectorFromSet(labels.Set{LabelApp: app}).String()
	inf := filteredInformer(c.dynamic, gvr, ns, sel, "")
	c.informers[k] = inf
	c.wg.Go(func() { inf.RunWithContext(c.ctx) })
	return inf
}

// synced waits, within the plan's ctx and syncWait, for the informer's first list.
func (c *objectCache) synced(ctx context.Context, inf cache.SharedIndexInformer) bool {
	if inf.HasSynced() {
		return true
	}
	wctx, cancel := context.WithTimeout(ctx, c.syncWait)
	defer cancel()
	return cache.WaitForCacheSync(wctx.Done(), inf.HasSynced)
}

// filteredInformer builds an informer over gvr in ns (all namespaces when empty) limited by
// label and field selectors; resync is off because nothing here needs periodic replays.
func filteredInformer(dyn dynamic.Interface, gvr schema.GroupVersionResource, ns, labelSel, fieldSel string) cache.SharedIndexInformer {
	return dynamicinformer.NewFilteredDynamicInformer(dyn, gvr, ns, 0, cache.Indexers{},
		func(o *metav1.ListOptions) {
			o.LabelSelector = labelSel
			o.FieldSelector = fieldSel
		}).Informer()
}

// touched lists every object an Apply of p may write: the desired objects and the pruned.
func (p *payload) touched() []member {
	out := make([]member, 0, len(p.objects)+len(p.prune))
	for _, o := range p.objects {
		out = append(out, memberOf(o))
	}
	return append(out, p.prune...)
}
