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
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"

	"github.com/shipwatch/shipwatch/drivers"
)

// Watch reports adds, updates and deletes of the app's objects after the initial list. It
// listens to the same label-filtered informers (dev.shipwatch.app=<app>) that Plan reads
// from, for the kinds and namespaces in the app's inventory: an informer updates its store
// before it notifies, so a plan triggered by an event always sees that event's object. It
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
		w.stop()
	}()
	return w.out, nil
}

// listener is one handler this Watch added to a shared informer.
type listener struct {
	informer     cache.SharedIndexInformer
	registration cache.ResourceEventHandlerRegistration
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

	mu        sync.Mutex
	started   map[string]bool // "<resource>.<group>/<namespace>" informers listened to
	listeners []listener

	// sending guards out: emits hold it shared, stop exclusively, so out is never closed
	// under a send.
	sending sync.RWMutex
	closed  bool
}

// stop detaches this Watch from the shared informers and closes out.
func (w *watcher) stop() {
	w.mu.Lock()
	for _, l := range w.listeners {
		_ = l.informer.RemoveEventHandler(l.registration)
	}
	w.listeners = nil
	w.mu.Unlock()
	w.sending.Lock()
	defer w.sending.Unlock()
	w.closed = true
	close(w.out)
}

// watchMembers listens to the app's informer of every (resource, namespace) among members.
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
		inf := w.d.cache.informer(w.app, mapping.Resource, ns)
		if inf == nil {
			return // the Driver is closed
		}
		reg, err := inf.AddEventHandler(w.memberHandler())
		if err != nil {
			w.log.WarnContext(ctx, "watch handler not added", "resource", m.ref().String(), "err", err)
			continue
		}
		w.started[key] = true
		w.listeners = append(w.listeners, listener{informer: inf, registration: reg})
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

// start runs one filtered informer of this Watch's own until ctx ends.
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
	w.sending.RLock()
	defer w.sending.RUnlock()
	if w.closed {
		return
	}
	// Blocking (rather than dropping) keeps every hint; the informer queues meanwhile.
	select {
	case w.out <- ev:
	case <-w.done:
	}
}
