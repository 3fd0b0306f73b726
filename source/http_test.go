package source

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/shipwatch/shipwatch/internal/testgit"
)

func TestHTTPBasicAuth(t *testing.T) {
	const (
		user     = "deploy"
		password = "s3cret-password-value"
		token    = "tok-0123456789abcdef"
	)
	f := testgit.New(t)
	want := f.Commit("first", map[string]string{"compose.yaml": emptyCompose})
	f.Git("tag", "-a", "-m", "release", "v1")
	url := testgit.StartHTTP(t, f.Dir, testgit.HTTPAuth{User: user, Password: password, Token: token})

	good := map[string]Auth{
		"token":             {TokenFile: testgit.SecretFile(t, token)},
		"token+username":    {TokenFile: testgit.SecretFile(t, token), UsernameFile: testgit.SecretFile(t, "oauth2")},
		"username+password": {UsernameFile: testgit.SecretFile(t, user), PasswordFile: testgit.SecretFile(t, password)},
	}
	for name, auth := range good {
		t.Run(name, func(t *testing.T) {
			checkReads(t, Repo{Name: "app", URL: url, Auth: auth}, want, "main", "v1")
		})
	}

	bad := map[string]Auth{
		"wrong-token":    {TokenFile: testgit.SecretFile(t, "wrong-"+token)},
		"wrong-password": {UsernameFile: testgit.SecretFile(t, user), PasswordFile: testgit.SecretFile(t, "wrong-"+password)},
		"none":           {},
	}
	for name, auth := range bad {
		t.Run(name, func(t *testing.T) {
			obs := newCountingObserver()
			c := newTestCache(t, obs, 0)
			repo := Repo{Name: "app", URL: url, Auth: auth}
			_, err := c.Resolve(t.Context(), repo, "main")
			assertAuthError(t, err, token, password)
			_, err = c.Checkout(t.Context(), repo, "main", want)
			assertAuthError(t, err, token, password)
			if n := obs.count(OpLsRemote + "/" + ResultError); n != 2 {
				t.Errorf("%d failed ls-remote observations, want 2", n)
			}
		})
	}

	t.Run("rotated-token", func(t *testing.T) {
		c := newTestCache(t, nil, 0)
		file := testgit.SecretFile(t, "old-"+token)
		repo := Repo{Name: "app", URL: url, Auth: Auth{TokenFile: file}}
		_, err := c.Resolve(t.Context(), repo, "main")
		assertAuthError(t, err, token)
		if err := os.WriteFile(file, []byte(token), 0o600); err != nil {
			t.Fatal(err)
		}
		if rev, err := c.Resolve(t.Context(), repo, "main"); err != nil || rev != want {
			t.Fatalf("Resolve after rotating the token file = %s, %v; want %s", rev, err, want)
		}
	})

	t.Run("credentials-in-url", func(t *testing.T) {
		c := newTestCache(t, nil, 0)
		u := strings.Replace(url, "http://", "http://"+user+":wrong-"+password+"@", 1)
		_, err := c.Resolve(t.Context(), Repo{Name: "app", URL: u}, "main")
		assertAuthError(t, err, token, password)
		if strings.Contains(err.Error(), "127.0.0.1") && strings.Contains(err.Error(), "@") {
			t.Errorf("error %q may carry URL userinfo", err)
		}
	})
}

func assertAuthError(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error with bad credentials")
	}
	if !errors.Is(err, ErrAuth) {
		t.Errorf("error %q is not ErrAuth", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Repo != "app" {
		t.Errorf("error %q does not name the repo", err)
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q contains a credential", err)
		}
	}
}

func TestErrorScrubsSecrets(t *testing.T) {
	cause := errors.New(`unexpected requesting "https://bob:hunter2@git.example.com/x.git" status code: 500 token=abc123`)
	err := newError("app", "fetch", cause, []string{"abc123"})
	for _, s := range []string{"hunter2", "bob", "abc123"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q contains %q", err, s)
		}
	}
	if errors.Unwrap(err) != nil {
		t.Error("Unwrap exposes the unscrubbed cause")
	}
	if !strings.Contains(err.Error(), "git.example.com/x.git") || !strings.HasPrefix(err.Error(), "git fetch app: ") {
		t.Errorf("error %q lost its context", err)
	}
}

// TestNoCredentialsOverPlainHTTP: a token is never sent over http to a host other than
// loopback; the refusal comes before any connection.
func TestNoCredentialsOverPlainHTTP(t *testing.T) {
	c := newTestCache(t, nil, 0)
	token := testgit.SecretFile(t, "tok-plain-http")
	_, err := c.Resolve(t.Context(), Repo{Name: "app", URL: "http://git.example.invalid/org/r.git", Auth: Auth{TokenFile: token}}, "main")
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "plain http") {
		t.Fatalf("err = %v, want ErrConfig refusing plain http", err)
	}
}
