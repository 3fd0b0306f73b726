package source

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/shipwatch/shipwatch/internal/testgit"
)

// TestWriteCommitsAndPushes writes a promotion-like commit over every transport shipwatch
// pushes with: a file:// path, smart HTTP with a token and SSH with a key.
func TestWriteCommitsAndPushes(t *testing.T) {
	const token = "tok-write-test"
	for _, transport := range []string{"file", "http", "ssh"} {
		t.Run(transport, func(t *testing.T) {
			f := testgit.New(t)
			first := f.Commit("first", map[string]string{"web/envs/dev/images.env": "IMAGE=web:1\n", "README": "x\n"})
			repo := Repo{Name: "deploy", URL: f.Dir}
			switch transport {
			case "http":
				repo.URL = testgit.StartHTTP(t, f.Dir, testgit.HTTPAuth{Token: token})
				repo.Auth = Auth{TokenFile: testgit.SecretFile(t, token)}
			case "ssh":
				srv := testgit.StartSSHD(t, "127.0.0.1", 0)
				repo.URL = fmt.Sprintf("ssh://root@%s%s", srv.Addr, f.Dir)
				repo.Auth = Auth{SSHKeyFile: srv.ClientKey, KnownHostsFile: srv.KnownHosts}
			}
			c := newTestCache(t, nil, 0)
			edit := Edit{Branch: "main", Message: "promote web to staging\n\nfrom dev at " + first,
				Author: Signature{Name: "shipwatch", Email: "shipwatch@localhost"},
				Files:  map[string][]byte{"web/envs/staging/images.env": []byte("IMAGE=web:1\n")}}
			sha, err := c.Write(t.Context(), repo, edit)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Git("rev-parse", "main"); got != sha {
				t.Fatalf("remote main = %s, want the pushed %s", got, sha)
			}
			if parent := f.Git("rev-parse", sha+"^"); parent != first {
				t.Errorf("parent = %s, want %s", parent, first)
			}
			if got := f.Git("show", sha+":web/envs/staging/images.env"); got != "IMAGE=web:1" {
				t.Errorf("written file = %q", got)
			}
			if got := f.Git("show", sha+":README"); got != "x" {
				t.Errorf("an untouched file changed: %q", got)
			}
			if msg := f.Git("log", "-1", "--format=%an <%ae>%n%B", sha); !strings.Contains(msg, "shipwatch <shipwatch@localhost>") || !strings.Contains(msg, "from dev at "+first) {
				t.Errorf("commit = %q", msg)
			}
			if _, err := c.Write(t.Context(), repo, edit); !errors.Is(err, ErrNothingToCommit) {
				t.Errorf("the same edit again: %v, want ErrNothingToCommit", err)
			}
		})
	}
}

// TestWriteRetriesOnceWhenTheBranchMoved: a commit pushed by someone else between shipwatch's
// read of the branch and its push makes it commit the same files again on the new head.
func TestWriteRetriesOnceWhenTheBranchMoved(t *testing.T) {
	f := testgit.New(t)
	f.Commit("first", map[string]string{"a.env": "A=1\n"})
	repo := Repo{Name: "deploy", URL: f.Dir}
	c := newTestCache(t, nil, 0)
	moves, n := 1, 0
	c.beforePush = func() {
		if moves > 0 {
			moves--
			n++
			f.Commit("someone else", map[string]string{"other": fmt.Sprintf("y%d\n", n)})
		}
	}
	sha, err := c.Write(t.Context(), repo, Edit{Branch: "main", Message: "m", Files: map[string][]byte{"a.env": []byte("A=2\n")}})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Git("show", sha+":other"); got != "y1" {
		t.Errorf("the retried commit is not on the moved head: other = %q", got)
	}
	if got := f.Git("show", "main:a.env"); got != "A=2" {
		t.Errorf("a.env = %q", got)
	}
	moves = 2 // it moves again on the retry: reported, not retried forever
	_, err = c.Write(t.Context(), repo, Edit{Branch: "main", Message: "m", Files: map[string][]byte{"a.env": []byte("A=3\n")}})
	if !errors.Is(err, ErrPushRejected) {
		t.Errorf("a branch moving twice: %v, want ErrPushRejected", err)
	}
}

// TestWriteToAReviewBranch leaves the branch alone and (re)writes the review branch.
func TestWriteToAReviewBranch(t *testing.T) {
	f := testgit.New(t)
	first := f.Commit("first", map[string]string{"a.env": "A=1\n"})
	repo := Repo{Name: "deploy", URL: f.Dir}
	c := newTestCache(t, nil, 0)
	for _, v := range []string{"2", "3"} {
		edit := Edit{Branch: "main", PushTo: "shipwatch/promote-web-staging-abc", Message: "m" + v,
			Files: map[string][]byte{"a.env": []byte("A=" + v + "\n")}}
		sha, err := c.Write(t.Context(), repo, edit)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Git("rev-parse", "shipwatch/promote-web-staging-abc"); got != sha {
			t.Errorf("review branch = %s, want %s", got, sha)
		}
	}
	if got := f.Git("rev-parse", "main"); got != first {
		t.Errorf("main moved to %s", got)
	}
	if _, err := c.Write(t.Context(), repo, Edit{Branch: "main", Message: "m", Files: map[string][]byte{"../x": []byte("1")}}); !errors.Is(err, ErrConfig) {
		t.Errorf("a path out of the repository: %v", err)
	}
}
