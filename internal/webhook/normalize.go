package webhook

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
)

// ErrInvalidURL is returned by NormalizeURL for addresses it cannot read as a Git remote.
var ErrInvalidURL = errors.New("invalid git remote URL")

// NormalizeURL returns the key under which two spellings of one Git remote compare equal.
//
// Forges put several spellings of a repository into their push payloads (https, ssh,
// scp-like, web page) and users configure any one of them, so the key drops what does not
// identify the repository: the scheme of network URLs (https, http, ssh, git are the same
// host+path), userinfo (credentials or "git@"), default ports, query, fragment, a ".git"
// suffix, trailing and doubled slashes, and the case of the host. The path keeps its case:
// many servers treat it as case-sensitive. `git@host:org/repo` and `ssh://git@host/org/repo`
// are equal although git reads the first relative to the home directory, because forges
// serve both for the same repository. Local repositories (file:// or an absolute path) keep
// a file:// key and never equal a network one.
//
// Errors never contain the input: it may carry credentials.
func NormalizeURL(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalidURL)
	}
	if !strings.Contains(s, "://") {
		if strings.HasPrefix(s, "/") {
			return fileKey(s)
		}
		if isSCPLike(s) {
			return scpKey(s)
		}
		return "", fmt.Errorf("%w: neither a URL, an scp-like address nor an absolute path", ErrInvalidURL)
	}
	u, err := url.Parse(s)
	if err != nil {
		// url.Error repeats the whole input (credentials included); keep only the reason.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return "", fmt.Errorf("%w: %w", ErrInvalidURL, err)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme == "file" {
		if h := strings.ToLower(u.Hostname()); h != "" && h != "localhost" {
			return "", fmt.Errorf("%w: file URL with a remote host", ErrInvalidURL)
		}
		return fileKey(u.Path)
	}
	def, ok := defaultPort(scheme)
	if !ok {
		return "", fmt.Errorf("%w: unsupported scheme %q", ErrInvalidURL, scheme)
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return "", fmt.Errorf("%w: no host", ErrInvalidURL)
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port := u.Port(); port != "" && port != def {
		host += ":" + port
	}
	return networkKey(host, u.Path)
}

// defaultPort reports the port a scheme implies, so that an explicit default port does
// not make a different key; ok is false for schemes that are not Git transports.
func defaultPort(scheme string) (port string, ok bool) {
	switch scheme {
	case "https":
		return "443", true
	case "http":
		return "80", true
	case "ssh", "git+ssh", "ssh+git":
		return "22", true
	case "git":
		return "9418", true
	default:
		return "", false
	}
}

// isSCPLike follows git's own rule: a colon before any slash, and no "://".
func isSCPLike(s string) bool {
	colon := strings.IndexByte(s, ':')
	if colon <= 0 {
		return false
	}
	slash := strings.IndexByte(s, '/')
	return slash < 0 || colon < slash
}

// scpKey reads [user@]host:path and [user@][v6addr]:path.
func scpKey(s string) (string, error) {
	rest := s
	if open := strings.IndexByte(rest, '['); open >= 0 && open < strings.IndexByte(rest, ':') {
		closing := strings.IndexByte(rest, ']')
		if closing < open || closing+1 >= len(rest) || rest[closing+1] != ':' {
			return "", fmt.Errorf("%w: bad bracketed host", ErrInvalidURL)
		}
		user := rest[:open]
		if user != "" && !strings.HasSuffix(user, "@") {
			return "", fmt.Errorf("%w: bad bracketed host", ErrInvalidURL)
		}
		host := strings.ToLower(rest[open : closing+1])
		return networkKey(host, rest[closing+2:])
	}
	colon := strings.IndexByte(rest, ':')
	host, p := rest[:colon], rest[colon+1:]
	if at := strings.LastIndexByte(host, '@'); at >= 0 {
		host = host[at+1:]
	}
	if host == "" {
		return "", fmt.Errorf("%w: no host", ErrInvalidURL)
	}
	return networkKey(strings.ToLower(host), p)
}

func networkKey(host, p string) (string, error) {
	cp := cleanPath(p)
	if cp == "" {
		return "", fmt.Errorf("%w: no repository path", ErrInvalidURL)
	}
	return host + "/" + cp, nil
}

func fileKey(p string) (string, error) {
	cp := cleanPath(p)
	if cp == "" {
		return "", fmt.Errorf("%w: no repository path", ErrInvalidURL)
	}
	return "file:///" + cp, nil
}

// cleanPath returns the path without leading slashes, doubled or trailing slashes and a
// ".git" suffix; "" when nothing names a repository.
func cleanPath(p string) string {
	p = strings.TrimLeft(p, "/")
	if p == "" {
		return ""
	}
	p = path.Clean(p)
	p = strings.TrimSuffix(p, ".git")
	p = strings.TrimRight(p, "/")
	if p == "." || p == ".." {
		return ""
	}
	return p
}
