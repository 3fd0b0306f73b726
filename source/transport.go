package source

import (
	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	"github.com/go-git/go-git/v5/plumbing/transport/server"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// ServeFileInProcess makes go-git serve file:// and local-path repositories in process
// instead of running the git-upload-pack binary, so shipwatch never shells out to git.
// go-git keeps its transports in a process-wide table, so main calls this once at start-up
// (and tests in their TestMain) rather than the package doing it behind the caller's back.
// The in-process server cannot serve shallow fetches; local fetches are full anyway.
func ServeFileInProcess() {
	client.InstallProtocol("file", server.NewServer(fileLoader{}))
}

// fileLoader opens a local repository, bare or with a work tree. go-git's own loader
// mistakes a work tree's root for the git directory, so this one looks for .git first.
type fileLoader struct{}

func (fileLoader) Load(ep *transport.Endpoint) (storer.Storer, error) {
	fs := osfs.New(ep.Path, osfs.WithBoundOS())
	if fi, err := fs.Stat(".git"); err == nil && fi.IsDir() {
		gitDir, err := fs.Chroot(".git")
		if err != nil {
			return nil, err
		}
		return filesystem.NewStorage(gitDir, cache.NewObjectLRUDefault()), nil
	}
	for _, name := range []string{"config", "objects", "HEAD"} {
		if _, err := fs.Stat(name); err != nil {
			return nil, transport.ErrRepositoryNotFound
		}
	}
	return filesystem.NewStorage(fs, cache.NewObjectLRUDefault()), nil
}
