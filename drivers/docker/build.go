package docker

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/manifests"
)

// ErrBuildFailed means the Engine's builder rejected the build (a Dockerfile step failed,
// a file it copies is missing): the same revision fails the same way, so it wraps
// drivers.ErrInvalidSpec and the app waits for a new commit.
var ErrBuildFailed = fmt.Errorf("image build failed (%w)", drivers.ErrInvalidSpec)

// desireBuild turns a service's build section into the image to build; nil without one.
func desireBuild(project string, s types.ServiceConfig, builds map[string]manifests.BuildContext) (*BuildSpec, error) {
	if s.Build == nil {
		return nil, nil
	}
	// A hand-made project could carry keys the loader refuses; each would change the image.
	rest := *s.Build
	rest.Context, rest.Dockerfile, rest.Args, rest.Target, rest.Labels, rest.NoCache, rest.Extensions = "", "", nil, "", nil, false, nil
	if !reflect.ValueOf(rest).IsZero() {
		return nil, fmt.Errorf("service %s: build: only context, dockerfile, args, target, labels, no_cache: %w", s.Name, ErrUnsupported)
	}
	bc, ok := builds[s.Name]
	if !ok || bc.Digest == "" {
		return nil, fmt.Errorf("service %s: build: no build context: the project must be loaded with manifests.LoadCompose (%w)", s.Name, drivers.ErrInvalidSpec)
	}
	b := &BuildSpec{
		Image:    cmp.Or(s.Image, project+"-"+s.Name),
		Context:  bc,
		Args:     map[string]*string(s.Build.Args),
		Target:   s.Build.Target,
		Labels:   map[string]string(s.Build.Labels),
		NoCache:  s.Build.NoCache,
		Services: []string{s.Name},
	}
	b.Digest = buildDigest(b)
	return b, nil
}

// buildDigest covers everything that makes the built image differ. NoCache is left out: it
// changes how the image is built, not what it is.
func buildDigest(b *BuildSpec) string {
	h := sha256.New()
	fmt.Fprintf(h, "context %s\ndockerfile %q\ntarget %q\n", b.Context.Digest, b.Context.Dockerfile, b.Target)
	for _, k := range slices.Sorted(maps.Keys(b.Args)) {
		if v := b.Args[k]; v != nil {
			fmt.Fprintf(h, "arg %q=%q\n", k, *v)
		} else {
			fmt.Fprintf(h, "arg %q unset\n", k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(b.Labels)) {
		fmt.Fprintf(h, "label %q=%q\n", k, b.Labels[k])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// shareBuilds makes services that build the same image share one BuildSpec, so it is built
// once; two services building one tag from different inputs is an error.
func shareBuilds(services []ServiceSpec) error {
	byImage := map[string]*BuildSpec{}
	for i := range services {
		b := services[i].Build
		if b == nil {
			continue
		}
		first, ok := byImage[b.Image]
		switch {
		case !ok:
			byImage[b.Image] = b
		case first.Digest != b.Digest:
			return fmt.Errorf("services %s and %s build image %s from different inputs: %w",
				first.Services[0], services[i].Name, b.Image, drivers.ErrInvalidSpec)
		default:
			first.Services = append(first.Services, services[i].Name)
			slices.Sort(first.Services)
			services[i].Build = first
		}
	}
	return nil
}

// desiredBuilds lists the distinct images to build, sorted by image.
func desiredBuilds(d *Desired) []*BuildSpec {
	var out []*BuildSpec
	if d == nil {
		return nil
	}
	for _, s := range d.Services {
		if s.Build != nil && !slices.Contains(out, s.Build) {
			out = append(out, s.Build)
		}
	}
	slices.SortFunc(out, func(a, b *BuildSpec) int { return strings.Compare(a.Image, b.Image) })
	return out
}

// normalTag is the form the Engine lists an image tag in: the familiar name with a tag.
func normalTag(ref string) string {
	ref = strings.TrimPrefix(ref, "docker.io/")
	ref = strings.TrimPrefix(ref, "library/")
	if strings.Contains(ref, "@") {
		return ref
	}
	if i := strings.LastIndex(ref, ":"); i < 0 || strings.Contains(ref[i:], "/") {
		ref += ":latest"
	}
	return ref
}

// observeImages reads the images of built services by reference: one Engine call, made
// only when a desired service has a build section.
func (d *Driver) observeImages(ctx context.Context, desired *Desired) ([]ObservedImage, error) {
	builds := desiredBuilds(desired)
	if len(builds) == 0 {
		return nil, nil
	}
	refs := make([]string, len(builds))
	for i, b := range builds {
		refs[i] = b.Image
	}
	res, err := d.api.ImageList(ctx, client.ImageListOptions{Filters: client.Filters{}.Add("reference", refs...)})
	if err != nil {
		return nil, fmt.Errorf("list images %s: %w", strings.Join(refs, ", "), err)
	}
	out := make([]ObservedImage, 0, len(res.Items))
	for _, img := range res.Items {
		out = append(out, ObservedImage{ID: img.ID, Tags: slices.Sorted(slices.Values(img.RepoTags)), Labels: img.Labels})
	}
	slices.SortFunc(out, func(a, b ObservedImage) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func findImage(images []ObservedImage, ref string) *ObservedImage {
	tag := normalTag(ref)
	for i := range images {
		if slices.Contains(images[i].Tags, tag) {
			return &images[i]
		}
	}
	return nil
}

// planImages plans a build for each image that is missing or was built from other inputs.
// Containers need no step of their own here: the build digest is in their spec hash.
func (p *planner) planImages() {
	for _, b := range desiredBuilds(p.desired) {
		ref := drivers.Ref{Kind: RefKindImage, Name: b.Image}
		live := findImage(p.observed.Images, b.Image)
		c := drivers.Change{Ref: ref, Action: drivers.ActionRecreate}
		switch {
		case live == nil:
			c.Action, c.Reason = drivers.ActionCreate, "image missing"
		case live.Labels[LabelBuildDigest] == "":
			c.Reason = "not built by shipwatch"
		case live.Labels[LabelBuildDigest] != b.Digest:
			c.Reason = "build context changed"
		default:
			p.add(drivers.Change{Ref: ref, Action: drivers.ActionUnchanged})
			continue
		}
		c.Reason += ": build for " + strings.Join(b.Services, ", ")
		idx := p.add(c)
		p.builds = append(p.builds, Step{Kind: StepBuildImage, Change: idx, Build: b})
	}
}

// buildImage builds one image with the classic builder (the Engines shipwatch targets may
// have no BuildKit), streaming the context from the checkout.
func (r *applyRun) buildImage(ctx context.Context, b *BuildSpec) error {
	if b == nil {
		return errors.New("build image: no build")
	}
	pr, pw := io.Pipe()
	written := make(chan error, 1)
	go func() {
		err := manifests.WriteContext(ctx, pw, b.Context)
		pw.CloseWithError(err)
		written <- err
	}()
	res, err := r.d.api.ImageBuild(ctx, pr, client.ImageBuildOptions{
		Tags:        []string{b.Image},
		Dockerfile:  b.Context.Dockerfile,
		BuildArgs:   b.Args,
		Target:      b.Target,
		Labels:      r.imageLabels(b),
		NoCache:     b.NoCache,
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1,
	})
	if err == nil {
		err = r.readBuild(res.Body, b)
		res.Body.Close()
	}
	pr.CloseWithError(errBuildDone) // the writer stops if the Engine stopped reading
	if werr := <-written; werr != nil && !errors.Is(werr, errBuildDone) {
		return fmt.Errorf("send build context: %w", werr)
	}
	delete(r.imageIDs, b.Image)
	switch {
	case err == nil:
		return nil
	case cerrdefs.IsInvalidArgument(err):
		// The Engine refuses a bad Dockerfile before streaming: the revision is wrong.
		return fmt.Errorf("build image %s from %s: %w: %w", b.Image, b.Context.Rel, ErrBuildFailed, err)
	}
	return fmt.Errorf("build image %s from %s: %w", b.Image, b.Context.Rel, err)
}

// errBuildDone closes the context pipe once the Engine has answered.
var errBuildDone = errors.New("build finished")

// imageLabels are compose's project and service labels, shipwatch's ownership and the
// build digest, over the user's build labels.
func (r *applyRun) imageLabels(b *BuildSpec) map[string]string {
	labels := r.ownLabels(b.Labels, map[string]string{
		LabelBuildDigest: b.Digest,
		LabelService:     strings.Join(b.Services, ","),
	})
	return labels
}

// buildMessage is one JSON message of the classic builder's output stream.
type buildMessage struct {
	Stream      string `json:"stream"`
	Error       string `json:"error"`
	ErrorDetail struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
}

// readBuild drains the build output, logging each Dockerfile step (not every line: RUN
// output could hold anything), and turns a builder error into ErrBuildFailed with the
// step that failed.
func (r *applyRun) readBuild(body io.Reader, b *BuildSpec) error {
	dec := json.NewDecoder(body)
	step := ""
	for {
		var msg buildMessage
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read build output: %w", err)
		}
		if text, ok := strings.CutPrefix(msg.Stream, "Step "); ok {
			step = "Step " + strings.TrimSpace(text)
			r.log.Info("build step", "resource", RefKindImage+"/"+b.Image, "action", truncate(step, 200))
		}
		if msg.Error != "" || msg.ErrorDetail.Message != "" {
			why := cmp.Or(msg.ErrorDetail.Message, msg.Error)
			if step != "" {
				why = step + ": " + why
			}
			return fmt.Errorf("%s (Dockerfile %s/%s): %w", why, b.Context.Rel, b.Context.Dockerfile, ErrBuildFailed)
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
