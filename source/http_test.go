package source

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// gitHTTPServer serves the fixture through the real `git http-backend` behind basic auth.
// It accepts user/pass, and any username with token as the password (as GitHub and Gitea
// accept a token under any username).
type gitHTTPServer struct {
	url      string
	requests atomic.Int64
}

func startGitHTTP(t *testing.T, f *fixture, user, pass, token string) *gitHTTPServer {
	t.Helper()
	execPath := f.git("--exec-path")
	backend := filepath.Join(execPath, "git-http-backend")
	if _, err := exec.LookPath(backend); err != nil {
		t.Fatalf("git-http-backend not found (install the git package): %v", err)
	}
	cgiHandler := &cgi.Handler{
		Path: backend,
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(f.dir), "GIT_HTTP_EXPORT_ALL=1", "HOME=" + f.home},
	}
	s := &gitHTTPServer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		u, p, ok := r.BasicAuth()
		valid := ok && ((u == user && equal(p, pass)) || (token != "" && equal(p, token)))
		if !valid {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		cgiHandler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL + "/" + filepath.Base(f.dir)
	return s
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func TestHTTPBasicAuth(t *testing.T) {
	const (
		user     = "deploy"
		password = "s3cret-password-value"
		token    = "tok-0123456789abcdef"
	)
	f := newFixture(t)
	want := f.commit("first", map[string]string{"compose.yaml": "services: {}\n"})
	f.git("tag", "-a", "-m", "release", "v1")
	srv := startGitHTTP(t, f, user, password, token)

	good := map[string]Auth{
		"token":             {TokenFile: writeSecret(t, token)},
		"token+username":    {TokenFile: writeSecret(t, token), UsernameFile: writeSecret(t, "oauth2")},
		"username+password": {UsernameFile: writeSecret(t, user), PasswordFile: writeSecret(t, password)},
	}
	for name, auth := range good {
		t.Run(name, func(t *testing.T) {
			obs := newCountingObserver()
			c := newTestCache(t, obs, 0)
			repo := Repo{Name: "app", URL: srv.url, Auth: auth}
			for _, ref := range []string{"main", "v1"} {
				rev, err := c.Resolve(t.Context(), repo, ref)
				if err != nil || rev != want {
					t.Fatalf("Resolve(%s) = %s, %v; want %s", ref, rev, err, want)
				}
			}
			dir, err := c.Checkout(t.Context(), repo, "main", want)
			if err != nil {
				t.Fatalf("Checkout: %v", err)
			}
			if got := readFile(t, filepath.Join(dir, "compose.yaml")); got != "services: {}\n" {
				t.Errorf("compose.yaml = %q", got)
			}
			if n := obs.count(OpFetch + "/" + ResultSuccess); n != 1 {
				t.Errorf("%d successful fetches, want 1", n)
			}
			if n := obs.count(OpFetch + "/" + ResultError); n != 0 {
				t.Errorf("%d failed fetches: shallow fetch over smart HTTP should work", n)
			}
		})
	}

	bad := map[string]Auth{
		"wrong-token":    {TokenFile: writeSecret(t, "wrong-"+token)},
		"wrong-password": {UsernameFile: writeSecret(t, user), PasswordFile: writeSecret(t, "wrong-"+password)},
		"none":           {},
	}
	for name, auth := range bad {
		t.Run(name, func(t *testing.T) {
			obs := newCountingObserver()
			c := newTestCache(t, obs, 0)
			repo := Repo{Name: "app", URL: srv.url, Auth: auth}
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
		file := writeSecret(t, "old-"+token)
		repo := Repo{Name: "app", URL: srv.url, Auth: Auth{TokenFile: file}}
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
		u := strings.Replace(srv.url, "http://", "http://"+user+":wrong-"+password+"@", 1)
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
