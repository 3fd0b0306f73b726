package manifests

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// ComposeOptions says where an app's compose files are; all paths relative.
type ComposeOptions struct {
	// Root is the checkout root (absolute); nothing outside it may be read.
	Root string
	// Path is the app directory relative to Root ("apps/web"); the compose working dir.
	Path string
	// Files are compose files relative to Path, merged in order. Default: the first of
	// compose.yaml, compose.yml, docker-compose.yml, docker-compose.yaml that exists, plus
	// the first compose.override.* / docker-compose.override.* file, as the CLI does.
	Files []string
	// EnvFiles are interpolation env files relative to Path (like --env-file).
	// Default: ".env" if it exists.
	EnvFiles []string
	// Profiles to enable. Default: COMPOSE_PROFILES from the env files, as the CLI does.
	Profiles []string
	// Project is the compose project name (required; the app name by default, set by caller).
	Project string
}

// LoadCompose loads an app's compose project from a checkout the way the Docker CLI does:
// working dir = Root/Path, files merged in order, ${VAR} interpolated, profiles applied,
// normalised, checked for consistency, relative paths made absolute, and each service's
// env_file values merged into its environment (env_file cleared, as the CLI does before it
// hashes a service).
//
// Unlike the CLI, variables for interpolation come from the env files only, never from the
// daemon's OS environment: what is deployed must be determined by Git alone, so the same
// revision deploys the same thing on any host. For the same reason COMPOSE_FILE is not
// read from the env files (use Files), and `include`, remote resources and home-relative
// paths are refused.
//
// Every file read (compose files, env files, env_file entries, extends files, file-based
// configs and secrets, bind-mount sources in the checkout) must be inside Root, also after
// following symlinks; otherwise an *EscapeError names it. Absolute bind-mount sources
// outside Root are host paths shipwatch never reads: they pass through unchanged. Keys the
// drivers do not implement fail with an *UnsupportedError; x-* extensions are ignored.
func LoadCompose(ctx context.Context, opts ComposeOptions) (*Compose, error) {
	if err := validateOptions(opts); err != nil {
		return nil, err
	}
	c, err := newConfiner(opts.Root)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(c.root)
	if err != nil {
		return nil, fmt.Errorf("open checkout: %w", err)
	}
	defer root.Close()

	l := &composeLoad{opts: opts, c: c, root: root, workDir: filepath.Join(c.root, opts.Path)}
	return l.run(ctx)
}

func validateOptions(opts ComposeOptions) error {
	if opts.Project == "" {
		return errors.New("compose project name is required")
	}
	if loader.NormalizeProjectName(opts.Project) != opts.Project {
		return loader.InvalidProjectNameErr(opts.Project)
	}
	if filepath.IsAbs(opts.Path) {
		return fmt.Errorf("app path %q must be relative to the checkout", opts.Path)
	}
	return nil
}

// composeLoad holds the state of one LoadCompose call.
type composeLoad struct {
	opts    ComposeOptions
	c       *confiner
	root    *os.Root
	workDir string
	files   []composeFile
}

func (l *composeLoad) run(ctx context.Context) (*Compose, error) {
	if _, err := l.c.check(l.workDir, "app path"); err != nil {
		return nil, err
	}
	if err := l.readComposeFiles(); err != nil {
		return nil, err
	}
	env, err := l.interpolationEnv()
	if err != nil {
		return nil, err
	}
	project, err := l.load(ctx, env)
	if err != nil {
		return nil, err
	}
	if err := l.checkServices(project); err != nil {
		return nil, err
	}
	project, err = project.WithServicesEnvironmentResolved(true)
	if err != nil {
		return nil, fmt.Errorf("%s: resolve env_file: %w", l.fileNames(), err)
	}
	files, err := l.serviceFiles(project)
	if err != nil {
		return nil, err
	}
	builds, err := l.builds(project)
	if err != nil {
		return nil, err
	}
	return &Compose{Project: project, Files: files, Builds: builds}, nil
}

// readComposeFiles picks the compose files and reads them through os.Root.
func (l *composeLoad) readComposeFiles() error {
	names := l.opts.Files
	if len(names) == 0 {
		names = l.defaultFiles()
		if len(names) == 0 {
			return fmt.Errorf("no compose file in %s (looked for %s)", l.c.rel(l.workDir), strings.Join(cli.DefaultFileNames, ", "))
		}
	}
	for _, name := range names {
		abs, err := resolve(l.workDir, name)
		if err != nil {
			return fmt.Errorf("compose file: %w", err)
		}
		content, err := readFile(l.root, l.c, abs, "compose file")
		if err != nil {
			return err
		}
		f, err := parseComposeFile(l.c.rel(abs), abs, content)
		if err != nil {
			return err
		}
		l.files = append(l.files, f)
	}
	return nil
}

// defaultFiles finds the CLI's default file and override file in the working dir only:
// unlike the CLI it never looks in parent directories, which may be another app's.
func (l *composeLoad) defaultFiles() []string {
	var out []string
	for _, candidates := range [][]string{cli.DefaultFileNames, cli.DefaultOverrideFileNames} {
		for _, name := range candidates {
			if l.isFile(filepath.Join(l.workDir, name)) {
				out = append(out, name)
				break
			}
		}
		if len(out) == 0 {
			return nil
		}
	}
	return out
}

func (l *composeLoad) isFile(abs string) bool {
	rel, err := filepath.Rel(l.c.root, abs)
	if err != nil {
		return false
	}
	// Lstat: a symlink counts as present, so one leading outside is refused by name
	// instead of being silently skipped.
	fi, err := l.root.Lstat(rel)
	return err == nil && (fi.Mode().IsRegular() || fi.Mode()&fs.ModeSymlink != 0)
}

// interpolationEnv reads the env files used for ${VAR} interpolation, later files winning.
func (l *composeLoad) interpolationEnv() (types.Mapping, error) {
	names := l.opts.EnvFiles
	if len(names) == 0 && l.isFile(filepath.Join(l.workDir, ".env")) {
		names = []string{".env"}
	}
	env := types.Mapping{}
	for _, name := range names {
		abs, err := resolve(l.workDir, name)
		if err != nil {
			return nil, fmt.Errorf("env file: %w", err)
		}
		content, err := readFile(l.root, l.c, abs, "env file")
		if err != nil {
			return nil, err
		}
		vars, err := dotenv.UnmarshalBytesWithLookup(content, env.Resolve)
		if err != nil {
			return nil, fmt.Errorf("parse env file %s: %w", l.c.rel(abs), err)
		}
		maps.Copy(env, vars) // later files win, as with the CLI's --env-file
	}
	return env, nil
}

// load runs compose-go on the files already read. Paths are left relative so LoadCompose
// can tell a relative reference (a repo file to confine) from an absolute host path, and
// env_file/label_file are not read until their paths are checked.
func (l *composeLoad) load(ctx context.Context, env types.Mapping) (*types.Project, error) {
	guard := &guardLoader{c: l.c, workDir: l.workDir}
	var findings []loader.UnsupportedAttribute
	report := func(f []loader.UnsupportedAttribute) { findings = f }
	profiles := l.opts.Profiles
	if len(profiles) == 0 && env["COMPOSE_PROFILES"] != "" {
		for _, p := range strings.Split(env["COMPOSE_PROFILES"], ",") {
			profiles = append(profiles, strings.TrimSpace(p))
		}
	}
	details := types.ConfigDetails{WorkingDir: l.workDir, Environment: env}
	for _, f := range l.files {
		details.ConfigFiles = append(details.ConfigFiles, types.ConfigFile{Filename: f.abs, Content: f.content})
	}
	project, err := loader.LoadWithContext(ctx, details,
		func(o *loader.Options) {
			o.SetProjectName(l.opts.Project, true)
			o.Profiles = profiles
			o.ResolvePaths = false
			o.SkipResolveEnvironment = true
			o.SkipResolveLabels = true
			o.ResourceLoaders = []loader.ResourceLoader{guard}
			o.Listeners = []loader.Listener{guard.listen}
		},
		loader.WithUnsupportedAttributesCheck(valueRules(), report),
		loader.WithSupportedAttributes(supportedPaths(), nil),
	)
	// An unsupported key is the actionable error even when it also broke loading.
	if uerr := l.unsupported(findings, project); uerr != nil {
		return nil, uerr
	}
	if err != nil {
		var ue *UnsupportedError
		var ee *EscapeError
		if errors.As(err, &ue) {
			if ue.File == "" {
				ue.File, ue.Line = l.locate(ue.Service, ue.Key)
			}
			return nil, err
		}
		if errors.As(err, &ee) {
			return nil, err
		}
		return nil, fmt.Errorf("load compose project from %s: %w", l.fileNames(), err)
	}
	// The CLI records these; the driver puts them in com.docker.compose.project.config_files.
	for _, f := range l.files {
		project.ComposeFiles = append(project.ComposeFiles, f.abs)
	}
	return project, nil
}

// unsupported turns findings into errors, skipping services left out by profiles: they
// are not deployed, so they may use what shipwatch does not support (e.g. a dev build).
func (l *composeLoad) unsupported(findings []loader.UnsupportedAttribute, project *types.Project) error {
	var errs []error
	for _, f := range findings {
		isValue := slices.ContainsFunc(valueRules(), func(r loader.UnsupportedAttributePattern) bool {
			return f.Path.Matches(r.Path)
		})
		e := unsupportedFromFinding(f, isValue)
		if project != nil && e.Service != "" {
			if _, disabled := project.DisabledServices[e.Service]; disabled {
				continue
			}
		}
		e.File, e.Line = l.locate(e.Service, e.Key)
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

func (l *composeLoad) fileNames() string {
	names := make([]string, len(l.files))
	for i, f := range l.files {
		names[i] = f.rel
	}
	return strings.Join(names, ", ")
}

// checkServices verifies what compose-go does not: every deployed service has an image or
// a build, and every file a service will make shipwatch read is inside the checkout.
func (l *composeLoad) checkServices(p *types.Project) error {
	for _, name := range p.ServiceNames() {
		svc := p.Services[name]
		if svc.Image == "" && svc.Build == nil {
			return fmt.Errorf("%s: service %q has neither image nor build", l.fileNames(), name)
		}
		for i, ef := range svc.EnvFiles {
			key := fmt.Sprintf("services.%s.env_file", name)
			abs, err := l.confined(ef.Path, key)
			if err != nil {
				return err
			}
			// compose-go reads env_file entries itself, whole.
			if fi, err := os.Stat(abs); err == nil {
				if err := checkSize(fi, key, l.c.rel(abs), MaxParsedFileBytes); err != nil {
					return err
				}
			}
			svc.EnvFiles[i].Path = abs
		}
		for i, v := range svc.Volumes {
			if v.Type != types.VolumeTypeBind || filepath.IsAbs(v.Source) {
				continue
			}
			abs, err := l.confined(v.Source, fmt.Sprintf("services.%s.volumes", name))
			if err != nil {
				return err
			}
			svc.Volumes[i].Source = abs
		}
		p.Services[name] = svc
	}
	// Sorted, so the same checkout always reports the same first error.
	for _, name := range slices.Sorted(maps.Keys(p.Configs)) {
		cfg := p.Configs[name]
		if cfg.External {
			return &UnsupportedError{Key: "configs." + name + ".external", Hint: `set "file"`}
		}
		if cfg.File == "" {
			continue
		}
		abs, err := l.confined(cfg.File, "configs."+name+".file")
		if err != nil {
			return err
		}
		cfg.File = abs
		p.Configs[name] = cfg
	}
	if err := l.checkSecrets(p); err != nil {
		return err
	}
	return l.checkVolumeDevices(p)
}

// checkSecrets confines file secrets like file configs. Other sources were refused as
// unsupported keys already; this refuses them again for a project that skipped that check.
func (l *composeLoad) checkSecrets(p *types.Project) error {
	for _, name := range slices.Sorted(maps.Keys(p.Secrets)) {
		sec := p.Secrets[name]
		switch {
		case bool(sec.External):
			return &UnsupportedError{Key: "secrets." + name + ".external", Hint: `set "file"`}
		case sec.File == "":
			// Never name the content: an environment source is resolved into it.
			return &UnsupportedError{Key: "secrets." + name, Hint: `only "file" is supported for a secret`}
		}
		abs, err := l.confined(sec.File, "secrets."+name+".file")
		if err != nil {
			return err
		}
		sec.File = abs
		p.Secrets[name] = sec
	}
	return nil
}

// checkVolumeDevices confines a local volume bound to a relative directory: compose
// resolves it against the working dir, which makes it a repo directory.
func (l *composeLoad) checkVolumeDevices(p *types.Project) error {
	for _, name := range slices.Sorted(maps.Keys(p.Volumes)) {
		vol := p.Volumes[name]
		dev, ok := vol.DriverOpts["device"]
		if vol.Driver != "local" || vol.DriverOpts["o"] != "bind" || !ok || filepath.IsAbs(dev) {
			continue
		}
		abs, err := l.confined(dev, "volumes."+name+".driver_opts.device")
		if err != nil {
			return err
		}
		vol.DriverOpts["device"] = abs
		p.Volumes[name] = vol
	}
	return nil
}

// confined resolves a path from the model against the working dir and checks it.
func (l *composeLoad) confined(p, key string) (string, error) {
	abs, err := resolve(l.workDir, p)
	if err != nil {
		return "", fmt.Errorf("%s: %s: %w", l.fileNames(), key, err)
	}
	if _, err := l.c.check(abs, key); err != nil {
		return "", fmt.Errorf("%s: %w", l.fileNames(), err)
	}
	return abs, nil
}

// isNotExist reports a missing path; kept apart so callers read as policy, not plumbing.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
