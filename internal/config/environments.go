package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/Masterminds/semver/v3"
	"go.yaml.in/yaml/v3"
)

// EnvSeparator joins an app and an environment in the name users address a stage by:
// "web@prod".
const EnvSeparator = "@"

// Environment is one stage of an app. Every key left out takes the app's value; the
// compose project defaults to "<app>-<env>", so the stages of an app can share an Engine.
type Environment struct {
	Name string `yaml:"name"`
	Path string `yaml:"path"`
	Ref  Ref    `yaml:"ref"`
	// Docker, Kubernetes and Compose override the app's, key by key.
	Docker        Docker     `yaml:"docker"`
	Kubernetes    Kubernetes `yaml:"kubernetes"`
	Compose       Compose    `yaml:"compose"`
	Drift         string     `yaml:"drift"`
	Sync          string     `yaml:"sync"`
	OnFailure     string     `yaml:"onFailure"`
	HealthTimeout Duration   `yaml:"healthTimeout"`
	// PromoteFrom names the stage whose running revision is promoted into this one.
	PromoteFrom string `yaml:"promoteFrom"`
	// Gate is what the source stage must show before a promotion into this one.
	Gate Gate `yaml:"gate"`
	// AutoPromote makes the daemon promote into this stage when the gate opens.
	AutoPromote bool `yaml:"autoPromote"`
}

// Gate is what a promotion waits for.
type Gate struct {
	// HealthyFor is how long the source stage must have been Synced and Healthy at the
	// revision, with no drift and no failed sync meanwhile.
	HealthyFor Duration `yaml:"healthyFor"`
	// Approval also needs `shipwatch approve APP@ENV REVISION`.
	Approval bool `yaml:"approval"`
}

// Promotion says how a promotion is written into Git.
type Promotion struct {
	// Files are copied from the source stage's path to the target stage's, as the source
	// stage's running revision has them.
	Files []string `yaml:"files"`
	// Mode is push (commit on the target's branch) or branch (push a review branch).
	Mode string `yaml:"mode"`
	// PinDigests rewrites the image references the source stage runs to image@digest.
	PinDigests bool `yaml:"pinDigests"`
}

// Promotion modes.
const (
	PromotePush   = "push"
	PromoteBranch = "branch"
)

// Ref is a branch, tag or commit SHA, or a semver range over tags written as
// {semver: ">=1.2.0 <2"}; the range is kept as "semver:>=1.2.0 <2", the form the Git source
// resolves.
type Ref string

// SemverPrefix marks a Ref that is a semver range over tags.
const SemverPrefix = "semver:"

// UnmarshalYAML accepts a scalar or a mapping with one key, semver.
func (r *Ref) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*r = Ref(n.Value)
		return nil
	}
	var m struct {
		Semver string `yaml:"semver"`
	}
	dec := n.Decode(&m)
	if dec != nil || n.Kind != yaml.MappingNode || len(n.Content) != 2 || m.Semver == "" {
		return fmt.Errorf("line %d: ref must be a branch, tag or SHA, or {semver: RANGE}", n.Line)
	}
	*r = Ref(SemverPrefix + m.Semver)
	return nil
}

// Semver returns the range of a semver ref.
func (r Ref) Semver() (string, bool) { return strings.CutPrefix(string(r), SemverPrefix) }

// Instances returns every app as the daemon runs it: an app without environments as it
// is, and one instance per environment of an app with them, named "app@env", with the
// environment's keys over the app's.
func (c *Config) Instances() []App {
	var out []App
	for _, a := range c.Apps {
		if len(a.Environments) == 0 {
			out = append(out, a)
			continue
		}
		for _, e := range a.Environments {
			out = append(out, a.instance(e))
		}
	}
	return out
}

// Instance returns the instance named name ("web" or "web@prod").
func (c *Config) Instance(name string) (App, bool) {
	i := slices.IndexFunc(c.Instances(), func(a App) bool { return a.Name == name })
	if i < 0 {
		return App{}, false
	}
	return c.Instances()[i], true
}

// Select returns the instances name stands for: the instance of that name, or every stage
// of an app with environments when name is the app's.
func (c *Config) Select(name string) []App {
	var out []App
	for _, in := range c.Instances() {
		if in.Name == name || (in.Env != "" && in.Base == name) {
			out = append(out, in)
		}
	}
	return out
}

// instance is the app as environment e runs it.
func (a App) instance(e Environment) App {
	in := a
	in.Base, in.Env = a.Name, e.Name
	in.Name = a.Name + EnvSeparator + e.Name
	in.Environments = nil
	in.Stage = &e
	in.Compose.Project = a.Name + "-" + e.Name
	overlay(&in.Path, e.Path)
	overlay(&in.Ref, e.Ref)
	overlay(&in.Drift, e.Drift)
	overlay(&in.Sync, e.Sync)
	overlay(&in.OnFailure, e.OnFailure)
	overlay(&in.HealthTimeout, e.HealthTimeout)
	overlay(&in.Docker.Host, e.Docker.Host)
	overlay(&in.Kubernetes.Kubeconfig, e.Kubernetes.Kubeconfig)
	overlay(&in.Kubernetes.Context, e.Kubernetes.Context)
	overlay(&in.Kubernetes.Namespace, e.Kubernetes.Namespace)
	in.Kubernetes.ForceConflicts = in.Kubernetes.ForceConflicts || e.Kubernetes.ForceConflicts
	overlay(&in.Compose.Project, e.Compose.Project)
	if len(e.Compose.Files) > 0 {
		in.Compose.Files = e.Compose.Files
	}
	if len(e.Compose.EnvFiles) > 0 {
		in.Compose.EnvFiles = e.Compose.EnvFiles
	}
	if len(e.Compose.Profiles) > 0 {
		in.Compose.Profiles = e.Compose.Profiles
	}
	return in
}

// overlay sets *dst to v unless v is the zero value.
func overlay[T comparable](dst *T, v T) {
	var zero T
	if v != zero {
		*dst = v
	}
}

// BackendName is the name drivers record on what they create: the app's name, with "."
// for "@", which label values and Kubernetes object names allow.
func (a App) BackendName() string {
	return strings.Replace(a.Name, EnvSeparator, ".", 1)
}

// Stages returns an app's environments in promotion order: each after the stage it is
// promoted from, configuration order otherwise.
func (a App) Stages() []Environment {
	var out []Environment
	placed := map[string]bool{}
	for len(out) < len(a.Environments) {
		progress := false
		for _, e := range a.Environments {
			if !placed[e.Name] && (e.PromoteFrom == "" || placed[e.PromoteFrom]) {
				out, placed[e.Name], progress = append(out, e), true, true
			}
		}
		if !progress { // a cycle, refused by validate: keep the rest in file order
			for _, e := range a.Environments {
				if !placed[e.Name] {
					out, placed[e.Name] = append(out, e), true
				}
			}
		}
	}
	return out
}

// validateEnvironments checks an app's environments and promotion settings.
func (c *Config) validateEnvironments(add addFunc, k string, a App) {
	if len(a.Environments) == 0 {
		if a.Promotion.Mode != "" || len(a.Promotion.Files) > 0 {
			add(k+".promotion", "set on an app without environments")
		}
		return
	}
	names := map[string]bool{}
	promotes := false
	for j, e := range a.Environments {
		ek := fmt.Sprintf("%s.environments[%d]", k, j)
		switch {
		case !namePattern.MatchString(e.Name):
			add(ek+".name", "%q must match %s", e.Name, namePattern)
		case names[e.Name]:
			add(ek+".name", "duplicate environment %q", e.Name)
		}
		names[e.Name] = true
		c.validateStage(add, ek, e)
		promotes = promotes || e.PromoteFrom != ""
	}
	for j, e := range a.Environments {
		ek := fmt.Sprintf("%s.environments[%d]", k, j)
		if e.PromoteFrom != "" && (!names[e.PromoteFrom] || e.PromoteFrom == e.Name) {
			add(ek+".promoteFrom", "%q is not another environment of app %s", e.PromoteFrom, a.Name)
		}
		if ref := a.instance(e).Ref; e.PromoteFrom != "" && !isBranch(ref) {
			add(ek+".ref", "%q: a stage that is promoted into follows a branch, where promotions are committed", ref)
		}
	}
	if cycle := promotionCycle(a.Environments); cycle != "" {
		add(k+".environments", "promoteFrom forms a cycle: %s", cycle)
	}
	if !promotes {
		return
	}
	if len(a.Promotion.Files) == 0 {
		add(k+".promotion.files", "is required when an environment has promoteFrom")
	}
	for j, f := range a.Promotion.Files {
		if f == "" || strings.Contains(f, "..") || strings.HasPrefix(f, "/") {
			add(fmt.Sprintf("%s.promotion.files[%d]", k, j), "%q must be a file path relative to each stage's path", f)
		}
	}
	if a.Promotion.Mode != PromotePush && a.Promotion.Mode != PromoteBranch {
		add(k+".promotion.mode", "must be push or branch, not %q", a.Promotion.Mode)
	}
}

// validateStage checks one environment's own keys.
func (c *Config) validateStage(add addFunc, ek string, e Environment) {
	if e.PromoteFrom == "" && (e.Gate != (Gate{}) || e.AutoPromote) {
		add(ek+".gate", "gate and autoPromote need promoteFrom")
	}
	if e.Gate.HealthyFor.Duration < 0 {
		add(ek+".gate.healthyFor", "must not be negative")
	}
	checkRef(add, ek+".ref", e.Ref)
	for key, v := range map[string]string{"drift": e.Drift, "sync": e.Sync, "onFailure": e.OnFailure} {
		allowed := map[string][]string{"drift": {"heal", "alert"}, "sync": {"auto", "manual"}, "onFailure": {"none", "rollback"}}[key]
		if v != "" && !slices.Contains(allowed, v) {
			add(ek+"."+key, "must be %s, not %q", strings.Join(allowed, " or "), v)
		}
	}
	if e.HealthTimeout.Duration != 0 {
		c.checkDuration(add, ek+".healthTimeout", e.HealthTimeout.Duration, MinInterval)
	}
}

// isBranch reports a ref that can name a branch: not a semver range, a tag path or a SHA.
func isBranch(r Ref) bool {
	s := string(r)
	_, semver := r.Semver()
	return !semver && !strings.HasPrefix(s, "refs/tags/") && !fullSHA.MatchString(s) && s != "HEAD"
}

var fullSHA = regexp.MustCompile(`^[0-9a-fA-F]{40}$`)

// checkRef refuses a semver range the Git source could not use.
func checkRef(add addFunc, key string, r Ref) {
	c, ok := r.Semver()
	if !ok {
		return
	}
	if _, err := semver.NewConstraint(c); err != nil || strings.TrimSpace(c) == "" {
		add(key, "semver range %q: %v", c, err)
	}
}

// promotionCycle returns a promoteFrom cycle as "a -> b -> a", or "".
func promotionCycle(envs []Environment) string {
	from := map[string]string{}
	for _, e := range envs {
		from[e.Name] = e.PromoteFrom
	}
	for _, e := range envs {
		seen := []string{e.Name}
		for cur := from[e.Name]; cur != ""; cur = from[cur] {
			if cur == e.Name {
				return strings.Join(append(seen, cur), " <- ")
			}
			if slices.Contains(seen, cur) || len(seen) > len(envs) {
				break
			}
			seen = append(seen, cur)
		}
	}
	return ""
}
