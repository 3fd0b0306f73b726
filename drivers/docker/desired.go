package docker

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/manifests"
)

// defaultNetwork is the key of the network compose attaches services that name none.
const defaultNetwork = "default"

// ErrUnsupported marks compose features the driver does not implement yet; the error
// names the service and key so the user can act on it. It wraps drivers.ErrInvalidSpec:
// retrying the same revision cannot help.
var ErrUnsupported = fmt.Errorf("not supported by the docker driver (%w)", drivers.ErrInvalidSpec)

// ErrDependencyCycle marks depends_on relations that form a cycle; it wraps
// drivers.ErrInvalidSpec.
var ErrDependencyCycle = fmt.Errorf("dependency cycle (%w)", drivers.ErrInvalidSpec)

// DesireOptions tunes Desire.
type DesireOptions struct {
	// FilesDir is the absolute directory under which repo files are materialised.
	FilesDir string
	// SecretKey keys the addresses of secret files and the digests that stand for
	// environment values in the desired-state label (see Desire). It must stay the same
	// between passes, or every service with a secret is recreated: the Driver keeps one in
	// FilesDir. Nil means a random key for this call only, which is fine for validating a
	// project, not for planning.
	SecretKey []byte
}

// Desire derives the desired state purely from the app and bundle (no I/O). A nil compose
// gives a Desired with nothing in it: the plan for it removes everything the app owns.
//
// Bind mounts of repo files and file-based configs and secrets are rewritten to
// content-addressed copies under opts.FilesDir (FilesDir/<hex digest>/<basename>). The path
// embeds the digest, so a service's config hash changes exactly when the content of a file
// it reads changes, and services that do not read it keep their hash. For such services
// the hash differs from `docker compose config --hash` on the checkout by design: it is
// the hash of what the container really mounts.
//
// A file used as a secret anywhere in the project is addressed by an HMAC of its digest
// under opts.SecretKey instead: the path is shown in plans, diffs and labels, and a plain
// sha256 of a short password can be reversed by guessing.
func Desire(app drivers.App, c *manifests.Compose, opts DesireOptions) (*Desired, error) {
	d := &Desired{Project: app.Project, App: app.Name, Revision: app.Revision}
	if c == nil || c.Project == nil {
		return d, nil
	}
	p := c.Project
	if d.Project == "" {
		d.Project = p.Name
	}
	if d.Project == "" {
		return nil, fmt.Errorf("app %s: no compose project name", app.Name)
	}
	if err := rejectProjectFeatures(p); err != nil {
		return nil, err
	}
	if err := checkImageRefs(p); err != nil {
		return nil, err
	}
	if err := checkPortClashes(p); err != nil {
		return nil, err
	}
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		// Before ordering: an entry naming the service itself would read as a cycle.
		if err := checkVolumesFrom(p, p.Services[name]); err != nil {
			return nil, err
		}
		if err := checkNamespaceRefs(p, p.Services[name]); err != nil {
			return nil, err
		}
	}
	order, err := dependencyOrder(p.Services)
	if err != nil {
		return nil, err
	}
	if len(opts.SecretKey) == 0 {
		opts.SecretKey = make([]byte, secretKeySize)
		_, _ = rand.Read(opts.SecretKey) // never fails: it panics if the OS has no randomness
	}
	usesDefault := false
	for _, name := range order {
		build, err := desireBuild(d.Project, p.Services[name], c.Builds)
		if err != nil {
			return nil, err
		}
		spec, err := desireService(p, p.Services[name], serviceInputs{files: c.Files[name], build: build}, opts)
		if err != nil {
			return nil, err
		}
		if _, ok := spec.Service.Networks[defaultNetwork]; ok {
			usesDefault = true
		}
		d.Services = append(d.Services, spec)
	}
	if err := shareBuilds(d.Services); err != nil {
		return nil, err
	}
	if d.Networks, err = desireNetworks(d.Project, p.Networks, usesDefault); err != nil {
		return nil, err
	}
	if d.Volumes, err = desireVolumes(d.Project, p.Volumes); err != nil {
		return nil, err
	}
	return d, nil
}

func rejectProjectFeatures(p *types.Project) error {
	if len(p.Jobs) > 0 {
		return fmt.Errorf("jobs: %w", ErrUnsupported)
	}
	if len(p.Models) > 0 {
		return fmt.Errorf("models: %w", ErrUnsupported)
	}
	return nil
}

// dependencyOrder sorts services so that every service comes after the services it
// depends on or shares volumes or namespaces with (compose-go adds the latter to
// depends_on when it loads a file; a project built otherwise may lack it); among services
// whose dependencies are all placed, names sort first.
func dependencyOrder(services types.Services) ([]string, error) {
	deps := make(map[string][]string, len(services))
	for name, s := range services {
		for _, dep := range referencedServices(s) {
			if _, ok := s.DependsOn[dep]; !ok {
				deps[name] = append(deps[name], dep)
			}
		}
		for dep, cfg := range s.DependsOn {
			if _, ok := services[dep]; !ok {
				if cfg.Required {
					return nil, fmt.Errorf("service %s: depends_on: undefined service %s", name, dep)
				}
				continue // an optional dependency that is not deployed, as compose allows
			}
			deps[name] = append(deps[name], dep)
		}
	}
	return topoSort(slices.Sorted(maps.Keys(services)), deps)
}

// topoSort orders sorted names so each comes after its deps (deps outside names are
// ignored), the smallest ready name first. A cycle is an error naming the services left.
func topoSort(names []string, deps map[string][]string) ([]string, error) {
	known := make(map[string]bool, len(names))
	for _, n := range names {
		known[n] = true
	}
	placed := make(map[string]bool, len(names))
	order := make([]string, 0, len(names))
	for len(order) < len(names) {
		next := ""
		for _, name := range names {
			if !placed[name] && allPlaced(deps[name], placed, known) {
				next = name
				break // the smallest ready name, so ties always go by name
			}
		}
		if next == "" {
			var stuck []string
			for _, name := range names {
				if !placed[name] {
					stuck = append(stuck, name)
				}
			}
			return nil, fmt.Errorf("services %s: %w in depends_on", strings.Join(stuck, ", "), ErrDependencyCycle)
		}
		placed[next] = true
		order = append(order, next)
	}
	return order, nil
}

func allPlaced(deps []string, placed, known map[string]bool) bool {
	for _, d := range deps {
		if known[d] && !placed[d] {
			return false
		}
	}
	return true
}

// serviceInputs are what the loader found about one service besides its config.
type serviceInputs struct {
	files []manifests.RepoFile
	build *BuildSpec // nil for a service without a build section
}

// desireService builds one ServiceSpec. The input service is not modified: every slice or
// map that is rewritten is a new one.
func desireService(p *types.Project, s types.ServiceConfig, in serviceInputs, opts DesireOptions) (ServiceSpec, error) {
	files := in.files
	if err := rejectServiceFeatures(s); err != nil {
		return ServiceSpec{}, err
	}
	if s.NetworkMode == "" && len(s.Networks) == 0 {
		// compose-go's loader does this too; doing it here keeps hand-built and loaded
		// projects hashing alike.
		s.Networks = map[string]*types.ServiceNetworkConfig{defaultNetwork: nil}
	}
	m := newMaterialiser(p, files, opts)
	if err := m.rewrite(p, &s); err != nil {
		return ServiceSpec{}, err
	}
	configHash, err := ServiceHash(s)
	if err != nil {
		return ServiceSpec{}, err
	}
	canonical, err := canonicalJSON(s)
	if err != nil {
		return ServiceSpec{}, err
	}
	if canonical, err = sealEnvironment(canonical, opts.SecretKey); err != nil {
		return ServiceSpec{}, err
	}
	hashed, err := m.hashedFiles(files)
	if err != nil {
		return ServiceSpec{}, fmt.Errorf("service %s: %w", s.Name, err)
	}
	buildDigest := ""
	if in.build != nil {
		buildDigest = in.build.Digest
	}
	return ServiceSpec{
		Name:       s.Name,
		Replicas:   s.GetScale(),
		ConfigHash: configHash,
		SpecHash:   specHash(configHash, hashed, buildDigest),
		Canonical:  canonical,
		Service:    s,
		Files:      m.used,
		Build:      in.build,
	}, nil
}

// rejectServiceFeatures refuses what would otherwise be silently dropped or hashed wrong.
// A service with a build section may have no image: the built one is named after it.
func rejectServiceFeatures(s types.ServiceConfig) error {
	switch {
	case s.Provider != nil:
		return fmt.Errorf("service %s: provider: %w", s.Name, ErrUnsupported)
	case s.Image == "" && s.Build == nil:
		return fmt.Errorf("service %s: image: missing", s.Name)
	}
	if s.Deploy != nil {
		for _, r := range []struct {
			key string
			res *types.Resource
		}{{"limits", s.Deploy.Resources.Limits}, {"reservations", s.Deploy.Resources.Reservations}} {
			if r.res != nil && (len(r.res.Devices) > 0 || len(r.res.GenericResources) > 0) {
				return fmt.Errorf("service %s: deploy.resources.%s: devices, generic_resources: %w", s.Name, r.key, ErrUnsupported)
			}
		}
	}
	if err := rejectSharedNetworkConflicts(s); err != nil {
		return err
	}
	// The loader refuses these too; a container outside the project is not tracked, so a
	// replaced one would leave this service in a dead namespace unseen.
	for _, kv := range [][2]string{{"network_mode", s.NetworkMode}, {"ipc", s.Ipc}, {"pid", s.Pid}} {
		if strings.HasPrefix(kv[1], types.ContainerPrefix) {
			return fmt.Errorf("service %s: %s: %s: %w", s.Name, kv[0], kv[1], ErrUnsupported)
		}
	}
	return nil
}

// rejectSharedNetworkConflicts refuses the keys the Engine rejects on a container that joins
// another's network namespace, so the mistake shows at plan time (and in `shipwatch
// validate`) instead of half-way through an apply.
func rejectSharedNetworkConflicts(s types.ServiceConfig) error {
	if !strings.HasPrefix(s.NetworkMode, types.ServicePrefix) {
		return nil
	}
	var keys []string
	for _, k := range []struct {
		key string
		set bool
	}{
		{"ports", len(s.Ports) > 0}, {"expose", len(s.Expose) > 0}, {"hostname", s.Hostname != ""},
		{"dns", len(s.DNS) > 0}, {"extra_hosts", len(s.ExtraHosts) > 0}, {"mac_address", s.MacAddress != ""},
	} {
		if k.set {
			keys = append(keys, k.key)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	return fmt.Errorf("service %s: network_mode %s shares that service's network, so %s cannot be set here (set them on the shared service): %w",
		s.Name, s.NetworkMode, strings.Join(keys, ", "), drivers.ErrInvalidSpec)
}

// materialiser rewrites a service's repo-file mounts to content-addressed paths.
type materialiser struct {
	filesDir string
	byPath   map[string]manifests.RepoFile
	// secret holds the paths of the project's secret files, addressed by keyed digest.
	secret map[string]bool
	key    []byte
	used   []MaterialisedFile // sorted by Target, unique
}

func newMaterialiser(p *types.Project, files []manifests.RepoFile, opts DesireOptions) *materialiser {
	m := &materialiser{
		filesDir: opts.FilesDir,
		byPath:   make(map[string]manifests.RepoFile, len(files)),
		secret:   make(map[string]bool, len(p.Secrets)),
		key:      opts.SecretKey,
	}
	for _, f := range files {
		m.byPath[f.Path] = f
	}
	// Project-wide: a secret file bind-mounted by another service must not reveal its
	// plain digest there either.
	for _, sec := range p.Secrets {
		if sec.File != "" {
			m.secret[sec.File] = true
		}
	}
	return m
}

func (m *materialiser) rewrite(p *types.Project, s *types.ServiceConfig) error {
	vols := make([]types.ServiceVolumeConfig, 0, len(s.Volumes)+len(s.Configs)+len(s.Secrets))
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind {
			if f, ok := m.byPath[v.Source]; ok {
				target, err := m.target(f)
				if err != nil {
					return fmt.Errorf("service %s: volumes: %w", s.Name, err)
				}
				v.Source = target
			}
		}
		vols = append(vols, v)
	}
	// Secrets before configs, as compose mounts them.
	for _, ref := range s.Secrets {
		obj, ok := p.Secrets[ref.Source]
		if !ok {
			return fmt.Errorf("service %s: secrets: undefined secret %s", s.Name, ref.Source)
		}
		fr := types.FileReferenceConfig(ref)
		if fr.Target != "" && !path.IsAbs(fr.Target) {
			fr.Target = secretsDir + fr.Target
		}
		v, err := m.fileBind(fr, types.FileObjectConfig(obj), secretsDir+ref.Source)
		if err == nil {
			err = checkTargetFree(vols, v.Target)
		}
		if err != nil {
			return fmt.Errorf("service %s: secrets: %s: %w", s.Name, ref.Source, err)
		}
		vols = append(vols, v)
	}
	for _, ref := range s.Configs {
		obj, ok := p.Configs[ref.Source]
		if !ok {
			return fmt.Errorf("service %s: configs: undefined config %s", s.Name, ref.Source)
		}
		v, err := m.fileBind(types.FileReferenceConfig(ref), types.FileObjectConfig(obj), "/"+ref.Source)
		if err == nil {
			err = checkTargetFree(vols, v.Target)
		}
		if err != nil {
			return fmt.Errorf("service %s: configs: %s: %w", s.Name, ref.Source, err)
		}
		vols = append(vols, v)
	}
	s.Volumes = vols
	if len(vols) == 0 {
		s.Volumes = nil
	}
	// File configs and secrets are now read-only binds, which is how compose runs them
	// outside swarm; leaving them in would make the Engine half handle them twice.
	s.Configs = nil
	s.Secrets = nil
	return nil
}

// secretsDir is where compose mounts a secret whose target is not an absolute path.
const secretsDir = "/run/secrets/"

// checkTargetFree refuses a second mount on one path. compose silently drops the secret or
// config there; shipwatch says so instead, since the container would not get it.
func checkTargetFree(vols []types.ServiceVolumeConfig, target string) error {
	for _, v := range vols {
		if path.Clean(v.Target) == path.Clean(target) {
			return fmt.Errorf("target %s is already mounted: %w", target, drivers.ErrInvalidSpec)
		}
	}
	return nil
}

// fileBind turns a file-based config or secret into a read-only bind of its
// content-addressed copy. Errors never hold obj.Content: for a secret from the
// environment, compose-go puts the value there.
func (m *materialiser) fileBind(ref types.FileReferenceConfig, obj types.FileObjectConfig, defaultTarget string) (types.ServiceVolumeConfig, error) {
	switch {
	case bool(obj.External):
		return types.ServiceVolumeConfig{}, fmt.Errorf("external: %w", ErrUnsupported)
	case obj.File == "":
		return types.ServiceVolumeConfig{}, fmt.Errorf("content or environment source: %w (only file)", ErrUnsupported)
	case ref.UID != "" || ref.GID != "" || ref.Mode != nil:
		return types.ServiceVolumeConfig{}, fmt.Errorf("uid, gid, mode: %w for bind-mounted files", ErrUnsupported)
	}
	f, ok := m.byPath[obj.File]
	if !ok {
		return types.ServiceVolumeConfig{}, fmt.Errorf("file %s is not a repo file of the service", obj.File)
	}
	source, err := m.target(f)
	if err != nil {
		return types.ServiceVolumeConfig{}, err
	}
	target := ref.Target
	if target == "" {
		target = defaultTarget
	}
	return types.ServiceVolumeConfig{Type: types.VolumeTypeBind, Source: source, Target: target, ReadOnly: true}, nil
}

// target is the content-addressed path of a repo file, recorded for materialisation.
func (m *materialiser) target(f manifests.RepoFile) (string, error) {
	if !filepath.IsAbs(m.filesDir) {
		return "", fmt.Errorf("files directory %q is not absolute", m.filesDir)
	}
	address, err := m.address(f)
	if err != nil {
		return "", err
	}
	target := filepath.Join(m.filesDir, address, filepath.Base(f.Path))
	i, found := slices.BinarySearchFunc(m.used, target, func(mf MaterialisedFile, t string) int {
		return strings.Compare(mf.Target, t)
	})
	if !found {
		m.used = slices.Insert(m.used, i, MaterialisedFile{Source: f, Target: target})
	}
	return target, nil
}

// address is the hex directory name of a repo file's copy: its digest, or for a secret
// file an HMAC of the digest, which reveals nothing about the content without the key.
func (m *materialiser) address(f manifests.RepoFile) (string, error) {
	hexDigest, ok := strings.CutPrefix(f.Digest, "sha256:")
	if !ok || hexDigest == "" || strings.ContainsAny(hexDigest, `/\.`) {
		// The digest of a secret file is not named: it is a fingerprint of the secret.
		return "", fmt.Errorf("repo file %s: digest is not sha256:<hex>", f.Rel)
	}
	if !m.secret[f.Path] {
		return hexDigest, nil
	}
	mac := hmac.New(sha256.New, m.key)
	mac.Write([]byte(f.Digest))
	return hex.EncodeToString(mac.Sum(nil)), nil
}

// hashedFiles are the files as the spec hash covers them: a secret file by its keyed
// address, since the spec hash is a label anyone with Engine access can read.
func (m *materialiser) hashedFiles(files []manifests.RepoFile) ([]manifests.RepoFile, error) {
	out := slices.Clone(files)
	for i, f := range out {
		if !m.secret[f.Path] {
			continue
		}
		address, err := m.address(f)
		if err != nil {
			return nil, err
		}
		out[i].Digest = "hmac-sha256:" + address
	}
	return out, nil
}

// engineName is the name compose gives a network or volume: an explicit name, the key
// itself for an external resource, else <project>_<key>.
func engineName(project, key, name string, external bool) string {
	switch {
	case name != "":
		return name
	case external:
		return key
	}
	return project + "_" + key
}

func desireNetworks(project string, nets types.Networks, usesDefault bool) ([]NetworkSpec, error) {
	all := maps.Clone(nets)
	if all == nil {
		all = types.Networks{}
	}
	if _, ok := all[defaultNetwork]; !ok && usesDefault {
		all[defaultNetwork] = types.NetworkConfig{}
	}
	out := make([]NetworkSpec, 0, len(all))
	for _, key := range slices.Sorted(maps.Keys(all)) {
		cfg := all[key]
		cfg.Name = engineName(project, key, cfg.Name, bool(cfg.External))
		h, err := networkHash(cfg)
		if err != nil {
			return nil, err
		}
		out = append(out, NetworkSpec{Key: key, Name: cfg.Name, Config: cfg, Hash: h})
	}
	return out, nil
}

func desireVolumes(project string, vols types.Volumes) ([]VolumeSpec, error) {
	out := make([]VolumeSpec, 0, len(vols))
	for _, key := range slices.Sorted(maps.Keys(vols)) {
		cfg := vols[key]
		cfg.Name = engineName(project, key, cfg.Name, bool(cfg.External))
		h, err := volumeHash(cfg)
		if err != nil {
			return nil, err
		}
		out = append(out, VolumeSpec{Key: key, Name: cfg.Name, Config: cfg, Hash: h})
	}
	return out, nil
}
