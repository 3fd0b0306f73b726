package manifests

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
)

// buildKustomization runs kustomize on the kustomization file kf. Every kustomization it
// reaches is scanned first: kustomize fetches a remote base or file the moment it meets one
// (running `git` or an HTTP GET), so refusing remote references and escapes has to happen
// before kustomize runs, not in the filesystem it reads through.
func buildKustomization(ctx context.Context, c *confiner, root *os.Root, kf string, allowRemote bool) ([]*unstructured.Unstructured, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("build kustomization: %w", err)
	}
	s := &kustScan{c: c, root: root, allowRemote: allowRemote, seen: map[string]bool{}}
	if err := s.scan(kf); err != nil {
		return nil, err
	}
	opts := krusty.MakeDefaultOptions()
	// Unspecified honours a kustomization's sortOptions and otherwise gives the legacy
	// order, which is what `kustomize build` and `kubectl kustomize` print.
	opts.Reorder = krusty.ReorderOptionUnspecified
	opts.LoadRestrictions = types.LoadRestrictionsRootOnly
	opts.PluginConfig = types.DisabledPluginConfig()
	fsys := newKubeFS(c, root, allowRemote)
	kfRel := filepath.ToSlash(c.rel(kf))
	m, err := krusty.MakeKustomizer(opts).Run(fsys, filepath.Dir(kf))
	if err != nil {
		if esc := fsys.escaped(); esc != nil {
			return nil, fmt.Errorf("build kustomization %s: %w", kfRel, esc)
		}
		if big := fsys.oversized(); big != nil {
			return nil, fmt.Errorf("build kustomization %s: %w", kfRel, big)
		}
		return nil, &KubeError{File: kfRel, Msg: "kustomize build: " + s.mask(c.scrub(err.Error()))}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("build kustomization: %w", err)
	}
	objs := make([]*unstructured.Unstructured, 0, m.Size())
	for i, r := range m.Resources() {
		b, err := r.MarshalJSON()
		if err != nil {
			return nil, &KubeError{File: kfRel, Msg: fmt.Sprintf("kustomize output object %d: cannot encode", i+1)}
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			return nil, &KubeError{File: kfRel, Msg: fmt.Sprintf("kustomize output object %d: not a kubernetes object", i+1)}
		}
		if u.GetName() == "" {
			return nil, &KubeError{File: kfRel, Msg: fmt.Sprintf("kustomize output %s: missing metadata.name", u.GetKind())}
		}
		objs = append(objs, u)
	}
	return objs, nil
}

// scrub makes kustomize's absolute paths relative to the checkout, for shorter messages
// that do not depend on where the daemon keeps its checkouts.
func (c *confiner) scrub(msg string) string {
	for _, p := range []string{c.real, c.root} {
		msg = strings.ReplaceAll(msg, p+string(filepath.Separator), "")
	}
	return msg
}

// kustScan walks the graph of kustomizations from the app's one, checking every path
// reference: local ones must stay in the checkout, remote ones need allowRemote.
type kustScan struct {
	c           *confiner
	root        *os.Root
	allowRemote bool
	seen        map[string]bool
	// secrets are the values secretGenerators take from literals and files, masked in
	// kustomize's messages: some of them echo a literal or an env file line.
	secrets []string
}

// refKind says what a kustomization field may point at.
type refKind int

const (
	refFile        refKind = iota // a file kustomize loads
	refBase                       // a file or a directory with a kustomization (resources, bases, components)
	refMaybeInline                // a path, or inline YAML when it spans lines
)

// kustRef is one path-like value of a kustomization, with the field it came from.
type kustRef struct {
	field string
	value string
	kind  refKind
}

func (s *kustScan) scan(kf string) error {
	if s.seen[kf] {
		return nil
	}
	s.seen[kf] = true
	kfRel := filepath.ToSlash(s.c.rel(kf))
	content, err := readFile(s.root, s.c, kf, "kustomization")
	if err != nil {
		return err
	}
	var k types.Kustomization
	if err := k.Unmarshal(content); err != nil {
		return &KubeError{File: kfRel, Msg: "invalid kustomization: " + strings.TrimPrefix(err.Error(), "invalid Kustomization: ")}
	}
	if len(k.HelmCharts) > 0 || len(k.HelmChartInflationGenerator) > 0 || k.HelmGlobals != nil {
		return &KubeError{File: kfRel, Msg: "helmCharts: Helm chart inflation is disabled in shipwatch; render the chart into the repository"}
	}
	dir := filepath.Dir(kf)
	for _, r := range kustRefs(&k) {
		if err := s.check(dir, kfRel, r); err != nil {
			return err
		}
	}
	for _, g := range k.SecretGenerator {
		s.collectSecrets(dir, g.KvPairSources)
	}
	return nil
}

// collectSecrets remembers a secretGenerator's values. Its files were confined by check;
// one that cannot be read is left for kustomize to report.
func (s *kustScan) collectSecrets(dir string, src types.KvPairSources) {
	for _, l := range src.LiteralSources {
		if _, v, ok := strings.Cut(l, "="); ok {
			l = v
		}
		s.secrets = append(s.secrets, strings.Trim(l, `"'`))
	}
	files := append(slices.Clone(src.EnvSources), src.EnvSource)
	for _, f := range src.FileSources {
		if _, p, ok := strings.Cut(f, "="); ok {
			f = p
		}
		files = append(files, f)
	}
	for _, f := range files {
		if f == "" || isRemoteRef(f) {
			continue
		}
		abs := f
		if !filepath.IsAbs(abs) {
			abs = filepath.Join(dir, filepath.FromSlash(f))
		}
		b, err := readFile(s.root, s.c, abs, "secretGenerator file")
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			if _, v, ok := strings.Cut(line, "="); ok {
				s.secrets = append(s.secrets, strings.TrimSpace(v))
			}
			s.secrets = append(s.secrets, strings.TrimSpace(line))
		}
	}
}

// kustQuoted matches single- and backquoted fragments in kustomize's messages: YAML
// errors put values (an alias name, a mistyped scalar) there, while kustomize's own paths
// and resource ids come double-quoted and stay readable.
// A byte list like [104 117 110] is how kustomize prints an env file line it cannot
// decode.
var kustQuoted = regexp.MustCompile("'[^']*'|`[^`]*`|\\[[0-9]+( [0-9]+)*\\]")

// mask hides secret values and quoted YAML fragments in a kustomize message.
func (s *kustScan) mask(msg string) string {
	msg = kustQuoted.ReplaceAllString(msg, "(masked)")
	for _, v := range s.secrets {
		if len(v) >= 3 {
			msg = strings.ReplaceAll(msg, v, "(masked)")
		}
	}
	return msg
}

// kustRefs lists every field of a kustomization that names a file, a base or a URL.
func kustRefs(k *types.Kustomization) []kustRef {
	var refs []kustRef
	add := func(field string, kind refKind, values ...string) {
		for _, v := range values {
			if v != "" {
				refs = append(refs, kustRef{field: field, value: v, kind: kind})
			}
		}
	}
	add("resources", refBase, k.Resources...)
	// The deprecated fields are still honoured by kustomize, so their paths must be confined too.
	//lint:ignore SA1019 kustomize still reads bases; confinement must cover it
	add("bases", refBase, k.Bases...)
	add("components", refBase, k.Components...)
	add("crds", refFile, k.Crds...)
	add("configurations", refFile, k.Configurations...)
	add("openapi.path", refFile, k.OpenAPI["path"])
	//lint:ignore SA1019 kustomize still reads patchesStrategicMerge; confinement must cover it
	for _, p := range k.PatchesStrategicMerge {
		add("patchesStrategicMerge", refMaybeInline, string(p))
	}
	for _, p := range k.Patches {
		add("patches.path", refFile, p.Path)
	}
	//lint:ignore SA1019 kustomize still reads patchesJson6902; confinement must cover it
	for _, p := range k.PatchesJson6902 {
		add("patchesJson6902.path", refFile, p.Path)
	}
	for _, r := range k.Replacements {
		add("replacements.path", refFile, r.Path)
	}
	gens := func(field string, src types.KvPairSources) {
		for _, f := range src.FileSources {
			// "key=path" names the key explicitly; the path is after the first "=".
			if _, p, ok := strings.Cut(f, "="); ok {
				f = p
			}
			add(field+".files", refFile, f)
		}
		add(field+".envs", refFile, src.EnvSources...)
		add(field+".env", refFile, src.EnvSource)
	}
	for _, g := range k.ConfigMapGenerator {
		gens("configMapGenerator", g.KvPairSources)
	}
	for _, g := range k.SecretGenerator {
		gens("secretGenerator", g.KvPairSources)
	}
	add("generators", refMaybeInline, k.Generators...)
	add("transformers", refMaybeInline, k.Transformers...)
	add("validators", refMaybeInline, k.Validators...)
	return refs
}

// check verifies one reference and follows it into a local base.
func (s *kustScan) check(dir, kfRel string, r kustRef) error {
	v := strings.TrimSpace(r.value)
	if r.kind == refMaybeInline && (strings.Contains(v, "\n") || strings.HasPrefix(v, "{")) {
		return nil // inline YAML, no path
	}
	if isRemoteRef(v) {
		if s.allowRemote {
			return nil
		}
		return &KubeError{File: kfRel, Msg: fmt.Sprintf("%s %q", r.field, redactURL(v)),
			Err: fmt.Errorf("%w unless allowRemoteBases is set", ErrRemoteResource)}
	}
	abs := v
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(dir, filepath.FromSlash(v))
	}
	if _, err := s.c.check(abs, kfRel+": "+r.field); err != nil {
		return err
	}
	if r.kind == refFile {
		return nil
	}
	st, err := os.Stat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		if r.kind == refMaybeInline {
			return nil // kustomize will read it as an inline config, or fail on it
		}
		// Refused here because kustomize would next try the value as a git URL.
		return &KubeError{File: kfRel, Msg: fmt.Sprintf("%s %q: no such file or directory", r.field, v)}
	}
	if err != nil {
		return fmt.Errorf("%s: %s %q: %w", kfRel, r.field, v, err)
	}
	if !st.IsDir() {
		return nil
	}
	sub, err := findKustomization(s.root, s.c, abs)
	if err != nil {
		return err
	}
	if sub == "" {
		return &KubeError{File: kfRel, Msg: fmt.Sprintf("%s %q: directory has no kustomization", r.field, v)}
	}
	return s.scan(sub)
}

// scpUser matches the `user@host:` prefix kustomize takes for an scp-style git URL.
var scpUser = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9-]*@`)

// isRemoteRef reports a value kustomize would fetch: any URL (its git cloner takes
// http(s), ssh and file URLs; its file loader fetches http(s)), scp-style `user@host:`,
// github.com shorthand and the `git::` prefix. It is deliberately wider than kustomize's
// own parser: a false positive is a refused build, a false negative a network fetch.
func isRemoteRef(v string) bool {
	lower := strings.ToLower(v)
	return strings.Contains(v, "://") ||
		strings.HasPrefix(lower, "git::") ||
		strings.HasPrefix(lower, "github.com/") ||
		strings.HasPrefix(lower, "github.com:") ||
		scpUser.MatchString(v)
}

// redactURL hides credentials a URL may carry before it goes into an error.
func redactURL(v string) string {
	u, err := url.Parse(v)
	if err != nil || u.User == nil {
		return v
	}
	u.User = url.User("redacted")
	return u.String()
}
