package kubernetes

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"

	"github.com/shipwatch/shipwatch/drivers"
)

// Watch runs label-filtered informers (dev.shipwatch.app=<app>) for the kinds and namespaces
// in the app's inventory and reports adds, updates and deletes after the initial list. It
// also watches the inventory parent, so kinds or namespaces an Apply adds later are watched
// too. Informers re-list and re-watch on their own; the channel closes when ctx ends.
func (d *Driver) Watch(ctx context.Context, app drivers.App) (<-chan drivers.Event, error) {
	inv, err := d.readInventory(ctx, app.Name)
	if err != nil {
		return nil, fmt.Errorf("app %s: watch: %w", app.Name, err)
	}
	w := &watcher{
		d:       d,
		app:     app.Name,
		out:     make(chan drivers.Event, 64),
		done:    ctx.Done(),
		started: map[string]bool{},
		log:     d.log.With("app", app.Name),
	}
	w.watchMembers(ctx, inv.Members)
	w.watchParent(ctx, inv)
	go func() {
		<-ctx.Done()
		w.wg.Wait()
		close(w.out)
	}()
	return w.out, nil
}

// watcher owns the informers of one Watch call.
type watcher struct {
	d   *Driver
	app string
	out chan drivers.Event
	// done is the Watch context's, so a blocked send ends with it.
	done <-chan struct{}
	log  *slog.Logger
	wg   sync.WaitGroup

	mu      sync.Mutex
	started map[string]bool // "<resource>.<group>/<namespace>" informers running
}

// watchMembers starts an informer for every (resource, namespace) among members that has none.
func (w *watcher) watchMembers(ctx context.Context, members []member) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range members {
		mapping, err := w.d.mapper.RESTMapping(m.gk(), m.Version)
		if err != nil {
			w.log.WarnContext(ctx, "cannot watch kind", "resource", m.ref().String(), "err", err)
			continue
		}
		ns := m.Namespace
		if mapping.Scope.Name() != meta.RESTScopeNameNamespace {
			ns = metav1.NamespaceAll
		}
		key := mapping.Resource.GroupResource().String() + "/" + ns
		if w.started[key] || ctx.Err() != nil {
			continue
		}
		w.started[key] = true
		w.start(ctx, mapping.Resource, ns, labels.SelectorFromSet(labels.Set{LabelApp: w.app}).String(), "",
			w.memberHandler())
	}
}

// watchParent follows the inventory parent so later Applies widen the watch.
func (w *watcher) watchParent(ctx context.Context, inv *inventory) {
	onParent := func(obj any) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return
		}
		raw, _, _ := unstructured.NestedString(u.Object, "data", inventoryKey)
		if raw == "" {
			return
		}
		members, err := decodeMembers(raw)
		if err != nil {
			w.log.WarnContext(ctx, "unreadable inventory", "err", err)
			return
		}
		w.watchMembers(ctx, members)
	}
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	selector := fields.OneTermEqualSelector("metadata.name", ParentName(inv.App)).String()
	w.start(ctx, gvr, inv.Namespace, "", selector, cache.ResourceEventHandlerFuncs{
		AddFunc:    onParent,
		UpdateFunc: func(_, obj any) { onParent(obj) },
	})
}

// start runs one filtered informer until ctx ends.
func (w *watcher) start(ctx context.Context, gvr schema.GroupVersionResource, ns, labelSel, fieldSel string, h cache.ResourceEventHandler) {
	inf := filteredInformer(w.d.dynamic, gvr, ns, labelSel, fieldSel)
	if _, err := inf.AddEventHandler(h); err != nil {
		w.log.WarnContext(ctx, "watch handler not added", "err", err)
		return
	}
	w.wg.Go(func() { inf.RunWithContext(ctx) })
}

// memberHandler turns informer notifications into events. Objects found by the initial list
// are not news: the reconciler plans them anyway.
func (w *watcher) memberHandler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			if !initial {
				w.emit(obj, "ADDED")
			}
		},
		UpdateFunc: func(_, obj any) { w.emit(obj, "MODIFIED") },
		DeleteFunc: func(obj any) { w.emit(obj, "DELETED") },
	}
}

func (w *watcher) emit(obj any, reason string) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	ev := drivers.Event{Ref: refOf(u), Reason: reason, Time: time.Now()}
	// Blocking (rather than dropping) keeps every hint; the informer queues meanwhile.
	select {
	case w.out <- ev:
	case <-w.done:
	}
}
