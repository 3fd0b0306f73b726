package source

import (
	"context"
	"errors"
	"regexp"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Error classes, matched with errors.Is. ErrNotFound and ErrConfig are "stalled": nothing
// changes until the repository or the configuration does. ErrAuth and ErrHostKey need an
// operator. Any other error (network, server) is worth retrying with backoff.
var (
	// ErrNotFound: the ref or revision does not exist in the repository.
	ErrNotFound = errors.New("not found")
	// ErrAuth: the server rejected the credentials, or they could not be read.
	ErrAuth = errors.New("authentication failed")
	// ErrHostKey: the ssh host key is unknown or differs from known_hosts.
	ErrHostKey = errors.New("ssh host key not trusted")
	// ErrConfig: the repo configuration cannot work (missing known_hosts, ambiguous ref,
	// unsupported URL).
	ErrConfig = errors.New("invalid repository configuration")
)

// Error is a failed operation on one repo. Its message names the configured repo, never
// its URL, and is scrubbed of credentials. The underlying error is deliberately not
// returned by Unwrap, because its text may hold a URL or a secret; errors.Is still sees
// through it (the class sentinels above, context errors, go-git's sentinels).
type Error struct {
	// Repo is the configured repo name.
	Repo string
	// Op is the operation that failed: "validate", "resolve" or "checkout".
	Op    string
	msg   string
	cause error
}

// Error returns the scrubbed message, prefixed with the operation and the repo name.
func (e *Error) Error() string { return "git " + e.Op + " " + e.Repo + ": " + e.msg }

// Is reports whether the hidden cause matches target.
func (e *Error) Is(target error) bool { return errors.Is(e.cause, target) }

// newError classifies cause and wraps it with a scrubbed message. secrets are the
// credential values in use, removed from the text in case a library echoed them.
func newError(repo, op string, cause error, secrets []string) *Error {
	var e *Error
	if errors.As(cause, &e) {
		return e
	}
	return &Error{Repo: repo, Op: op, msg: scrub(cause.Error(), secrets), cause: classify(cause)}
}

// classified joins a class sentinel to an error so errors.Is finds both.
type classified struct {
	class error
	err   error
}

func (c classified) Error() string   { return c.err.Error() }
func (c classified) Unwrap() []error { return []error{c.class, c.err} }

func classify(err error) error {
	var keyErr *knownhosts.KeyError
	var revoked *knownhosts.RevokedError
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrAuth), errors.Is(err, ErrHostKey),
		errors.Is(err, ErrConfig), errors.Is(err, context.Canceled),
		errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, git.NoMatchingRefSpecError{}), errors.Is(err, plumbing.ErrReferenceNotFound),
		errors.Is(err, plumbing.ErrObjectNotFound):
		return classified{ErrNotFound, err}
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed),
		errors.Is(err, transport.ErrInvalidAuthMethod):
		return classified{ErrAuth, err}
	case errors.As(err, &keyErr), errors.As(err, &revoked):
		return classified{ErrHostKey, err}
	}
	return err
}

var userinfoRE = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s"']*@`)

// scrub removes URL userinfo and known secret values from an error text.
func scrub(s string, secrets []string) string {
	s = userinfoRE.ReplaceAllString(s, "$1")
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[REDACTED]")
		}
	}
	return s
}

// redactURL strips userinfo so a URL can be logged.
func redactURL(u string) string { return scrub(u, nil) }
