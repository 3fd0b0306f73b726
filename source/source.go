// Package source fetches desired state from Git: it resolves a ref to a commit with one
// ls-remote, keeps one bare repository per configured repo as a shared object cache, and
// writes read-only checkouts of single revisions for the manifest loader.
//
// Layout under Options.Dir:
//
//	repos/<name>.git            bare repository; one fetch serves every app of the repo
//	checkouts/<name>/<sha>      the tree of commit <sha>, read-only
//	checkouts/<name>/.tmp-*     a checkout being written (never returned; removed by New)
//	checkouts/<name>/.del-*     a checkout being removed (never returned; removed by New)
//
// Only the configured repo name appears in errors, logs and observations: a URL may carry
// credentials, and credential files are read at each use and never echoed.
package source

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
	"golang.org/x/sync/singleflight"
)

// Repo is one configured repository.
type Repo struct {
	// Name is the configured name; the only identifier that may appear in metrics and logs.
	// It names directories in the cache, so it is limited to [A-Za-z0-9._-].
	Name string
	// URL is https://, http://, ssh://user@host:port/path, scp-like user@host:path,
	// file:///abs, or a local path.
	URL string
	// Auth names the files holding credentials, if any.
	Auth Auth
}

// Auth names files holding credentials. They are read at each use, so rotating a file's
// content takes effect without a restart; their content is never logged or put in errors.
//
// For http(s), TokenFile is sent as the basic-auth password with the username from
// UsernameFile, or "x-access-token" when there is none (the GitHub and Gitea convention;
// GitLab expects the username "oauth2", so put that in UsernameFile). Without a token,
// UsernameFile and PasswordFile give plain basic auth.
//
// For ssh, SSHKeyFile is an unencrypted PEM or OpenSSH private key and KnownHostsFile is
// required: an unknown or changed host key is an error, never trusted on first use.
type Auth struct {
	TokenFile      string
	UsernameFile   string
	PasswordFile   string
	SSHKeyFile     string
	KnownHostsFile string
}

// Observer receives one call per remote operation. op is OpLsRemote, OpFetch or OpPush; result is
// ResultSuccess or ResultError; repo is the configured name.
type Observer interface {
	ObserveGitRequest(repo, op, result string, d time.Duration)
}

// Values passed to Observer.
const (
	OpLsRemote    = "ls-remote"
	OpFetch       = "fetch"
	OpPush        = "push"
	ResultSuccess = "success"
	ResultError   = "error"
)

// DefaultKeep is the number of checkouts kept per repo when Options.Keep is zero: the
// current revision, the previous one (for a rollback or a diff) and one in flight.
const DefaultKeep = 3

// Options configures a Cache.
type Options struct {
	// Dir is the cache directory; it is created if missing.
	Dir string
	// Observer, if set, is told about every remote operation.
	Observer Observer
	// Logger, if set, receives debug records of fetches and checkouts.
	Logger *slog.Logger
	// Keep is the number of checkouts kept per repo; 0 means DefaultKeep.
	Keep int
}

// Cache resolves refs and hands out checkouts. It is safe for concurrent use.
type Cache struct {
	dir  string
	obs  Observer
	log  *slog.Logger
	keep int

	flight singleflight.Group

	mu    sync.Mutex
	repos map[string]*repoState
	// holds counts the holders of each checkout ("repo/rev"), which prune leaves alone.
	holds map[string]int
	// beforePush, set by tests only, runs between Write's commit and its push.
	beforePush func()
}

// repoState serialises everything that touches one bare repository: go-git's filesystem
// storage is not safe for concurrent writers, and a fetch must not race a tree walk.
type repoState struct {
	mu  sync.Mutex
	git *git.Repository
	// refNames remembers the full ref name each short ref resolved to, so that Checkout
	// fetches exactly that refspec without another ls-remote.
	refNames map[string]string
}

// New prepares the cache directory and removes the leftovers of interrupted checkouts.
func New(opts Options) (*Cache, error) {
	if opts.Dir == "" {
		return nil, errors.New("source cache: empty directory")
	}
	if opts.Keep < 0 {
		return nil, fmt.Errorf("source cache: keep %d: must not be negative", opts.Keep)
	}
	keep := opts.Keep
	if keep == 0 {
		keep = DefaultKeep
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	obs := opts.Observer
	if obs == nil {
		obs = nopObserver{}
	}
	c := &Cache{dir: opts.Dir, obs: obs, log: log, keep: keep, repos: map[string]*repoState{}, holds: map[string]int{}}
	// Owner only: checkouts hold whatever the repos hold (env files, configs), and the bare
	// repositories their whole history. Existing directories from older versions are
	// tightened too.
	for _, d := range []string{opts.Dir, c.reposDir(), c.checkoutsDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("source cache: create %s: %w", d, err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("source cache: restrict %s: %w", d, err)
		}
	}
	if err := c.removeLeftovers(); err != nil {
		return nil, err
	}
	if err := c.repairRepos(); err != nil {
		return nil, err
	}
	return c, nil
}

type nopObserver struct{}

func (nopObserver) ObserveGitRequest(string, string, string, time.Duration) {}

func (c *Cache) reposDir() string     { return filepath.Join(c.dir, "repos") }
func (c *Cache) checkoutsDir() string { return filepath.Join(c.dir, "checkouts") }

func (c *Cache) barePath(name string) string {
	return filepath.Join(c.reposDir(), name+".git")
}

func (c *Cache) checkoutPath(name, rev string) string {
	return filepath.Join(c.checkoutsDir(), name, rev)
}

func (c *Cache) state(name string) *repoState {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.repos[name]
	if !ok {
		st = &repoState{refNames: map[string]string{}}
		c.repos[name] = st
	}
	return st
}

// observe runs one remote operation and reports it.
func (c *Cache) observe(name, op string, fn func() error) error {
	start := time.Now()
	err := fn()
	result := ResultSuccess
	if err != nil {
		result = ResultError
	}
	c.obs.ObserveGitRequest(name, op, result, time.Since(start))
	return err
}

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	shaRE  = regexp.MustCompile(`^[0-9a-fA-F]{40}$`)
)

// validate rejects repos whose name could not safely name a directory; the name is the
// only thing that ties cache paths to a repo.
func validate(repo Repo) error {
	if !nameRE.MatchString(repo.Name) || strings.Contains(repo.Name, "..") {
		return newError(repo.Name, "validate", fmt.Errorf("%w: invalid repo name %q: use letters, digits, '.', '_' and '-'", ErrConfig, repo.Name), nil)
	}
	if repo.URL == "" {
		return newError(repo.Name, "validate", fmt.Errorf("%w: empty URL", ErrConfig), nil)
	}
	return nil
}

func isFullSHA(s string) bool { return shaRE.MatchString(s) }

// RemoveAll removes a cache directory made by New. Its checkouts are read-only, which
// os.RemoveAll alone cannot delete as a user other than root.
func RemoveAll(dir string) error { return removeTree(dir) }
