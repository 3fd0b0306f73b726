package kubernetes

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/distribution/reference"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/shipwatch/shipwatch/drivers"
)

var _ drivers.ImageReporter = (*Driver)(nil)

// Images reports, per container of each workload in the app's inventory (Deployment,
// StatefulSet, DaemonSet, Job, CronJob), the image as the live object writes it, and the
// registry digest its pods run. The digest is read from the pods' container statuses
// (imageID, which the kubelet sets from the runtime: "docker-pullable://repo@sha256:..." or
// "repo@sha256:..."), only from pods the workload controls that run the same reference, and
// only when the digest is in the reference's own repository and all such pods agree; an
// image reference written by digest is its own digest. Otherwise it is empty: no pod has
// started yet, the runtime knows no registry digest (a local image, or a simulated node such
// as kwok's, which sets no imageID), or the pods run different digests of one tag.
func (d *Driver) Images(ctx context.Context, app drivers.App) ([]drivers.Image, error) {
	inv, err := d.readInventory(ctx, app.Name)
	if err != nil {
		return nil, fmt.Errorf("app %s: images: %w", app.Name, err)
	}
	var out []drivers.Image
	for _, m := range inv.Members {
		w, err := d.workload(ctx, m)
		if err != nil {
			return nil, fmt.Errorf("app %s: images: %w", app.Name, err)
		}
		if w == nil {
			continue
		}
		pods, err := d.workloadPods(ctx, w)
		if err != nil {
			return nil, fmt.Errorf("app %s: images: %s: %w", app.Name, m.ref(), err)
		}
		for _, c := range slices.Concat(w.spec.Containers, w.spec.InitContainers) {
			digest, agreed := runningDigest(pods, c.Name, c.Image)
			if !agreed {
				d.log.WarnContext(ctx, "pods of one workload run different digests of an image; no digest reported",
					"app", app.Name, "resource", m.ref().String(), "image", c.Image)
			}
			out = append(out, drivers.Image{Resource: m.ref(), Ref: c.Image, Digest: digest})
		}
	}
	return out, nil
}

// workload is a live workload: its identity, how its pods are found and their template.
type workload struct {
	obj metav1.Object
	// selector selects its pods (for a CronJob: nil; its Jobs' selectors do).
	selector *metav1.LabelSelector
	spec     corev1.PodSpec
	// viaReplicaSets is set for a Deployment, whose pods are owned by its ReplicaSets;
	// viaJobs for a CronJob, whose pods are owned by its Jobs.
	viaReplicaSets, viaJobs bool
}

// workload reads member m when it is a workload kind; nil for other kinds and for a
// workload that is gone.
func (d *Driver) workload(ctx context.Context, m member) (*workload, error) {
	var obj client.Object
	switch m.gk().String() {
	case "Deployment.apps":
		obj = &appsv1.Deployment{}
	case "StatefulSet.apps":
		obj = &appsv1.StatefulSet{}
	case "DaemonSet.apps":
		obj = &appsv1.DaemonSet{}
	case "Job.batch":
		obj = &batchv1.Job{}
	case "CronJob.batch":
		obj = &batchv1.CronJob{}
	default:
		return nil, nil
	}
	if err := d.client.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: m.Name}, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("get %s: %w", m.ref(), err)
	}
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return &workload{obj: o, selector: o.Spec.Selector, spec: o.Spec.Template.Spec, viaReplicaSets: true}, nil
	case *appsv1.StatefulSet:
		return &workload{obj: o, selector: o.Spec.Selector, spec: o.Spec.Template.Spec}, nil
	case *appsv1.DaemonSet:
		return &workload{obj: o, selector: o.Spec.Selector, spec: o.Spec.Template.Spec}, nil
	case *batchv1.Job:
		return &workload{obj: o, selector: o.Spec.Selector, spec: o.Spec.Template.Spec}, nil
	case *batchv1.CronJob:
		return &workload{obj: o, spec: o.Spec.JobTemplate.Spec.Template.Spec, viaJobs: true}, nil
	}
	return nil, nil
}

// workloadPods lists the pods the workload controls, directly or through its ReplicaSets
// or Jobs, that are not being deleted.
func (d *Driver) workloadPods(ctx context.Context, w *workload) ([]corev1.Pod, error) {
	ns := w.obj.GetNamespace()
	owners := map[types.UID]bool{w.obj.GetUID(): true}
	var selectors []*metav1.LabelSelector
	switch {
	case w.viaReplicaSets:
		var rss appsv1.ReplicaSetList
		if err := d.list(ctx, &rss, ns, w.selector); err != nil {
			return nil, err
		}
		objs := make([]metav1.Object, len(rss.Items))
		for i := range rss.Items {
			objs[i] = &rss.Items[i]
		}
		owners = controlled(owners, objs)
		selectors = []*metav1.LabelSelector{w.selector}
	case w.viaJobs:
		var jobs batchv1.JobList
		if err := d.list(ctx, &jobs, ns, nil); err != nil {
			return nil, err
		}
		objs := make([]metav1.Object, len(jobs.Items))
		for i := range jobs.Items {
			objs[i] = &jobs.Items[i]
		}
		owners = controlled(owners, objs)
		for _, j := range jobs.Items {
			if owners[j.UID] {
				selectors = append(selectors, j.Spec.Selector)
			}
		}
	default:
		selectors = []*metav1.LabelSelector{w.selector}
	}
	var out []corev1.Pod
	for _, sel := range selectors {
		var pods corev1.PodList
		if err := d.list(ctx, &pods, ns, sel); err != nil {
			return nil, err
		}
		for _, p := range pods.Items {
			if c := metav1.GetControllerOf(&p); c != nil && owners[c.UID] && p.DeletionTimestamp == nil {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// controlled returns the UIDs of the objects that a controller in parents controls.
func controlled(parents map[types.UID]bool, objs []metav1.Object) map[types.UID]bool {
	out := map[types.UID]bool{}
	for _, o := range objs {
		if c := metav1.GetControllerOfNoCopy(o); c != nil && parents[c.UID] {
			out[o.GetUID()] = true
		}
	}
	return out
}

// list lists objects of one namespace: all of them for a nil selector, none for an empty or
// invalid one (as the controllers treat them).
func (d *Driver) list(ctx context.Context, list client.ObjectList, ns string, sel *metav1.LabelSelector) error {
	opts := []client.ListOption{client.InNamespace(ns)}
	if sel != nil {
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil || s.Empty() {
			return nil
		}
		opts = append(opts, client.MatchingLabelsSelector{Selector: s})
	}
	if err := d.client.List(ctx, list, opts...); err != nil {
		return fmt.Errorf("list %T in %s: %w", list, ns, err)
	}
	return nil
}

// runningDigest is the registry digest, in image's repository, that the pods run for their
// container name with that image; agreed is false when they run different ones (and the
// digest is then empty). An image written by digest is its own digest.
func runningDigest(pods []corev1.Pod, name, image string) (digest string, agreed bool) {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return "", true // a reference the API server accepted but we cannot name: no digest claimed
	}
	if c, ok := named.(reference.Canonical); ok {
		byDigest, err := reference.WithDigest(reference.TrimNamed(named), c.Digest())
		if err == nil {
			return reference.FamiliarString(byDigest), true
		}
	}
	seen := map[string]bool{}
	for _, p := range pods {
		if !runs(p.Spec, name, image) {
			continue // an older or newer template's pod
		}
		for _, st := range slices.Concat(p.Status.ContainerStatuses, p.Status.InitContainerStatuses) {
			if st.Name != name {
				continue
			}
			if d := imageDigest(st.ImageID, named); d != "" {
				seen[d] = true
			}
		}
	}
	if len(seen) > 1 {
		return "", false
	}
	for d := range seen {
		return d, true
	}
	return "", true
}

// runs reports whether a pod's spec has container name with image.
func runs(spec corev1.PodSpec, name, image string) bool {
	return slices.ContainsFunc(slices.Concat(spec.Containers, spec.InitContainers), func(c corev1.Container) bool {
		return c.Name == name && c.Image == image
	})
}

// imageDigest turns a container status's imageID into a digest reference when it is one in
// the repository of named: "docker-pullable://repo@sha256:..." (Docker runtimes) or
// "repo@sha256:..." (containerd, CRI-O). An image ID without a repository ("sha256:...",
// "docker://sha256:...", a local image) is no registry digest: "".
func imageDigest(imageID string, named reference.Named) string {
	id := strings.TrimPrefix(imageID, "docker-pullable://")
	if id == "" || strings.Contains(id, "://") {
		return ""
	}
	ref, err := reference.ParseNormalizedNamed(id)
	if err != nil {
		return ""
	}
	c, ok := ref.(reference.Canonical)
	if !ok || ref.Name() != named.Name() {
		return ""
	}
	byDigest, err := reference.WithDigest(reference.TrimNamed(ref), c.Digest())
	if err != nil {
		return ""
	}
	return reference.FamiliarString(byDigest)
}
