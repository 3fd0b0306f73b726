package kubernetes

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/drivers/drivertest"
	"github.com/shipwatch/shipwatch/manifests"
)

// conformance adapts the shared driver suite to a real API server: the resources are
// ConfigMaps in a namespace of the app's own, removed by hand with a plain delete.
type conformance struct {
	d   *Driver
	ns  map[string]string // app name -> namespace
	cur string            // namespace of the app being rendered
}

func TestConformance(t *testing.T) {
	drivertest.Run(t, &conformance{d: newDriver(t, "default"), ns: map[string]string{}})
}

func (c *conformance) Driver() drivers.Driver { return c.d }

func (c *conformance) App(t *testing.T) drivers.App {
	s := suffix(t)
	app := drivers.App{Name: "conf-" + s, Revision: "rev1"}
	c.ns[app.Name] = "swconf-" + s
	t.Cleanup(func() { cleanupApp(t, c.d, app) })
	return app
}

func (c *conformance) Bundle(t *testing.T, app drivers.App, v drivertest.Variant) *manifests.Bundle {
	ns := c.ns[app.Name]
	c.cur = ns
	value := "a-1"
	if v == drivertest.ChangedA {
		value = "a-2"
	}
	objs := []*unstructured.Unstructured{
		obj("v1", "Namespace", "", ns, nil),
		obj("v1", "ConfigMap", ns, "a", map[string]any{"data": map[string]any{"value": value}}),
	}
	if v != drivertest.WithoutB {
		objs = append(objs, obj("v1", "ConfigMap", ns, "b", map[string]any{"data": map[string]any{"value": "b-1"}}))
	}
	return &manifests.Bundle{Revision: app.Revision, Objects: objs}
}

func (c *conformance) Ref(name string) drivers.Ref {
	return drivers.Ref{Kind: "ConfigMap", Namespace: c.cur, Name: name}
}

func (c *conformance) Remove(t *testing.T, app drivers.App, name string) {
	t.Helper()
	cm := obj("v1", "ConfigMap", c.ns[app.Name], name, nil)
	if err := c.d.client.Delete(t.Context(), cm); err != nil {
		t.Fatalf("kubectl delete configmap %s: %v", name, err)
	}
	// Plan trusts its watch cache for objects it found unchanged before, so the removal shows
	// once the watch has delivered it (milliseconds), not at the instant of the delete.
	deadline := time.Now().Add(10 * time.Second)
	for c.d.cache.live(t.Context(), app.Name, cm) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the watch cache still holds configmap %s 10s after its deletion", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
