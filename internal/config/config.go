// Package config reads shipwatch.yaml: strict decoding (an unknown key is an error naming the
// file, line and key), defaults, and validation whose errors point at the offending line.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"time"

	"go.yaml.in/yaml/v3"
)

// Defaults applied when a key is absent.
const (
	DefaultStateDir      = "/var/lib/shipwatch"
	DefaultListen        = "127.0.0.1:9420"
	DefaultInterval      = time.Minute
	DefaultHealthTimeout = 2 * time.Minute
	DefaultRef           = "main"
	DefaultWorkers       = 4
	DefaultShutdown      = 30 * time.Second
	DefaultApplyTimeout  = 10 * time.Minute
	DefaultMaxBodyBytes  = 1 << 20
	DefaultHistoryLimit  = 100
)

// Config is the whole shipwatch.yaml.
type Config struct {
	// StateDir holds the git cache, checkouts, materialised repo files and state.
	StateDir string `yaml:"stateDir"`
	// Listen is the address of the HTTP server (metrics, health). Empty disables it.
	Listen string `yaml:"listen"`
	// Server limits the HTTP server on Listen (hosts, connections).
	Server Server `yaml:"server"`
	// Workers bounds how many apps reconcile at once.
	Workers int `yaml:"workers"`
	// ShutdownTimeout bounds how long an apply in flight may go on after SIGTERM.
	ShutdownTimeout Duration `yaml:"shutdownTimeout"`
	// ApplyTimeout bounds one apply, which no caller can cancel halfway.
	ApplyTimeout Duration `yaml:"applyTimeout"`
	API          API      `yaml:"api"`
	Webhooks     Webhooks `yaml:"webhooks"`
	History      History  `yaml:"history"`
	Repos        []Repo   `yaml:"repos"`
	Apps         []App    `yaml:"apps"`
	Notify       []Notify `yaml:"notify"`

	// File is the path the config was read from, for messages.
	File string `yaml:"-"`
	// lines maps "apps[i].key" style paths to the line they were declared on.
	lines map[string]int
}

// API configures the HTTP API under /api/v1.
type API struct {
	// TokenFile holds the bearer token mutating calls need; without it they answer 403.
	TokenFile string `yaml:"tokenFile"`
}

// Webhooks configures the /hooks endpoints.
type Webhooks struct {
	// MaxBodyBytes caps a webhook body; larger ones get 413. Default 1 MiB.
	MaxBodyBytes int64 `yaml:"maxBodyBytes"`
}

// History bounds the sync history kept in stateDir/state.db.
type History struct {
	// Limit is how many entries each app keeps; the oldest are dropped. Default 100.
	Limit int `yaml:"limit"`
}

// Notify is one notification target.
type Notify struct {
	Name string `yaml:"name"`
	// Type is webhook (JSON signed with HMAC-SHA256) or slack (incoming webhook).
	Type string `yaml:"type"`
	// URLFile holds the target URL; a Slack webhook URL is a credential, so it lives in a file.
	URLFile string `yaml:"urlFile"`
	// SecretFile holds the HMAC key for type webhook; without it requests are unsigned.
	SecretFile string `yaml:"secretFile"`
	// Apps and Events filter what is sent; empty means all.
	Apps   []string `yaml:"apps"`
	Events []string `yaml:"events"`
}

// Repo is one Git repository.
type Repo struct {
	Name string `yaml:"name"`
	// URL is https://, http://, ssh://, scp-like (git@host:org/repo.git), file:// or a local path.
	URL  string `yaml:"url"`
	Auth Auth   `yaml:"auth"`
	// Interval is how often the ref is polled (one ls-remote; no fetch when unchanged).
	Interval Duration `yaml:"interval"`
	Webhook  Webhook  `yaml:"webhook"`
}

// Webhook lets a push to the repo trigger a refresh at once.
type Webhook struct {
	// SecretFile holds the shared secret (HMAC key, or GitLab's token).
	SecretFile string `yaml:"secretFile"`
}

// Auth names files holding credentials. Files are read at each use, so rotation works; their
// contents never reach logs, errors or metrics.
type Auth struct {
	TokenFile      string `yaml:"tokenFile"`
	UsernameFile   string `yaml:"usernameFile"`
	PasswordFile   string `yaml:"passwordFile"`
	SSHKeyFile     string `yaml:"sshKeyFile"`
	KnownHostsFile string `yaml:"knownHostsFile"`
}

// App is one deployed application.
type App struct {
	Name string `yaml:"name"`
	Repo string `yaml:"repo"`
	// Ref is a branch, tag or full commit SHA, or a semver range over tags.
	Ref Ref `yaml:"ref"`
	// Path is the app's directory inside the repository.
	Path       string     `yaml:"path"`
	Driver     string     `yaml:"driver"`
	Compose    Compose    `yaml:"compose"`
	Docker     Docker     `yaml:"docker"`
	Kubernetes Kubernetes `yaml:"kubernetes"`
	Kustomize  Kustomize  `yaml:"kustomize"`
	// Drift is what to do when live state drifts at an unchanged revision: heal or alert.
	Drift string `yaml:"drift"`
	// Sync is auto (new revisions are applied) or manual (reported OutOfSync until synced
	// through the CLI or the API).
	Sync string `yaml:"sync"`
	// Suspend stops every change to the app while it is still planned and reported.
	Suspend bool `yaml:"suspend"`
	// Prune deletes resources removed from Git. Default true.
	Prune         *bool    `yaml:"prune"`
	HealthTimeout Duration `yaml:"healthTimeout"`
	// OnFailure is none, or rollback: a new revision that fails to apply or to become
	// healthy within healthTimeout is replaced by the last healthy one, which is pinned
	// until a newer commit arrives.
	OnFailure string `yaml:"onFailure"`
	// Environments are the app's stages, each run on its own as APP@ENV (see Instances).
	Environments []Environment `yaml:"environments"`
	// Promotion says how promotions between the stages are written.
	Promotion Promotion `yaml:"promotion"`

	// Base and Env are set on an instance of an environment: the app's name and the
	// environment's. Stage is that environment as configured.
	Base  string       `yaml:"-"`
	Env   string       `yaml:"-"`
	Stage *Environment `yaml:"-"`
}

// Compose says how to load a compose app.
type Compose struct {
	Files    []string `yaml:"files"`
	EnvFiles []string `yaml:"envFiles"`
	Profiles []string `yaml:"profiles"`
	// Project is the compose project name; default: the app name.
	Project string `yaml:"project"`
}

// Docker says which Engine runs a docker app.
type Docker struct {
	// Host is the Engine address; default DOCKER_HOST, then the local socket.
	Host string `yaml:"host"`
}

// Kubernetes says which cluster runs a kubernetes app.
type Kubernetes struct {
	// Kubeconfig is the kubeconfig file; empty means in-cluster config when running in a
	// pod, else $KUBECONFIG, else ~/.kube/config.
	Kubeconfig string `yaml:"kubeconfig"`
	// Context is the kubeconfig context; empty means its current context.
	Context string `yaml:"context"`
	// Namespace is the default for namespaced objects that name none; default "default".
	Namespace string `yaml:"namespace"`
	// ForceConflicts lets the app take fields another field manager owns on objects it
	// never applied (adopting someone else's object, a field an autoscaler owns); without it
	// such a field is a conflict that stops the plan. Drift on objects the app applied
	// before is healed either way.
	ForceConflicts bool `yaml:"forceConflicts"`
}

// Kustomize tunes kustomization builds.
type Kustomize struct {
	// AllowRemoteBases lets a kustomization use remote bases (git or http), which makes the
	// build reach the network and read outside the checkout. Off by default.
	AllowRemoteBases bool `yaml:"allowRemoteBases"`
}

// Duration is a time.Duration written as "30s", "1m", "2h".
type Duration struct{ time.Duration }

// UnmarshalYAML accepts Go duration strings.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: invalid duration %q (use e.g. 30s, 1m, 2h)", n.Line, s)
	}
	d.Duration = v
	return nil
}

// PruneEnabled reports the app's prune setting with its default (true).
func (a App) PruneEnabled() bool { return a.Prune == nil || *a.Prune }

// Error is a config problem at one place in the file.
type Error struct {
	File string
	Line int // 0 when unknown
	// Key is the dotted path of the offending key ("apps[1].drift").
	Key string
	Msg string
}

func (e *Error) Error() string {
	switch {
	case e.Line > 0 && e.Key != "":
		return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Key, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	default:
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
}

// ErrInvalid is wrapped by every validation and decoding error, so callers can tell a bad
// config file from a missing one.
var ErrInvalid = errors.New("invalid config")

// Load reads, decodes, defaults and validates the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load for data already read; name is used in messages.
func Parse(name string, data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%w: %s: %s", ErrInvalid, name, yamlMessage(err))
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	cfg := &Config{}
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %s: %s", ErrInvalid, name, yamlMessage(err))
	}
	cfg.File = name
	cfg.lines = keyLines(&root)
	cfg.applyDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// yamlMessage flattens yaml.v3's multi-error into one line per problem, keeping its
// "line N: field x not found in type y" text, which already names the line and key.
func yamlMessage(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return joinLines(te.Errors)
	}
	return err.Error()
}

// unknownField rewrites yaml.v3's Go-flavoured "field x not found in type config.App".
var unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)

func joinLines(lines []string) string {
	var b bytes.Buffer
	for i, l := range lines {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(unknownField.ReplaceAllString(l, `unknown key "$1"`))
	}
	return b.String()
}

func (c *Config) applyDefaults() {
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.Listen == "" && !c.has("listen") {
		c.Listen = DefaultListen
	}
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if !c.has("shutdownTimeout") {
		c.ShutdownTimeout.Duration = DefaultShutdown
	}
	if !c.has("applyTimeout") {
		c.ApplyTimeout.Duration = DefaultApplyTimeout
	}
	if c.Webhooks.MaxBodyBytes == 0 {
		c.Webhooks.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.History.Limit == 0 {
		c.History.Limit = DefaultHistoryLimit
	}
	c.applyServerDefaults()
	for i := range c.Repos {
		if !c.has(fmt.Sprintf("repos[%d].interval", i)) {
			c.Repos[i].Interval.Duration = DefaultInterval
		}
	}
	for i := range c.Apps {
		a := &c.Apps[i]
		if a.Ref == "" {
			a.Ref = DefaultRef
		}
		if a.Path == "" {
			a.Path = "."
		}
		if a.Driver == "" {
			a.Driver = "docker"
		}
		if a.Drift == "" {
			a.Drift = "heal"
		}
		if a.Sync == "" {
			a.Sync = "auto"
		}
		if a.OnFailure == "" {
			a.OnFailure = "none"
		}
		if len(a.Environments) > 0 && a.Promotion.Mode == "" {
			a.Promotion.Mode = PromotePush
		}
		if !c.has(fmt.Sprintf("apps[%d].healthTimeout", i)) {
			a.HealthTimeout.Duration = DefaultHealthTimeout
		}
		if a.Compose.Project == "" {
			a.Compose.Project = a.Name
		}
		if a.Driver == "kubernetes" && a.Kubernetes.Namespace == "" {
			a.Kubernetes.Namespace = "default"
		}
	}
}

// Repo returns the repo with the given name.
func (c *Config) Repo(name string) (Repo, bool) {
	for _, r := range c.Repos {
		if r.Name == name {
			return r, true
		}
	}
	return Repo{}, false
}

// App returns the app with the given name.
func (c *Config) App(name string) (App, bool) {
	for _, a := range c.Apps {
		if a.Name == name {
			return a, true
		}
	}
	return App{}, false
}
