package kubernetes

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/distribution/reference"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/manifests"
)

// Digests the image tests use: any 64 hex digits are a valid sha256 digest.
var (
	digestA = "sha256:" + strings.Repeat("a", 64)
	digestB = "sha256:" + strings.Repeat("b", 64)
	digestC = "sha256:" + strings.Repeat("c", 64)
)

func TestImageDigestFromImageID(t *testing.T) {
	named, err := reference.ParseNormalizedNamed("registry.example/web:1.0")
	if err != nil {
		t.Fatal(err)
	}
	hub, err := reference.ParseNormalizedNamed("nginx:1.27")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		imageID string
		named   reference.Named
		want    string
	}{
		{"docker-pullable://registry.example/web@" + digestA, named, "registry.example/web@" + digestA},
		{"registry.example/web@" + digestA, named, "registry.example/web@" + digestA},
		// containerd spells Docker Hub images out in full; the digest is given as users write it.
		{"docker.io/library/nginx@" + digestA, hub, "nginx@" + digestA},
		{"docker-pullable://nginx@" + digestA, hub, "nginx@" + digestA},
		// No registry digest: a bare image ID, Docker's local image ID, nothing (kwok).
		{digestA, named, ""},
		{"docker://" + digestA, named, ""},
		{"", named, ""},
		// A digest of another repository is not one of the reference's.
		{"registry.example/other@" + digestA, named, ""},
		{"docker-pullable://registry.example/web:1.0", named, ""},
		{"not a reference", named, ""},
	}
	for _, c := range cases {
		if got := imageDigest(c.imageID, c.named); got != c.want {
			t.Errorf("imageDigest(%q, %s) = %q, want %q", c.imageID, c.named, got, c.want)
		}
	}
}

// imagePod is a pod running container name with image, whose status reports imageID.
func imagePod(name, image, imageID string) corev1.Pod {
	return corev1.Pod{
		Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: image}}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: name, Image: image, ImageID: imageID}}},
	}
}

func TestImageRunningDigest(t *testing.T) {
	const web = "registry.example/web:1.0"
	byDigest := "registry.example/web@" + digestC
	cases := []struct {
		what, image string
		pods        []corev1.Pod
		want        string
		agreed      bool
	}{
		{"no pods yet", web, nil, "", true},
		{"pods agree (both runtime spellings)", web, []corev1.Pod{
			imagePod("web", web, "docker-pullable://registry.example/web@"+digestA),
			imagePod("web", web, "registry.example/web@"+digestA),
		}, "registry.example/web@" + digestA, true},
		{"a pod not started yet does not count", web, []corev1.Pod{
			imagePod("web", web, ""), imagePod("web", web, "registry.example/web@"+digestA),
		}, "registry.example/web@" + digestA, true},
		{"pods of another template (a rollout) are left out", web, []corev1.Pod{
			imagePod("web", "registry.example/web:0.9", "registry.example/web@"+digestB),
			imagePod("web", web, "registry.example/web@"+digestA),
		}, "registry.example/web@" + digestA, true},
		{"another container's status is left out", web, []corev1.Pod{
			imagePod("proxy", web, "registry.example/web@"+digestB),
			imagePod("web", web, "registry.example/web@"+digestA),
		}, "registry.example/web@" + digestA, true},
		{"a tag pulled twice at different digests", web, []corev1.Pod{
			imagePod("web", web, "registry.example/web@"+digestA),
			imagePod("web", web, "registry.example/web@"+digestB),
		}, "", false},
		{"an image written by digest is its own", byDigest, nil, byDigest, true},
		{"a tag and a digest: the digest", "registry.example/web:1.0@" + digestC, nil, byDigest, true},
	}
	for _, c := range cases {
		got, agreed := runningDigest(c.pods, "web", c.image)
		if got != c.want || agreed != c.agreed {
			t.Errorf("%s: runningDigest = %q, %t; want %q, %t", c.what, got, agreed, c.want, c.agreed)
		}
	}
}

// imageFixture is the image test's app: every workload kind, one with several containers,
// and a ConfigMap, which runs no image.
func imageFixture(ns string) *manifests.Bundle {
	template := func(labels map[string]any, spec map[string]any) map[string]any {
		return map[string]any{"metadata": map[string]any{"labels": labels}, "spec": spec}
	}
	containers := func(pairs ...string) []any {
		var out []any
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, map[string]any{"name": pairs[i], "image": pairs[i+1]})
		}
		return out
	}
	web := map[string]any{"app": "web"}
	workload := func(kind, name string, spec map[string]any) *unstructured.Unstructured {
		group := map[string]string{"Job": "batch/v1", "CronJob": "batch/v1"}[kind]
		if group == "" {
			group = "apps/v1"
		}
		return obj(group, kind, ns, name, map[string]any{"spec": spec})
	}
	selector := func(labels map[string]any) map[string]any { return map[string]any{"matchLabels": labels} }
	db, agent := map[string]any{"app": "db"}, map[string]any{"app": "agent"}
	job := map[string]any{"restartPolicy": "Never", "containers": containers("migrate", "registry.example/migrate:4")}
	return &manifests.Bundle{Revision: "rev", Objects: []*unstructured.Unstructured{
		obj("v1", "Namespace", "", ns, nil),
		obj("v1", "ConfigMap", ns, "config", map[string]any{"data": map[string]any{"k": "v"}}),
		workload("Deployment", "web", map[string]any{
			"replicas": int64(2), "selector": selector(web),
			"template": template(web, map[string]any{
				"initContainers": containers("init", "registry.example/init:1"),
				"containers":     containers("web", "registry.example/web:1.0", "proxy", "registry.example/proxy@"+digestC),
			}),
		}),
		workload("StatefulSet", "db", map[string]any{
			"serviceName": "db", "replicas": int64(1), "selector": selector(db),
			"template": template(db, map[string]any{"containers": containers("db", "registry.example/db:2")}),
		}),
		workload("DaemonSet", "agent", map[string]any{
			"selector": selector(agent),
			"template": template(agent, map[string]any{"containers": containers("agent", "registry.example/agent:3")}),
		}),
		workload("Job", "migrate", map[string]any{"template": map[string]any{"spec": job}}),
		workload("CronJob", "report", map[string]any{
			"schedule": "0 0 1 1 *", // not within a test: a CronJob with no Job yet
			"jobTemplate": map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
				"restartPolicy": "Never", "containers": containers("report", "registry.example/report:5"),
			}}}},
		}),
	}}
}

// TestIntegrationImages deploys every workload kind on the test cluster and reads their
// images. kwok, which plays the kubelet there, sets no imageID in container statuses, so the
// test first checks that (and that only references written by digest get one), then writes
// imageIDs into the pods' status as a kubelet does and checks the digests read from them.
func TestIntegrationImages(t *testing.T) {
	needCluster(t)
	d := newDriver(t, "default")
	var nodes corev1.NodeList
	if err := d.client.List(t.Context(), &nodes); err != nil || len(nodes.Items) == 0 {
		t.Skipf("no nodes (a cluster without kwok): %v", err)
	}
	id := suffix(t)
	ns := "swimg-" + id
	app := drivers.App{Name: "img-" + id, Revision: "rev"}
	t.Cleanup(func() { cleanupApp(t, d, app) })
	apply(t, d, plan(t, d, app, imageFixture(ns)), true)

	webPods := waitPods(t, d, ns, "app=web", 2)
	for _, p := range webPods {
		for _, st := range slices.Concat(p.Status.ContainerStatuses, p.Status.InitContainerStatuses) {
			if st.ImageID != "" {
				t.Fatalf("pod %s container %s: imageID %q; kwok (test/k8s/testenv.sh) sets none, and this test expects its pods", p.Name, st.Name, st.ImageID)
			}
		}
	}
	proxy := "registry.example/proxy@" + digestC
	want := []drivers.Image{
		{Resource: drivers.Ref{Kind: "DaemonSet", Namespace: ns, Name: "agent"}, Ref: "registry.example/agent:3"},
		{Resource: drivers.Ref{Kind: "Deployment", Namespace: ns, Name: "web"}, Ref: "registry.example/web:1.0"},
		{Resource: drivers.Ref{Kind: "Deployment", Namespace: ns, Name: "web"}, Ref: proxy, Digest: proxy},
		{Resource: drivers.Ref{Kind: "Deployment", Namespace: ns, Name: "web"}, Ref: "registry.example/init:1"},
		{Resource: drivers.Ref{Kind: "StatefulSet", Namespace: ns, Name: "db"}, Ref: "registry.example/db:2"},
		{Resource: drivers.Ref{Kind: "CronJob", Namespace: ns, Name: "report"}, Ref: "registry.example/report:5"},
		{Resource: drivers.Ref{Kind: "Job", Namespace: ns, Name: "migrate"}, Ref: "registry.example/migrate:4"},
	}
	wantImages(t, d, app, want, "as kwok runs them (no imageID)")

	// A kubelet's imageIDs, in both runtimes' spellings, for the web pods; a job pod ran a
	// local image (no registry digest); the DaemonSet's pod an image of another repository.
	setImageID(t, d, webPods[0], "web", "docker-pullable://registry.example/web@"+digestA)
	setImageID(t, d, webPods[1], "web", "registry.example/web@"+digestA)
	setImageID(t, d, webPods[0], "init", "registry.example/init@"+digestB)
	setImageID(t, d, waitPods(t, d, ns, "app=agent", 1)[0], "agent", "registry.example/other@"+digestB)
	setImageID(t, d, waitPods(t, d, ns, "batch.kubernetes.io/job-name=migrate", 1)[0], "migrate", "docker://"+digestB)
	setImageID(t, d, waitPods(t, d, ns, "app=db", 1)[0], "db", "registry.example/db@"+digestB)
	// A pod the workload does not control, with its labels and image, runs another digest.
	stray := strayPod(t, d, ns, "registry.example/web:1.0")
	setImageID(t, d, stray, "web", "registry.example/web@"+digestC)
	want[1].Digest = "registry.example/web@" + digestA
	want[3].Digest = "registry.example/init@" + digestB
	want[4].Digest = "registry.example/db@" + digestB
	wantImages(t, d, app, want, "with imageIDs")

	// The two web pods disagree: no digest can be claimed for the Deployment's web image.
	setImageID(t, d, webPods[1], "web", "registry.example/web@"+digestB)
	want[1].Digest = ""
	wantImages(t, d, app, want, "with pods running different digests of one tag")
}

// wantImages checks the app's images against want (in any order).
func wantImages(t *testing.T, d *Driver, app drivers.App, want []drivers.Image, when string) {
	t.Helper()
	got, err := d.Images(t.Context(), app)
	if err != nil {
		t.Fatalf("%s: images: %v", when, err)
	}
	key := func(i drivers.Image) string { return fmt.Sprintf("%s %s %s", i.Resource, i.Ref, i.Digest) }
	var g, w []string
	for _, i := range got {
		g = append(g, key(i))
	}
	for _, i := range want {
		w = append(w, key(i))
	}
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Errorf("%s: images\n  %s\nwant\n  %s", when, strings.Join(g, "\n  "), strings.Join(w, "\n  "))
	}
}

// waitPods waits until n pods match selector in ns, all with container statuses (started
// by kwok), and returns them.
func waitPods(t *testing.T, d *Driver, ns, selector string, n int) []corev1.Pod {
	t.Helper()
	sel, err := metav1.ParseToLabelSelector(selector)
	if err != nil {
		t.Fatal(err)
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	var pods corev1.PodList
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(90 * time.Second)
	for {
		if err := d.client.List(t.Context(), &pods, client.InNamespace(ns), client.MatchingLabelsSelector{Selector: s}); err != nil {
			t.Fatal(err)
		}
		started := 0
		for _, p := range pods.Items {
			if len(p.Status.ContainerStatuses) == len(p.Spec.Containers) {
				started++
			}
		}
		if len(pods.Items) == n && started == n {
			return pods.Items
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%s in %s: %d pods, %d started; want %d started within 90s", selector, ns, len(pods.Items), started, n)
		}
	}
}

// setImageID writes imageID into the status of pod's container (or init container) name, as
// a kubelet does once the container's image is pulled.
func setImageID(t *testing.T, d *Driver, pod corev1.Pod, name, imageID string) {
	t.Helper()
	for attempt := 0; attempt < 10; attempt++ {
		var p corev1.Pod
		if err := d.client.Get(t.Context(), client.ObjectKeyFromObject(&pod), &p); err != nil {
			t.Fatal(err)
		}
		statuses := slices.Concat(p.Status.ContainerStatuses, p.Status.InitContainerStatuses)
		if !slices.ContainsFunc(statuses, func(s corev1.ContainerStatus) bool { return s.Name == name }) {
			t.Fatalf("pod %s reports no status of container %s", p.Name, name)
		}
		for _, list := range [][]corev1.ContainerStatus{p.Status.ContainerStatuses, p.Status.InitContainerStatuses} {
			for j := range list {
				if list[j].Name == name {
					list[j].ImageID = imageID
				}
			}
		}
		err := d.client.Status().Update(t.Context(), &p)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			t.Fatalf("set imageID of %s/%s: %v", p.Name, name, err)
		}
	}
	t.Fatalf("set imageID of %s/%s: 10 conflicts", pod.Name, name)
}

// strayPod creates a pod with the web Deployment's labels and container that no controller
// owns, waits until kwok started it, and deletes it when the test ends.
func strayPod(t *testing.T, d *Driver, ns, image string) corev1.Pod {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "stray", Labels: map[string]string{"app": "web", "stray": "true"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: image}}},
	}
	if err := d.client.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.client.Delete(context.WithoutCancel(t.Context()), p) })
	return waitPods(t, d, ns, "stray=true", 1)[0]
}
