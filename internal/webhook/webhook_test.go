package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	appSecret   = "app-secret-3f9a"
	infraSecret = "infra-secret-77c1"
	labToken    = "lab-token-0d2e"
)

type refresh struct{ repo, ref string }

// recorder is both the Target and the Metrics of a test handler.
type recorder struct {
	mu      sync.Mutex
	calls   []refresh
	results []string
	perRepo int
}

func (r *recorder) RefreshRepo(repo, ref string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, refresh{repo, ref})
	return r.perRepo
}

func (r *recorder) ObserveWebhook(provider, result string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.results = append(r.results, provider+"/"+result)
}

func (r *recorder) refreshes() []refresh {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

func (r *recorder) lastResult() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.results) == 0 {
		return ""
	}
	return r.results[len(r.results)-1]
}

func staticSecret(s string) func() ([]byte, error) {
	return func() ([]byte, error) { return []byte(s), nil }
}

func testRepos() []Repo {
	return []Repo{
		{Name: "app", URL: "https://github.com/acme/app.git", Secret: staticSecret(appSecret)},
		{Name: "infra", URL: "git@gitea.example.com:ops/infra.git", Secret: staticSecret(infraSecret)},
		{Name: "lab", URL: "ssh://git@gitlab.example.com/grp/lab", Secret: staticSecret(labToken)},
		{Name: "open", URL: "https://github.com/acme/open", Secret: nil},
	}
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	rec   *recorder
	clock *clock
	mux   *http.ServeMux
	h     *Handler
	logs  *bytes.Buffer
}

func newFixture(t *testing.T, mutate func(*Options)) *fixture {
	t.Helper()
	f := &fixture{
		rec:   &recorder{perRepo: 1},
		clock: &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)},
		mux:   http.NewServeMux(),
		logs:  &bytes.Buffer{},
	}
	opts := Options{
		Repos:   testRepos(),
		Target:  f.rec,
		Metrics: f.rec,
		Logger:  slog.New(slog.NewTextHandler(&lockedWriter{w: f.logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:     f.clock.now,
	}
	if mutate != nil {
		mutate(&opts)
	}
	h, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f.h = h
	f.mux.Handle("POST /hooks/{provider}", h)
	return f
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

type hook struct {
	provider string
	remote   string
	headers  map[string]string
	body     string
}

func (f *fixture) do(t *testing.T, hk hook) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/hooks/"+hk.provider, strings.NewReader(hk.body))
	req.RemoteAddr = cmpOrString(hk.remote, "192.0.2.10:40000")
	for k, v := range hk.headers {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	f.mux.ServeHTTP(w, req)
	return w
}

func cmpOrString(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func hmacHex(secret, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil))
}

func githubHook(body, secret string) hook {
	return hook{provider: "github", body: body, headers: map[string]string{
		"X-GitHub-Event":      "push",
		"X-Hub-Signature-256": "sha256=" + hmacHex(secret, body),
	}}
}

func TestSecretOfAnotherRepoDoesNotRefresh(t *testing.T) {
	// Signed with infra's secret but naming app: the sender proved nothing about app.
	f := newFixture(t, nil)
	w := f.do(t, githubHook(githubPush, infraSecret))
	if w.Code != http.StatusAccepted || w.Body.String() != "{\"triggered\":0}\n" {
		t.Fatalf("status %d, body %q", w.Code, w.Body)
	}
	if got := f.rec.refreshes(); len(got) != 0 {
		t.Errorf("refreshed %v", got)
	}
}

func TestSharedSecretRefreshesEveryNamedRepo(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.Repos = append(o.Repos, Repo{Name: "app-ssh", URL: "ssh://git@github.com/acme/app", Secret: staticSecret(appSecret)})
	})
	f.rec.perRepo = 2
	w := f.do(t, githubHook(githubPush, appSecret))
	if w.Code != http.StatusAccepted || w.Body.String() != "{\"triggered\":4}\n" {
		t.Fatalf("status %d, body %q", w.Code, w.Body)
	}
	want := []refresh{{"app", "refs/heads/main"}, {"app-ssh", "refs/heads/main"}}
	if got := f.rec.refreshes(); !slices.Equal(got, want) {
		t.Errorf("refreshes %v, want %v", got, want)
	}
}

func TestBodyLimit(t *testing.T) {
	body := `{"repository":"https://github.com/acme/app","ref":"refs/heads/main"}`
	signed := func(b string) hook {
		return hook{provider: "generic", body: b, headers: map[string]string{
			"X-Shipwatch-Signature-256": "sha256=" + hmacHex(appSecret, b)}}
	}
	f := newFixture(t, func(o *Options) { o.MaxBody = int64(len(body)) })
	if w := f.do(t, signed(body)); w.Code != http.StatusAccepted {
		t.Fatalf("body at the limit: status %d", w.Code)
	}
	w := f.do(t, signed(body+" "))
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("body over the limit: status %d", w.Code)
	}
	if got := f.rec.lastResult(); got != "generic/too_large" {
		t.Errorf("metric %q", got)
	}
	if got := f.rec.refreshes(); len(got) != 1 {
		t.Errorf("refreshes %v, want only the first", got)
	}
}

func TestDefaultBodyLimit(t *testing.T) {
	f := newFixture(t, nil)
	big := strings.Repeat("x", DefaultMaxBody+1)
	if w := f.do(t, githubHook(big, appSecret)); w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d", w.Code)
	}
}

func TestRateLimit(t *testing.T) {
	f := newFixture(t, nil)
	bad := githubHook(githubPush, "wrong")
	bad.remote = "198.51.100.7:5555"
	for i := range DefaultFailures {
		if w := f.do(t, bad); w.Code != http.StatusUnauthorized {
			t.Fatalf("request %d: status %d", i+1, w.Code)
		}
	}
	if w := f.do(t, bad); w.Code != http.StatusTooManyRequests {
		t.Fatalf("11th request: status %d", w.Code)
	}
	if got := f.rec.lastResult(); got != "github/rate_limited" {
		t.Errorf("metric %q", got)
	}
	// A blocked client is refused before its signature is even looked at.
	good := githubHook(githubPush, appSecret)
	good.remote = "198.51.100.7:6666"
	if w := f.do(t, good); w.Code != http.StatusTooManyRequests {
		t.Fatalf("valid request from blocked address: status %d", w.Code)
	}
	other := bad
	other.remote = "198.51.100.8:5555"
	if w := f.do(t, other); w.Code != http.StatusUnauthorized {
		t.Fatalf("other address: status %d", w.Code)
	}
	f.clock.advance(DefaultWindow)
	if w := f.do(t, good); w.Code != http.StatusAccepted {
		t.Fatalf("after the window: status %d", w.Code)
	}
	if got := f.rec.refreshes(); len(got) != 1 {
		t.Errorf("refreshes %v", got)
	}
}

func TestRateLimitNotResetBySuccess(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Failures = 4; o.Window = time.Hour })
	bad := githubHook(githubPush, "wrong")
	good := githubHook(githubPush, appSecret)
	for _, hk := range []hook{bad, bad, good, bad, good, bad} {
		f.do(t, hk)
		f.clock.advance(time.Minute)
	}
	if w := f.do(t, good); w.Code != http.StatusTooManyRequests {
		t.Fatalf("status %d after 4 failures mixed with successes", w.Code)
	}
}

func TestOversizeCountsAsFailure(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxBody = 10; o.Failures = 2 })
	big := githubHook(githubPush, appSecret)
	f.do(t, big)
	f.do(t, big)
	if w := f.do(t, githubHook("{}", appSecret)); w.Code != http.StatusTooManyRequests {
		t.Fatalf("status %d", w.Code)
	}
}

func TestUnknownRepoAndPingLookAlike(t *testing.T) {
	f := newFixture(t, nil)
	unknown := `{"ref":"refs/heads/main","repository":{"clone_url":"https://github.com/acme/secret-project.git"}}`
	w1 := f.do(t, githubHook(unknown, appSecret))
	ping := githubHook(`{"zen":"Keep it logically awesome.","hook_id":1}`, appSecret)
	ping.headers["X-GitHub-Event"] = "ping"
	w2 := f.do(t, ping)
	for i, w := range []*httptest.ResponseRecorder{w1, w2} {
		if w.Code != http.StatusAccepted || w.Body.String() != "{\"triggered\":0}\n" {
			t.Errorf("response %d: status %d, body %q", i, w.Code, w.Body)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("response %d: content type %q", i, ct)
		}
	}
	if got := f.rec.refreshes(); len(got) != 0 {
		t.Errorf("refreshed %v", got)
	}
	if got := f.rec.lastResult(); got != "github/ignored" {
		t.Errorf("metric %q", got)
	}
}

func TestUnknownProviderAndMethod(t *testing.T) {
	f := newFixture(t, nil)
	if w := f.do(t, hook{provider: "bitbucket", body: "{}"}); w.Code != http.StatusNotFound {
		t.Errorf("unknown provider: status %d", w.Code)
	}
	// Mounted without a method pattern, the handler itself refuses other methods.
	mux := http.NewServeMux()
	mux.Handle("/hooks/{provider}", f.h)
	req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/hooks/github", nil)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, req)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: status %d", w.Code)
	}
}

func TestSecretRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte("first-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *Options) {
		o.Repos = []Repo{{Name: "app", URL: "https://github.com/acme/app", Secret: func() ([]byte, error) {
			return os.ReadFile(path)
		}}}
	})
	if w := f.do(t, githubHook(githubPush, "first-secret")); w.Code != http.StatusAccepted {
		t.Fatalf("first secret: status %d", w.Code)
	}
	if err := os.WriteFile(path, []byte("second-secret\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if w := f.do(t, githubHook(githubPush, "first-secret")); w.Code != http.StatusUnauthorized {
		t.Fatalf("old secret after rotation: status %d", w.Code)
	}
	if w := f.do(t, githubHook(githubPush, "second-secret")); w.Code != http.StatusAccepted {
		t.Fatalf("new secret: status %d", w.Code)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if w := f.do(t, githubHook(githubPush, "second-secret")); w.Code != http.StatusUnauthorized {
		t.Fatalf("missing secret file: status %d", w.Code)
	}
	if !strings.Contains(f.logs.String(), "webhook secret unreadable") {
		t.Errorf("unreadable secret not logged: %s", f.logs)
	}
}

func TestEmptySecretAcceptsNothing(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.Repos = []Repo{{Name: "app", URL: "https://github.com/acme/app", Secret: staticSecret("\n")}}
	})
	if w := f.do(t, githubHook(githubPush, "")); w.Code != http.StatusUnauthorized {
		t.Fatalf("status %d", w.Code)
	}
}

func TestLogsHoldNoSecrets(t *testing.T) {
	f := newFixture(t, nil)
	good := githubHook(githubPush, appSecret)
	f.do(t, good)
	f.do(t, githubHook(githubPush, "wrong"))
	f.do(t, githubHook(`{"ref":`, appSecret))
	gl := hook{provider: "gitlab", body: gitlabPush, headers: map[string]string{
		"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": labToken + "-guess"}}
	f.do(t, gl)
	logs := f.logs.String()
	if !strings.Contains(logs, "repo=app") {
		t.Fatalf("expected a refresh log for app, got:\n%s", logs)
	}
	for _, s := range []string{appSecret, labToken, good.headers["X-Hub-Signature-256"][7:], "do not log me",
		"refs/heads/main", "github.com/acme"} {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain %q:\n%s", s, logs)
		}
	}
}

func TestConcurrentRequests(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxClients = 3 })
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			hk := githubHook(githubPush, appSecret)
			if i%2 == 1 {
				hk = githubHook(githubPush, "wrong")
			}
			hk.remote = "203.0.113." + string(rune('0'+i%10)) + ":1"
			f.do(t, hk)
		})
	}
	wg.Wait()
	if n := len(f.rec.refreshes()); n != 16 {
		t.Errorf("%d refreshes, want 16", n)
	}
	if n := f.h.limit.tracked(); n > 3 {
		t.Errorf("tracking %d clients, bound is 3", n)
	}
}

func TestEndToEndOverHTTP(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxBody = 256 })
	srv := httptest.NewServer(f.mux)
	t.Cleanup(srv.Close)
	post := func(hk hook) int {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/hooks/"+hk.provider, strings.NewReader(hk.body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hk.headers {
			req.Header.Set(k, v)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode
	}
	body := `{"repository":"git@github.com:acme/app.git","ref":"refs/heads/main"}`
	ok := hook{provider: "generic", body: body, headers: map[string]string{
		"X-Shipwatch-Signature-256": "sha256=" + hmacHex(appSecret, body)}}
	if code := post(ok); code != http.StatusAccepted {
		t.Fatalf("status %d", code)
	}
	big := strings.Repeat(" ", 300) + body
	tooBig := hook{provider: "generic", body: big, headers: map[string]string{
		"X-Shipwatch-Signature-256": "sha256=" + hmacHex(appSecret, big)}}
	if code := post(tooBig); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d", code)
	}
	if got := f.rec.refreshes(); !slices.Equal(got, []refresh{{"app", "refs/heads/main"}}) {
		t.Errorf("refreshes %v", got)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	rec := &recorder{}
	cases := map[string]Options{
		"no target":      {},
		"negative body":  {Target: rec, MaxBody: -1},
		"negative limit": {Target: rec, Failures: -1},
		"unnamed repo":   {Target: rec, Repos: []Repo{{URL: "https://h/o/r"}}},
		"duplicate repo": {Target: rec, Repos: []Repo{{Name: "a", URL: "https://h/o/r"}, {Name: "a", URL: "https://h/o/s"}}},
		"bad url":        {Target: rec, Repos: []Repo{{Name: "a", URL: "https://tok:hunter2@h"}}},
	}
	for name, o := range cases {
		_, err := New(o)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: error leaks a credential: %v", name, err)
		}
	}
	_, err := New(cases["bad url"])
	if !errors.Is(err, ErrInvalidURL) {
		t.Errorf("bad url error %v is not ErrInvalidURL", err)
	}
}
