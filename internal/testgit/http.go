package testgit

import (
	"crypto/subtle"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// HTTPAuth is the basic auth a StartHTTP server accepts: User with Password, and, when
// Token is set, any user name with Token as the password (as GitHub and Gitea accept a
// token).
type HTTPAuth struct {
	// User is the user name that goes with Password.
	User string
	// Password is User's password.
	Password string
	// Token, when set, is accepted as the password of any user name.
	Token string
}

// StartHTTP serves the repository at dir (a work tree or a bare repository) through the
// real `git http-backend` behind basic auth on a loopback port until the test ends, and
// returns its clone URL. A request without valid credentials gets 401 with a Basic
// challenge, as a Git host answers.
func StartHTTP(t testing.TB, dir string, auth HTTPAuth) string {
	t.Helper()
	execPath, err := exec.CommandContext(t.Context(), "git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend")
	if _, err := exec.LookPath(backend); err != nil {
		t.Fatalf("git-http-backend not found (install the git package): %v", err)
	}
	cgiHandler := &cgi.Handler{
		Path: backend,
		Env: []string{"GIT_PROJECT_ROOT=" + filepath.Dir(dir), "GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=" + os.DevNull,
			// Pushes are allowed: this server authenticates every request itself.
			"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.receivepack", "GIT_CONFIG_VALUE_0=true"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !auth.accepts(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		cgiHandler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/" + filepath.Base(dir)
}

// accepts compares secrets in constant time, as a real server must.
func (a HTTPAuth) accepts(r *http.Request) bool {
	u, p, ok := r.BasicAuth()
	if !ok {
		return false
	}
	if u == a.User && equal(p, a.Password) {
		return true
	}
	return a.Token != "" && equal(p, a.Token)
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
