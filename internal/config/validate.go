package config

import (
	"errors"
	"fmt"
	"net"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shipwatch/shipwatch/internal/notify"
)

// namePattern is what app and repo names may look like: they become label values,
// metric labels, compose project names and directory names.
var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

func (c *Config) validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, &Error{File: c.File, Line: c.line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			add("listen", "must be host:port: %v", err)
		}
	}
	if c.Workers < 0 {
		add("workers", "must be positive")
	}
	c.checkDuration(add, "shutdownTimeout", c.ShutdownTimeout.Duration, time.Second)
	c.checkDuration(add, "applyTimeout", c.ApplyTimeout.Duration, time.Second)
	repos := c.validateRepos(add)
	apps := c.validateApps(add, repos)
	c.validateNotify(add, apps)
	c.validateServer(add)
	if c.Webhooks.MaxBodyBytes < 0 {
		add("webhooks.maxBodyBytes", "must be positive")
	}
	if c.History.Limit < 0 {
		add("history.limit", "must be positive")
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
}

// addFunc records one problem at a key.
type addFunc func(key, format string, args ...any)

// validateRepos checks the repos and returns the set of their names.
func (c *Config) validateRepos(add addFunc) map[string]bool {
	repos := map[string]bool{}
	for i, r := range c.Repos {
		k := fmt.Sprintf("repos[%d]", i)
		switch {
		case !namePattern.MatchString(r.Name):
			add(k+".name", "%q must match %s", r.Name, namePattern)
		case repos[r.Name]:
			add(k+".name", "duplicate repo %q", r.Name)
		}
		repos[r.Name] = true
		if r.URL == "" {
			add(k+".url", "is required")
		}
		if r.Auth.TokenFile != "" && r.Auth.PasswordFile != "" {
			add(k+".auth", "set tokenFile or passwordFile, not both")
		}
		if plainHTTPCredentials(r) {
			add(k+".url", "credentials would be sent over plain http: use https (plain http with credentials is allowed to loopback hosts only)")
		}
		c.checkDuration(add, k+".interval", r.Interval.Duration, MinInterval)
	}
	return repos
}

// validateApps checks the apps and returns the set of their names.
func (c *Config) validateApps(add addFunc, repos map[string]bool) map[string]bool {
	apps := map[string]bool{}
	projects := map[string]string{}
	for i, a := range c.Apps {
		k := fmt.Sprintf("apps[%d]", i)
		switch {
		case !namePattern.MatchString(a.Name):
			add(k+".name", "%q must match %s", a.Name, namePattern)
		case apps[a.Name]:
			add(k+".name", "duplicate app %q", a.Name)
		}
		apps[a.Name] = true
		if !repos[a.Repo] {
			add(k+".repo", "unknown repo %q (declare it under repos)", a.Repo)
		}
		if p := path.Clean(a.Path); path.IsAbs(p) || p == ".." || strings.HasPrefix(p, "../") {
			add(k+".path", "%q must be a relative path inside the repository", a.Path)
		}
		switch a.Driver {
		case "docker":
			if a.Kubernetes != (Kubernetes{}) {
				add(k+".kubernetes", "set for a docker app; use driver: kubernetes or remove it")
			}
		case "kubernetes":
			if a.Docker != (Docker{}) || len(a.Compose.Files)+len(a.Compose.EnvFiles)+len(a.Compose.Profiles) > 0 {
				add(k+".driver", "a kubernetes app takes no docker or compose settings")
			}
		default:
			add(k+".driver", "unknown driver %q (supported: docker, kubernetes)", a.Driver)
		}
		if a.Drift != "heal" && a.Drift != "alert" {
			add(k+".drift", "must be heal or alert, not %q", a.Drift)
		}
		if a.Sync != "auto" && a.Sync != "manual" {
			add(k+".sync", "must be auto or manual, not %q", a.Sync)
		}
		if a.OnFailure != "none" && a.OnFailure != "rollback" {
			add(k+".onFailure", "must be none or rollback, not %q", a.OnFailure)
		}
		c.checkDuration(add, k+".healthTimeout", a.HealthTimeout.Duration, time.Second)
		checkRef(add, k+".ref", a.Ref)
		c.validateEnvironments(add, k, a)
		for _, in := range instancesOf(a) {
			apps[in.Name] = true
			if in.Driver != "docker" {
				continue
			}
			key := k + ".compose.project"
			if in.Env != "" {
				key = fmt.Sprintf("%s.environments[%d].compose.project", k, slices.IndexFunc(a.Environments, func(e Environment) bool { return e.Name == in.Env }))
			}
			if !namePattern.MatchString(in.Compose.Project) {
				add(key, "%q must match %s", in.Compose.Project, namePattern)
			} else if other, ok := projects[in.Compose.Project]; ok {
				add(key, "project %q is already used by app %q", in.Compose.Project, other)
			}
			projects[in.Compose.Project] = in.Name
		}
	}
	return apps
}

// instancesOf is one app's instances (see Config.Instances).
func instancesOf(a App) []App {
	return (&Config{Apps: []App{a}}).Instances()
}

// notifyEvents are the event names a notify filter may use.
func notifyEvents() []string {
	var out []string
	for _, t := range notify.EventTypes() {
		out = append(out, string(t))
	}
	return out
}

func (c *Config) validateNotify(add addFunc, apps map[string]bool) {
	names := map[string]bool{}
	for i, n := range c.Notify {
		k := fmt.Sprintf("notify[%d]", i)
		switch {
		case !namePattern.MatchString(n.Name):
			add(k+".name", "%q must match %s", n.Name, namePattern)
		case names[n.Name]:
			add(k+".name", "duplicate notify target %q", n.Name)
		}
		names[n.Name] = true
		if n.Type != "webhook" && n.Type != "slack" {
			add(k+".type", "must be webhook or slack, not %q", n.Type)
		}
		if n.URLFile == "" {
			add(k+".urlFile", "is required (the URL is a credential: keep it in a file)")
		}
		if n.Type == "slack" && n.SecretFile != "" {
			add(k+".secretFile", "slack webhooks are not signed; remove secretFile")
		}
		for j, a := range n.Apps {
			if !apps[a] {
				add(fmt.Sprintf("%s.apps[%d]", k, j), "unknown app %q", a)
			}
		}
		for j, e := range n.Events {
			if !slices.Contains(notifyEvents(), e) {
				add(fmt.Sprintf("%s.events[%d]", k, j), "unknown event %q (one of %s)", e, strings.Join(notifyEvents(), ", "))
			}
		}
	}
}

// MinInterval is the shortest poll interval: below it a repo would be polled in a tight loop.
const MinInterval = time.Second

// checkDuration refuses a duration below min. Defaults are applied before validation, so a
// value below min was written in the file: 0 is refused rather than silently replaced.
func (c *Config) checkDuration(add addFunc, key string, d, min time.Duration) {
	if d < min {
		add(key, "%v is too short: must be at least %v", d, min)
	}
}

// has reports whether key was written in the file.
func (c *Config) has(key string) bool {
	_, ok := c.lines[key]
	return ok
}

// line returns the line of key, or of its nearest written parent, so an error about a
// defaulted key still points somewhere useful.
func (c *Config) line(key string) int {
	for key != "" {
		if l, ok := c.lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

// keyLines walks the document and records the line of every mapping key and sequence
// item under dotted paths like "apps[0].compose.files".
func keyLines(root *yaml.Node) map[string]int {
	lines := map[string]int{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, prefix)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				if prefix != "" {
					k = prefix + "." + k
				}
				lines[k] = n.Content[i].Line
				walk(n.Content[i+1], k)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				k := fmt.Sprintf("%s[%d]", prefix, i)
				lines[k] = c.Line
				walk(c, k)
			}
		}
	}
	walk(root, "")
	return lines
}
