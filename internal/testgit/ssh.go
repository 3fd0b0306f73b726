package testgit

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

const sshdPath = "/usr/sbin/sshd"

// SSHServer is a real OpenSSH sshd on a loopback address. It lets one key in, as any user
// sshd may switch to (root when the test runs as root, else only the user running it), and
// that user runs git-upload-pack on the repository path an ssh:// URL names.
type SSHServer struct {
	// Addr is the host:port sshd listens on.
	Addr string
	// Port is Addr's port, for ssh://user@host:port/path URLs.
	Port int
	// HostKey is the server's host key.
	HostKey ssh.PublicKey
	// ClientKey is the path of the private key (OpenSSH format, no passphrase) that may log in.
	ClientKey string
	// KnownHosts is the path of a known_hosts file pinning HostKey for Addr.
	KnownHosts string
}

// StartSSHD runs sshd on host:port until the test ends; port 0 picks a free port. Port 22
// (for scp-like URLs, which carry no port) needs root.
func StartSSHD(t testing.TB, host string, port int) *SSHServer {
	t.Helper()
	if _, err := exec.LookPath(sshdPath); err != nil {
		t.Fatalf("%s not found: install the Debian package openssh-server (apt-get install -y openssh-server): %v", sshdPath, err)
	}
	dir := t.TempDir()
	hostKey, hostKeyPath := writeKey(t, dir, "host_key")
	clientKey, clientKeyPath := writeKey(t, dir, "client_key")
	authorized := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authorized, ssh.MarshalAuthorizedKey(clientKey), 0o600); err != nil {
		t.Fatalf("write authorized_keys: %v", err)
	}
	if port == 0 {
		port = freePort(t, host)
	}
	s := &SSHServer{Addr: net.JoinHostPort(host, strconv.Itoa(port)), Port: port, HostKey: hostKey, ClientKey: clientKeyPath}
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
`, port, host, hostKeyPath, authorized, filepath.Join(dir, "sshd.pid"))
	if err := os.WriteFile(config, []byte(conf), 0o600); err != nil {
		t.Fatalf("write sshd_config: %v", err)
	}
	// OpenSSH refuses to start without its privilege separation directory.
	_ = os.MkdirAll("/run/sshd", 0o755)
	runSSHD(t, config, filepath.Join(dir, "sshd.log"), s.Addr)
	s.KnownHosts = WriteKnownHosts(t, hostKey, s.Addr)
	return s
}

// runSSHD starts sshd and returns once it accepts connections. The test's context ending
// stops it with SIGTERM (SIGKILL after 5s); the cleanup waits for it, so no sshd outlives
// the test.
func runSSHD(t testing.TB, config, logPath, addr string) {
	t.Helper()
	logs, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("create sshd log: %v", err)
	}
	cmd := exec.CommandContext(t.Context(), sshdPath, "-D", "-e", "-f", config)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Stdout, cmd.Stderr = logs, logs
	err = cmd.Start()
	_ = logs.Close() // sshd holds its own descriptor
	if err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		<-exited
		if t.Failed() {
			t.Logf("sshd log:\n%s", readLog(logPath))
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("sshd exited: %v\n%s", waitErr, readLog(logPath))
		default:
		}
		conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(t.Context(), "tcp", addr)
		if err == nil {
			_ = conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not listen on %s within 10s:\n%s", addr, readLog(logPath))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readLog(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(read %s: %v)", path, err)
	}
	return string(b)
}

// NewKey generates an ed25519 key, writes its private half in OpenSSH format to a new file
// and returns the public key and the file's path. It makes keys sshd does not know and
// host keys for WriteKnownHosts.
func NewKey(t testing.TB) (ssh.PublicKey, string) {
	t.Helper()
	return writeKey(t, t.TempDir(), "key")
}

func writeKey(t testing.TB, dir, name string) (ssh.PublicKey, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatalf("marshal key: %v", err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatalf("write key: %v", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatalf("public key: %v", err)
	}
	return sshPub, path
}

// WriteKnownHosts writes a known_hosts file holding one line that pins key for addr
// (host:port) and returns its path.
func WriteKnownHosts(t testing.TB, key ssh.PublicKey, addr string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(addr)}, key)
	if err := os.WriteFile(p, []byte(line+"\n"), 0o600); err != nil {
		t.Fatalf("write known_hosts: %v", err)
	}
	return p
}

// freePort finds a port on host that nothing listens on now; sshd cannot be told to pick one.
func freePort(t testing.TB, host string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("find a free port on %s: %v", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
