package source

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shipwatch/shipwatch/internal/testgit"
)

func TestSSH(t *testing.T) {
	f := testgit.New(t)
	want := f.Commit("first", map[string]string{"compose.yaml": emptyCompose})
	srv := testgit.StartSSHD(t, "127.0.0.1", 0)
	url := fmt.Sprintf("ssh://root@%s%s", srv.Addr, f.Dir)

	t.Run("known-host", func(t *testing.T) {
		checkReads(t, Repo{Name: "app", URL: url, Auth: Auth{SSHKeyFile: srv.ClientKey, KnownHostsFile: srv.KnownHosts}}, want, "main")
	})

	t.Run("scp-like", func(t *testing.T) {
		// scp-like URLs have no port, so this needs a second server on port 22 of another
		// loopback address.
		if os.Geteuid() != 0 {
			t.Skip("binding port 22 for the scp-like URL test needs root")
		}
		srv22 := testgit.StartSSHD(t, "127.0.0.2", 22)
		checkReads(t, Repo{Name: "app", URL: "root@127.0.0.2:" + f.Dir, Auth: Auth{SSHKeyFile: srv22.ClientKey, KnownHostsFile: srv22.KnownHosts}}, want, "main")
	})

	t.Run("changed-host-key", func(t *testing.T) {
		otherPub, _ := testgit.NewKey(t)
		kh := testgit.WriteKnownHosts(t, otherPub, srv.Addr)
		c := newTestCache(t, nil, 0)
		_, err := c.Resolve(t.Context(), Repo{Name: "app", URL: url, Auth: Auth{SSHKeyFile: srv.ClientKey, KnownHostsFile: kh}}, "main")
		if !errors.Is(err, ErrHostKey) {
			t.Fatalf("Resolve with a different host key: %v, want ErrHostKey", err)
		}
	})

	t.Run("unknown-host", func(t *testing.T) {
		kh := testgit.WriteKnownHosts(t, srv.HostKey, "other.example:22")
		c := newTestCache(t, nil, 0)
		_, err := c.Resolve(t.Context(), Repo{Name: "app", URL: url, Auth: Auth{SSHKeyFile: srv.ClientKey, KnownHostsFile: kh}}, "main")
		if !errors.Is(err, ErrHostKey) {
			t.Fatalf("Resolve with the host absent from known_hosts: %v, want ErrHostKey", err)
		}
	})

	t.Run("missing-known-hosts", func(t *testing.T) {
		obs := newCountingObserver()
		c := newTestCache(t, obs, 0)
		for _, kh := range []string{"", filepath.Join(t.TempDir(), "absent")} {
			_, err := c.Resolve(t.Context(), Repo{Name: "app", URL: url, Auth: Auth{SSHKeyFile: srv.ClientKey, KnownHostsFile: kh}}, "main")
			if !errors.Is(err, ErrConfig) {
				t.Errorf("Resolve with known_hosts %q: %v, want ErrConfig", kh, err)
			}
		}
		if n := obs.count(OpLsRemote); n != 0 {
			t.Errorf("%d ls-remote attempts without known_hosts, want 0 (never trust on first use)", n)
		}
	})

	t.Run("unauthorized-key", func(t *testing.T) {
		_, otherKey := testgit.NewKey(t)
		c := newTestCache(t, nil, 0)
		_, err := c.Resolve(t.Context(), Repo{Name: "app", URL: url, Auth: Auth{SSHKeyFile: otherKey, KnownHostsFile: srv.KnownHosts}}, "main")
		if err == nil {
			t.Fatal("Resolve with an unauthorized key: no error")
		}
		if strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("error %q leaks key material", err)
		}
	})
}
