package source

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

const sshdPath = "/usr/sbin/sshd"

// sshServer is a real OpenSSH sshd on a loopback port that lets one key log in as the
// current user and run git-upload-pack.
type sshServer struct {
	port       int
	hostKey    ssh.PublicKey
	clientKey  string // path of the client's private key
	knownHosts string // path of a known_hosts file holding the real host key
}

// startSSHD starts sshd on addr:port; port 0 picks a free one.
func startSSHD(t *testing.T, addr string, port int) *sshServer {
	t.Helper()
	if _, err := exec.LookPath(sshdPath); err != nil {
		t.Fatalf("%s not found: install the Debian package openssh-server (apt-get install -y openssh-server): %v", sshdPath, err)
	}
	dir := t.TempDir()
	hostPub, hostKeyPath := writeKey(t, dir, "host_key")
	clientPub, clientKeyPath := writeKey(t, dir, "client_key")
	authorized := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authorized, ssh.MarshalAuthorizedKey(clientPub), 0o600); err != nil {
		t.Fatal(err)
	}
	if port == 0 {
		port = freePort(t, addr)
	}
	config := filepath.Join(dir, "sshd_config")
	conf := fmt.Sprintf(`Port %d
ListenAddress %s
HostKey %s
AuthorizedKeysFile %s
PidFile %s
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding no
X11Forwarding no
LogLevel VERBOSE
`, port, addr, hostKeyPath, authorized, filepath.Join(dir, "sshd.pid"))
	if err := os.WriteFile(config, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	// OpenSSH refuses to start without its privilege separation directory.
	_ = os.MkdirAll("/run/sshd", 0o755)

	var logs bytes.Buffer
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", config)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("sshd log:\n%s", logs.String())
		}
	})
	waitListening(t, net.JoinHostPort(addr, strconv.Itoa(port)), exited, &logs)

	knownHosts := filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(net.JoinHostPort(addr, strconv.Itoa(port)))}, hostPub)
	if err := os.WriteFile(knownHosts, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &sshServer{port: port, hostKey: hostPub, clientKey: clientKeyPath, knownHosts: knownHosts}
}

// writeKey generates an ed25519 key and writes it in OpenSSH format.
func writeKey(t *testing.T, dir, name string) (ssh.PublicKey, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sshPub, path
}

func freePort(t *testing.T, addr string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitListening(t *testing.T, hostPort string, exited <-chan error, logs *bytes.Buffer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			t.Fatalf("sshd exited: %v\n%s", err, logs.String())
		default:
		}
		conn, err := net.DialTimeout("tcp", hostPort, time.Second)
		if err == nil {
			_ = conn.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("sshd did not listen on %s", hostPort)
}

func TestSSH(t *testing.T) {
	f := newFixture(t)
	want := f.commit("first", map[string]string{"compose.yaml": "services: {}\n"})
	srv := startSSHD(t, "127.0.0.1", 0)
	url := fmt.Sprintf("ssh://root@127.0.0.1:%d%s", srv.port, f.dir)

	t.Run("known-host", func(t *testing.T) {
		obs := newCountingObserver()
		c := newTestCache(t, obs, 0)
		repo := Repo{Name: "app", URL: url, Auth: Auth{SSHKeyFile: srv.clientKey, KnownHostsFile: srv.knownHosts}}
		rev, err := c.Resolve(t.Context(), repo, "main")
		if err != nil || rev != want {
			t.Fatalf("Resolve = %s, %v; want %s", rev, err, want)
		}
		dir, err := c.Checkout(t.Context(), repo, "main", rev)
		if err != nil {
			t.Fatalf("Checkout: %v", err)
		}
		if got := readFile(t, filepath.Join(dir, "compose.yaml")); got != "services: {}\n" {
			t.Errorf("compose.yaml = %q", got)
		}
		if n := obs.count(OpFetch + "/" + ResultSuccess); n != 1 {
			t.Errorf("%d successful fetches, want 1", n)
		}
	})

	t.Run("scp-like", func(t *testing.T) {
		// scp-like URLs have no port, so this needs a second server on port 22 of another
		// loopback address.
		if os.Geteuid() != 0 {
			t.Skip("binding port 22 for the scp-like URL test needs root")
		}
		srv22 := startSSHD(t, "127.0.0.2", 22)
		c := newTestCache(t, nil, 0)
		repo := Repo{Name: "app", URL: "root@127.0.0.2:" + f.dir, Auth: Auth{SSHKeyFile: srv22.clientKey, KnownHostsFile: srv22.knownHosts}}
		rev, err := c.Resolve(t.Context(), repo, "main")
		if err != nil || rev != want {
			t.Fatalf("Resolve = %s, %v; want %s", rev, err, want)
		}
		if _, err := c.Checkout(t.Context(), repo, "main", rev); err != nil {
			t.Fatalf("Checkout: %v", err)
		}
	})

	t.Run("changed-host-key", func(t *testing.T) {
		otherPub, _ := writeKey(t, t.TempDir(), "other")
		kh := filepath.Join(t.TempDir(), "known_hosts")
		line := knownhosts.Line([]string{knownhosts.Normalize(net.JoinHostPort("127.0.0.1", strconv.Itoa(srv.port)))}, otherPub)
		if err := os.WriteFile(kh, []byte(line+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c := newTestCache(t, nil, 0)
		_, err := c.Resolve(t.Context(), Repo{Name: "app", URL: url, Auth: Auth{SSHKeyFile: srv.clientKey, KnownHostsFile: kh}}, "main")
		if !errors.Is(err, ErrHostKey) {
			t.Fatalf("Resolve with a different host key: %v, want ErrHostKey", err)
		}
	})

	t.Run("unknown-host", func(t *testing.T) {
		kh := filepath.Join(t.TempDir(), "known_hosts")
		line := knownhosts.Line([]string{"[other.example]:22"}, srv.hostKey)
		if err := os.WriteFile(kh, []byte(line+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c := newTestCache(t, nil, 0)
		_, err := c.Resolve(t.Context(), Repo{Name: "app", URL: url, Auth: Auth{SSHKeyFile: srv.clientKey, KnownHostsFile: kh}}, "main")
		if !errors.Is(err, ErrHostKey) {
			t.Fatalf("Resolve with the host absent from known_hosts: %v, want ErrHostKey", err)
		}
	})

	t.Run("missing-known-hosts", func(t *testing.T) {
		obs := newCountingObserver()
		c := newTestCache(t, obs, 0)
		for _, kh := range []string{"", filepath.Join(t.TempDir(), "absent")} {
			_, err := c.Resolve(t.Context(), Repo{Name: "app", URL: url, Auth: Auth{SSHKeyFile: srv.clientKey, KnownHostsFile: kh}}, "main")
			if !errors.Is(err, ErrConfig) {
				t.Errorf("Resolve with known_hosts %q: %v, want ErrConfig", kh, err)
			}
		}
		if n := obs.count(OpLsRemote); n != 0 {
			t.Errorf("%d ls-remote attempts without known_hosts, want 0 (never trust on first use)", n)
		}
	})

	t.Run("unauthorized-key", func(t *testing.T) {
		_, otherKey := writeKey(t, t.TempDir(), "other")
		c := newTestCache(t, nil, 0)
		_, err := c.Resolve(t.Context(), Repo{Name: "app", URL: url, Auth: Auth{SSHKeyFile: otherKey, KnownHostsFile: srv.knownHosts}}, "main")
		if err == nil {
			t.Fatal("Resolve with an unauthorized key: no error")
		}
		if strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("error %q leaks key material", err)
		}
	})
}
