package kubernetes

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/manifests"
)

// requestCounter counts the requests that name one object of a resource (GET, PATCH, ...
// on .../<resource>/<name>), leaving out lists and watches, which the informers make.
type requestCounter struct {
	next     http.RoundTripper
	resource string

	mu    sync.Mutex
	count map[string]int // "METHOD path" → requests
}

func (c *requestCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.Contains(r.URL.Path, "/"+c.resource+"/") && r.URL.Query().Get("watch") == "" {
		c.mu.Lock()
		c.count[r.Method+" "+r.URL.Path]++
		c.mu.Unlock()
	}
	return c.next.RoundTrip(r)
}

// take returns the requests counted since the last take.
func (c *requestCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.count
	c.count = map[string]int{}
	return out
}

func cacheBundle(ns string, n int, value string) *manifests.Bundle {
	objects := []*unstructured.Unstructured{obj("v1", "Namespace", "", ns, nil)}
	for i := range n {
		objects = append(objects, obj("v1", "ConfigMap", ns, fmt.Sprintf("cm-%d", i),
			map[string]any{"data": map[string]any{"k": value}}))
	}
	return &manifests.Bundle{Revision: "rev", Objects: objects}
}

// waitCached waits until the driver's cache shows the object with the change want checks
// for. It looks at content, not at one resourceVersion: a controller may update the object
// (its status) again right after the change, and the cache then never holds that version.
func waitCached(t *testing.T, d *Driver, app string, o *unstructured.Unstructured, want func(*unstructured.Unstructured) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if live := d.cache.live(t.Context(), app, o); live != nil && want(live) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("cache never showed the change to %s", refOf(o))
}

// fieldIs returns a check that the object's field at path equals value.
func fieldIs(value any, path ...string) func(*unstructured.Unstructured) bool {
	return func(u *unstructured.Unstructured) bool {
		got, ok, err := unstructured.NestedFieldNoCopy(u.Object, path...)
		return err == nil && ok && got == value
	}
}

func TestIntegrationNoOpPlanUsesCache(t *testing.T) {
	cfg := rest.CopyConfig(needCluster(t))
	counter := &requestCounter{resource: "configmaps", count: map[string]int{}}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		counter.next = rt
		return counter
	})
	id := suffix(t)
	ns := "cache-" + id
	d, err := New(t.Context(), Options{Config: cfg, Namespace: ns, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	app := drivers.App{Name: "cache-" + id}
	t.Cleanup(func() { cleanupApp(t, d, app) })
	const n = 5
	b := cacheBundle(ns, n, "v1")
	apply(t, d, plan(t, d, app, b), true)

	// The first plan after the apply dry-runs every object (Apply cleared the memo)...
	if p := plan(t, d, app, b); !p.InSync() {
		t.Fatalf("plan after apply not in sync:\n%s", p)
	}
	if got := counter.take(); len(got) < n {
		t.Errorf("first no-op plan made requests for %d configmaps, want all %d: %v", len(got), n, got)
	}
	// ...the second reuses those results and asks the API server nothing about them.
	if p := plan(t, d, app, b); !p.InSync() {
		t.Fatalf("second no-op plan not in sync:\n%s", p)
	}
	if got := counter.take(); len(got) != 0 {
		t.Errorf("second no-op plan made per-object requests: %v", got)
	}

	// Another field manager changes an object: once the watch delivers the new
	// resourceVersion, the next plan must see the drift.
	cm := obj("v1", "ConfigMap", ns, "cm-1", nil)
	patch := client.RawPatch(types.MergePatchType, []byte(`{"data":{"k":"edited"}}`))
	if err := d.client.Patch(t.Context(), cm, patch, client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatal(err)
	}
	waitCached(t, d, app.Name, cm, fieldIs("edited", "data", "k"))
	p := plan(t, d, app, b)
	wantActions(t, p.Changes, map[string]drivers.Action{"ConfigMap/" + ns + "/cm-1": drivers.ActionUpdate})
	if got := counter.take(); len(got) == 0 {
		t.Error("plan after a foreign change made no request for the changed object")
	}

	// A changed desired object is dry-run again even though the live one did not move.
	p = plan(t, d, app, cacheBundle(ns, n, "v2"))
	if len(p.Changes) != n+1 || changesByRef(p.Changes)["ConfigMap/"+ns+"/cm-0"].Action != drivers.ActionUpdate {
		t.Errorf("plan of a changed bundle:\n%s", p)
	}
}

func TestIntegrationCacheIsPerApp(t *testing.T) {
	d := newDriver(t, "default")
	t.Cleanup(func() { _ = d.Close() })
	id := suffix(t)
	ns := "cacheapp-" + id
	a := drivers.App{Name: "a-" + id}
	t.Cleanup(func() { cleanupApp(t, d, a) })
	b := cacheBundle(ns, 1, "v1")
	apply(t, d, plan(t, d, a, b), true)
	plan(t, d, a, b) // memoises "unchanged" for app a

	// The same objects desired by another app belong to a: the memo of a must not hide that.
	other := drivers.App{Name: "b-" + id}
	if _, err := d.Plan(t.Context(), other, b); err == nil {
		t.Error("another app planning app a's objects got no error")
	}
}
