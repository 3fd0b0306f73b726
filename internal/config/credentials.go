package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"strings"
)

// CredentialFile is one file of the config that holds a credential.
type CredentialFile struct {
	// Key is the config key naming it ("repos[0].auth.tokenFile").
	Key  string
	Path string
}

// CredentialFiles lists every credential file the config names, in config order.
func (c *Config) CredentialFiles() []CredentialFile {
	var out []CredentialFile
	add := func(key, path string) {
		if path != "" {
			out = append(out, CredentialFile{Key: key, Path: path})
		}
	}
	add("api.tokenFile", c.API.TokenFile)
	for i, r := range c.Repos {
		k := fmt.Sprintf("repos[%d]", i)
		add(k+".auth.tokenFile", r.Auth.TokenFile)
		add(k+".auth.usernameFile", r.Auth.UsernameFile)
		add(k+".auth.passwordFile", r.Auth.PasswordFile)
		add(k+".auth.sshKeyFile", r.Auth.SSHKeyFile)
		add(k+".webhook.secretFile", r.Webhook.SecretFile)
	}
	for i, n := range c.Notify {
		k := fmt.Sprintf("notify[%d]", i)
		add(k+".urlFile", n.URLFile)
		add(k+".secretFile", n.SecretFile)
	}
	return out
}

// CheckCredentialFiles looks at the credential files as they are now. A file anyone else
// may write is refused: whoever can write it can replace the credential. A file group or
// others may read is allowed (Docker and Kubernetes mount secrets 0444 and 0644 by
// default) but returned as a warning, as is a file that does not exist yet (it is read at
// each use, so it may appear later). Errors name the file, line and key.
func (c *Config) CheckCredentialFiles() (warnings []string, err error) {
	var errs []error
	for _, f := range c.CredentialFiles() {
		where := fmt.Sprintf("%s:%d: %s", c.File, c.line(f.Key), f.Key)
		fi, serr := os.Stat(f.Path)
		switch {
		case errors.Is(serr, fs.ErrNotExist):
			warnings = append(warnings, fmt.Sprintf("%s: %s does not exist yet", where, f.Path))
		case serr != nil:
			warnings = append(warnings, fmt.Sprintf("%s: %v", where, serr))
		case !fi.Mode().IsRegular():
			errs = append(errs, &Error{File: c.File, Line: c.line(f.Key), Key: f.Key, Msg: fmt.Sprintf("%s is not a regular file", f.Path)})
		case fi.Mode().Perm()&0o022 != 0:
			errs = append(errs, &Error{File: c.File, Line: c.line(f.Key), Key: f.Key,
				Msg: fmt.Sprintf("%s is writable by group or others (mode %04o): anyone who can write it can replace the credential; chmod go-w it", f.Path, fi.Mode().Perm())})
		case fi.Mode().Perm()&0o044 != 0:
			warnings = append(warnings, fmt.Sprintf("%s: %s is readable by group or others (mode %04o); chmod 600 it unless a container runtime mounted it so",
				where, f.Path, fi.Mode().Perm()))
		}
	}
	if len(errs) > 0 {
		return warnings, fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return warnings, nil
}

// plainHTTPCredentials reports a repo that would send credentials over plain http to a host
// other than loopback, where anyone on the path could read them.
func plainHTTPCredentials(r Repo) bool {
	if r.Auth.TokenFile == "" && r.Auth.UsernameFile == "" && r.Auth.PasswordFile == "" {
		return false
	}
	u, err := url.Parse(r.URL)
	if err != nil || !strings.EqualFold(u.Scheme, "http") {
		return false
	}
	return !LoopbackHost(u.Hostname())
}

// LoopbackHost reports whether host names this machine only: "localhost" or a loopback IP.
func LoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
