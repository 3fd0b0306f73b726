package source

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
)

// defaultTokenUser is the basic-auth username sent with a token when none is configured.
const defaultTokenUser = "x-access-token"

// credentials is the transport auth for one operation plus the secret values it holds, so
// that errors can be scrubbed of them.
type credentials struct {
	method  transport.AuthMethod
	secrets []string
	// local is set for file:// URLs and paths: a shallow fetch saves nothing there, and
	// the in-process file transport cannot serve one.
	local bool
}

// loadCredentials reads the repo's credential files now, so a rotated file takes effect
// on the next operation.
func loadCredentials(repo Repo) (credentials, error) {
	ep, err := transport.NewEndpoint(repo.URL)
	if err != nil {
		// The parse error may quote the URL.
		return credentials{}, fmt.Errorf("%w: parse URL %s", ErrConfig, redactURL(repo.URL))
	}
	switch ep.Protocol {
	case "http", "https":
		creds, err := httpCredentials(repo.Auth)
		if err == nil && creds.method != nil && ep.Protocol == "http" && !loopback(ep.Host) {
			return credentials{}, fmt.Errorf("%w: refusing to send credentials over plain http to %s: use https", ErrConfig, ep.Host)
		}
		return creds, err
	case "ssh":
		return sshCredentials(repo.Auth, ep)
	case "file":
		return credentials{local: true}, nil
	}
	return credentials{}, fmt.Errorf("%w: unsupported protocol %q", ErrConfig, ep.Protocol)
}

func httpCredentials(a Auth) (credentials, error) {
	user, err := readSecretFile("username", a.UsernameFile)
	if err != nil {
		return credentials{}, err
	}
	token, err := readSecretFile("token", a.TokenFile)
	if err != nil {
		return credentials{}, err
	}
	if token != "" {
		if user == "" {
			user = defaultTokenUser
		}
		return credentials{method: &githttp.BasicAuth{Username: user, Password: token}, secrets: []string{token}}, nil
	}
	pass, err := readSecretFile("password", a.PasswordFile)
	if err != nil {
		return credentials{}, err
	}
	if user == "" && pass == "" {
		return credentials{}, nil
	}
	return credentials{method: &githttp.BasicAuth{Username: user, Password: pass}, secrets: []string{pass}}, nil
}

func sshCredentials(a Auth, ep *transport.Endpoint) (credentials, error) {
	if a.KnownHostsFile == "" {
		return credentials{}, fmt.Errorf("%w: ssh needs a known_hosts file", ErrConfig)
	}
	if _, err := os.Stat(a.KnownHostsFile); err != nil {
		return credentials{}, fmt.Errorf("%w: known_hosts file: %w", ErrConfig, err)
	}
	if a.SSHKeyFile == "" {
		return credentials{}, fmt.Errorf("%w: ssh needs a private key file", ErrConfig)
	}
	pem, err := os.ReadFile(a.SSHKeyFile)
	if err != nil {
		return credentials{}, fmt.Errorf("%w: read ssh key file %s: %w", ErrAuth, a.SSHKeyFile, err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		// Do not wrap: a parse error could quote key material.
		return credentials{}, fmt.Errorf("%w: ssh key file %s: not an unencrypted PEM or OpenSSH private key", ErrAuth, a.SSHKeyFile)
	}
	// go-git's known-hosts database is x/crypto/ssh/knownhosts plus the list of key
	// algorithms known for the host, so that a server with several host keys offers the
	// one we can check instead of failing on the first it prefers.
	db, err := gitssh.NewKnownHostsDb(a.KnownHostsFile)
	if err != nil {
		return credentials{}, fmt.Errorf("%w: known_hosts file %s: %w", ErrConfig, a.KnownHostsFile, err)
	}
	user := ep.User
	if user == "" {
		user = "git"
	}
	port := ep.Port
	if port == 0 {
		port = 22
	}
	check := db.HostKeyCallback()
	auth := &gitssh.PublicKeys{User: user, Signer: signer}
	auth.HostKeyCallback = func(host string, remote net.Addr, key ssh.PublicKey) error {
		if err := check(host, remote, key); err != nil {
			return fmt.Errorf("%w: %w", ErrHostKey, err)
		}
		return nil
	}
	auth.HostKeyAlgorithms = db.HostKeyAlgorithms(net.JoinHostPort(ep.Host, strconv.Itoa(port)))
	return credentials{method: auth}, nil
}

// loopback reports a host that names this machine only, where plain http reveals nothing.
func loopback(host string) bool {
	ip := net.ParseIP(host)
	return strings.EqualFold(host, "localhost") || (ip != nil && ip.IsLoopback())
}

// readSecretFile returns the trimmed content of path, or "" when path is empty. The error
// names the file, never its content.
func readSecretFile(what, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%w: read %s file %s: %w", ErrAuth, what, path, err)
	}
	return strings.TrimSpace(string(b)), nil
}
