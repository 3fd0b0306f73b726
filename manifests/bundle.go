// Package manifests turns an app's files in a Git checkout into desired state: a Bundle.
// It reads only inside the checkout and never touches the network or a backend.
package manifests

import (
	"github.com/compose-spec/compose-go/v2/types"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Bundle is the desired state of one app at one revision.
type Bundle struct {
	// Revision is the Git commit the bundle was loaded from.
	Revision string
	// Compose is set for compose apps; nil in an empty bundle (prune everything).
	Compose *Compose
	// Objects are the Kubernetes objects of a kubernetes app, in file order (see LoadKube);
	// empty in an empty bundle.
	Objects []*unstructured.Unstructured
}

// Compose is a loaded compose project plus what the driver needs to know about the repo files
// its services read.
type Compose struct {
	// Project is loaded the way the Docker CLI loads it: override files merged, env files
	// resolved into each service's environment (env_file cleared), profiles applied, paths
	// absolute inside the checkout.
	Project *types.Project
	// Files lists, per service name, the repo files and directories the service reads at
	// run time (bind-mount sources inside the checkout, file-based configs and secrets),
	// sorted by Path.
	// Env files are not listed: their values are already in the environment.
	Files map[string][]RepoFile
	// Builds holds, per service name, the build context of each deployed service with a
	// `build:` section, confined to the checkout and digested.
	Builds map[string]BuildContext
}

// RepoFile is one file or directory from the checkout that a service reads at run time.
type RepoFile struct {
	// Path is the absolute path in the checkout, exactly as it appears in Project.
	Path string
	// Rel is the path relative to the checkout root, for messages.
	Rel string
	// Dir is true for a directory.
	Dir bool
	// Digest is "sha256:<hex>" of the permission bits and content (for a directory, of its
	// sorted relative paths, modes and file digests or symlink targets), so equal content
	// has an equal digest.
	Digest string
}

// Empty reports whether the bundle desires nothing at all.
func (b *Bundle) Empty() bool { return b == nil || (b.Compose == nil && len(b.Objects) == 0) }
