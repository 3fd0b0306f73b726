// Package testgit makes real Git repositories for tests and serves them the ways shipwatch
// reads them in production: file://, smart HTTP through `git http-backend` behind basic auth,
// and SSH through a local OpenSSH sshd. It needs the git CLI and, for SSH, /usr/sbin/sshd
// (Debian's openssh-server); a missing tool fails the test with what to install.
package testgit

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Repo is a repository with a work tree on branch main, changed through the git CLI. Git
// runs with a fixed identity and without the user's or the system's config, so a
// developer's signing, hooks or default branch cannot change what a test builds.
type Repo struct {
	// Dir is the work tree: a local path shipwatch accepts as a repo URL, and what
	// StartHTTP and StartSSHD serve.
	Dir string
	t   testing.TB
}

// New makes an empty repository on branch main in a directory removed when the test ends.
// Its last path element is "repo", so an HTTP server names it /repo.
func New(t testing.TB) *Repo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("the git CLI is needed to build test repositories (apt-get install -y git): %v", err)
	}
	r := &Repo{Dir: filepath.Join(t.TempDir(), "repo"), t: t}
	if err := os.Mkdir(r.Dir, 0o755); err != nil {
		t.Fatalf("make repository dir: %v", err)
	}
	r.Git("init", "-q", "-b", "main")
	// A push to the checked-out branch (shipwatch's promotion commits) updates the work
	// tree, so the test sees it as any commit.
	r.Git("config", "receive.denyCurrentBranch", "updateInstead")
	return r
}

// URL is the repository's file:// URL.
func (r *Repo) URL() string { return "file://" + r.Dir }

// Git runs the git CLI in the work tree and returns its trimmed standard output; a failure
// fails the test with git's standard error.
func (r *Repo) Git(args ...string) string {
	r.t.Helper()
	cmd := exec.CommandContext(r.t.Context(), "git", append([]string{"-C", r.Dir}, args...)...)
	cmd.Env = append(os.Environ(), gitEnv()...)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			stderr = ee.Stderr
		}
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// gitEnv isolates git from the machine's configuration and sets who commits.
func gitEnv() []string {
	return []string{
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=" + os.DevNull,
		"GIT_AUTHOR_NAME=test", "GIT_AUTHOR_EMAIL=test@example.test",
		"GIT_COMMITTER_NAME=test", "GIT_COMMITTER_EMAIL=test@example.test",
	}
}

// Write puts files (path in the work tree -> content) in the work tree without committing
// them. An empty content removes the file; a content "symlink:TARGET" makes a symlink to
// TARGET; a path ending in ".sh" is made executable.
func (r *Repo) Write(files map[string]string) {
	r.t.Helper()
	for name, content := range files {
		p := filepath.Join(r.Dir, name)
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.t.Fatalf("replace %s: %v", name, err)
		}
		if content == "" {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatalf("make dir for %s: %v", name, err)
		}
		if target, ok := strings.CutPrefix(content, "symlink:"); ok {
			if err := os.Symlink(target, p); err != nil {
				r.t.Fatalf("symlink %s: %v", name, err)
			}
			continue
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			r.t.Fatalf("write %s: %v", name, err)
		}
	}
}

// Commit writes files as Write does, commits everything on the current branch and returns
// the new commit's SHA.
func (r *Repo) Commit(msg string, files map[string]string) string {
	r.t.Helper()
	r.Write(files)
	r.Git("add", "-A")
	r.Git("commit", "-q", "-m", msg)
	return r.Git("rev-parse", "HEAD")
}

// SecretFile writes content and a newline to a new 0600 file and returns its path: the form
// of the credential files (token, user name, password) a repo's auth block names.
func SecretFile(t testing.TB, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
		t.Fatalf("write secret file: %v", err)
	}
	return p
}
