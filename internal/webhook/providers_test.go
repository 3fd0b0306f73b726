package webhook

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"testing"
)

const githubPush = `{"ref":"refs/heads/main","after":"1111111111111111111111111111111111111111",
"repository":{"clone_url":"https://github.com/acme/app.git","ssh_url":"git@github.com:acme/app.git",
"git_url":"git://github.com/acme/app.git","html_url":"https://github.com/acme/app"},
"commits":[{"message":"do not log me"}]}`

const giteaPush = `{"ref":"refs/heads/release","after":"2222222222222222222222222222222222222222",
"repository":{"clone_url":"https://gitea.example.com/ops/infra.git",
"ssh_url":"ssh://git@gitea.example.com:2222/ops/infra.git","html_url":"https://gitea.example.com/ops/infra"}}`

const gitlabPush = `{"object_kind":"push","ref":"refs/heads/main","after":"3333333333333333333333333333333333333333",
"project":{"git_http_url":"https://gitlab.example.com/grp/lab.git","git_ssh_url":"git@gitlab.example.com:grp/lab.git",
"web_url":"https://gitlab.example.com/grp/lab"}}`

const gitlabTagPush = `{"object_kind":"tag_push","ref":"refs/tags/v1","after":"4444444444444444444444444444444444444444",
"project":{"git_http_url":"https://gitlab.example.com/grp/lab.git","git_ssh_url":"git@gitlab.example.com:grp/lab.git",
"web_url":"https://gitlab.example.com/grp/lab"}}`

const genericPush = `{"repository":"https://github.com/acme/app","ref":"refs/tags/v2"}`

func TestValidPushPerProvider(t *testing.T) {
	cases := []struct {
		name string
		hook hook
		want refresh
	}{
		{"github", githubHook(githubPush, appSecret), refresh{"app", "refs/heads/main"}},
		{"github ssh url only", githubHook(`{"ref":"refs/heads/dev","repository":{"ssh_url":"git@github.com:acme/app.git"}}`, appSecret),
			refresh{"app", "refs/heads/dev"}},
		{"gitea", hook{provider: "gitea", body: giteaPush, headers: map[string]string{
			"X-Gitea-Event": "push", "X-Gitea-Signature": hmacHex(infraSecret, giteaPush)}},
			refresh{"infra", "refs/heads/release"}},
		{"gitea hub signature", hook{provider: "gitea", body: giteaPush, headers: map[string]string{
			"X-Gitea-Event": "push", "X-Hub-Signature-256": "sha256=" + hmacHex(infraSecret, giteaPush)}},
			refresh{"infra", "refs/heads/release"}},
		{"forgejo", hook{provider: "gitea", body: giteaPush, headers: map[string]string{
			"X-Forgejo-Event": "push", "X-Forgejo-Signature": hmacHex(infraSecret, giteaPush)}},
			refresh{"infra", "refs/heads/release"}},
		{"gogs", hook{provider: "gitea", body: giteaPush, headers: map[string]string{
			"X-Gogs-Event": "push", "X-Gogs-Signature": hmacHex(infraSecret, giteaPush)}},
			refresh{"infra", "refs/heads/release"}},
		{"gitlab push", hook{provider: "gitlab", body: gitlabPush, headers: map[string]string{
			"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": labToken}},
			refresh{"lab", "refs/heads/main"}},
		{"gitlab tag push", hook{provider: "gitlab", body: gitlabTagPush, headers: map[string]string{
			"X-Gitlab-Event": "Tag Push Hook", "X-Gitlab-Token": labToken}},
			refresh{"lab", "refs/tags/v1"}},
		{"generic", hook{provider: "generic", body: genericPush, headers: map[string]string{
			"X-Shipwatch-Signature-256": "sha256=" + hmacHex(appSecret, genericPush)}},
			refresh{"app", "refs/tags/v2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.rec.perRepo = 3
			w := f.do(t, tc.hook)
			if w.Code != http.StatusAccepted {
				t.Fatalf("status %d, body %q", w.Code, w.Body)
			}
			if got := w.Body.String(); got != "{\"triggered\":3}\n" {
				t.Errorf("body %q", got)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			if got := f.rec.refreshes(); !slices.Equal(got, []refresh{tc.want}) {
				t.Errorf("refreshes %v, want %v", got, tc.want)
			}
			if got := f.rec.lastResult(); got != tc.hook.provider+"/accepted" {
				t.Errorf("metric %q", got)
			}
		})
	}
}

func TestRejectedCredentials(t *testing.T) {
	sha1Sig := func(secret, body string) string {
		m := hmac.New(sha1.New, []byte(secret))
		m.Write([]byte(body))
		return "sha1=" + hex.EncodeToString(m.Sum(nil))
	}
	gh := func(headers map[string]string) hook {
		h := map[string]string{"X-GitHub-Event": "push"}
		for k, v := range headers {
			h[k] = v
		}
		return hook{provider: "github", body: githubPush, headers: h}
	}
	cases := map[string]hook{
		"github wrong secret":      githubHook(githubPush, "not-the-secret"),
		"github missing":           gh(nil),
		"github sha1":              gh(map[string]string{"X-Hub-Signature-256": sha1Sig(appSecret, githubPush)}),
		"github sha1 header":       gh(map[string]string{"X-Hub-Signature": sha1Sig(appSecret, githubPush)}),
		"github no prefix":         gh(map[string]string{"X-Hub-Signature-256": hmacHex(appSecret, githubPush)}),
		"github not hex":           gh(map[string]string{"X-Hub-Signature-256": "sha256=zz" + hmacHex(appSecret, githubPush)[2:]}),
		"github truncated":         gh(map[string]string{"X-Hub-Signature-256": "sha256=" + hmacHex(appSecret, githubPush)[:40]}),
		"github signed other body": gh(map[string]string{"X-Hub-Signature-256": "sha256=" + hmacHex(appSecret, githubPush+" ")}),
		"gitea wrong secret": {provider: "gitea", body: giteaPush, headers: map[string]string{
			"X-Gitea-Event": "push", "X-Gitea-Signature": hmacHex("nope", giteaPush)}},
		"gitea missing": {provider: "gitea", body: giteaPush, headers: map[string]string{"X-Gitea-Event": "push"}},
		"gitea sha1 in hub header": {provider: "gitea", body: giteaPush, headers: map[string]string{
			"X-Gitea-Event": "push", "X-Hub-Signature-256": sha1Sig(infraSecret, giteaPush)}},
		"gitlab wrong token": {provider: "gitlab", body: gitlabPush, headers: map[string]string{
			"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": labToken + "x"}},
		"gitlab missing": {provider: "gitlab", body: gitlabPush, headers: map[string]string{"X-Gitlab-Event": "Push Hook"}},
		"generic wrong": {provider: "generic", body: genericPush, headers: map[string]string{
			"X-Shipwatch-Signature-256": "sha256=" + hmacHex("nope", genericPush)}},
		"generic sha1": {provider: "generic", body: genericPush, headers: map[string]string{
			"X-Shipwatch-Signature-256": sha1Sig(appSecret, genericPush)}},
		"generic missing":      {provider: "generic", body: genericPush},
		"no secret configured": githubHook(`{"ref":"refs/heads/main","repository":{"clone_url":"https://github.com/acme/open"}}`, ""),
	}
	for name, hk := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, nil)
			w := f.do(t, hk)
			if w.Code != http.StatusUnauthorized {
				t.Fatalf("status %d, body %q", w.Code, w.Body)
			}
			if got := f.rec.refreshes(); len(got) != 0 {
				t.Errorf("refreshed %v", got)
			}
			if got := f.rec.lastResult(); got != hk.provider+"/unauthorized" {
				t.Errorf("metric %q", got)
			}
		})
	}
}

func TestNonPushEvents(t *testing.T) {
	cases := map[string]hook{
		"gitea issue": {provider: "gitea", body: giteaPush, headers: map[string]string{
			"X-Gitea-Event": "issues", "X-Gitea-Signature": hmacHex(infraSecret, giteaPush)}},
		"gitlab merge request": {provider: "gitlab", body: gitlabPush, headers: map[string]string{
			"X-Gitlab-Event": "Merge Request Hook", "X-Gitlab-Token": labToken}},
		"github no event": {provider: "github", body: githubPush, headers: map[string]string{
			"X-Hub-Signature-256": "sha256=" + hmacHex(appSecret, githubPush)}},
	}
	for name, hk := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, nil)
			w := f.do(t, hk)
			if w.Code != http.StatusAccepted || w.Body.String() != "{\"triggered\":0}\n" {
				t.Fatalf("status %d, body %q", w.Code, w.Body)
			}
			if got := f.rec.refreshes(); len(got) != 0 {
				t.Errorf("refreshed %v", got)
			}
		})
	}
}

func TestDeletedBranchIsIgnored(t *testing.T) {
	f := newFixture(t, nil)
	body := `{"ref":"refs/heads/gone","after":"0000000000000000000000000000000000000000","deleted":true,
"repository":{"clone_url":"https://github.com/acme/app.git"}}`
	w := f.do(t, githubHook(body, appSecret))
	if w.Code != http.StatusAccepted || w.Body.String() != "{\"triggered\":0}\n" {
		t.Fatalf("status %d, body %q", w.Code, w.Body)
	}
	if got := f.rec.refreshes(); len(got) != 0 {
		t.Errorf("refreshed %v", got)
	}
}

func TestBadPayloadAfterValidSignature(t *testing.T) {
	cases := map[string]string{
		"not json":   `{"ref":`,
		"no ref":     `{"repository":{"clone_url":"https://github.com/acme/app.git"}}`,
		"short ref":  `{"ref":"main","repository":{"clone_url":"https://github.com/acme/app.git"}}`,
		"wrong type": `{"ref":1}`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, nil)
			w := f.do(t, githubHook(body, appSecret))
			if w.Code != http.StatusBadRequest {
				t.Fatalf("status %d", w.Code)
			}
			if got := f.rec.lastResult(); got != "github/bad_request" {
				t.Errorf("metric %q", got)
			}
			// The same body without a valid signature is refused as unauthorized first.
			if w := f.do(t, githubHook(body, "wrong")); w.Code != http.StatusUnauthorized {
				t.Errorf("unsigned: status %d", w.Code)
			}
		})
	}
}

func TestFormEncodedGitHubPayload(t *testing.T) {
	f := newFixture(t, nil)
	body := url.Values{"payload": {githubPush}}.Encode()
	hk := githubHook(body, appSecret)
	hk.headers["Content-Type"] = "application/x-www-form-urlencoded"
	w := f.do(t, hk)
	if w.Code != http.StatusAccepted {
		t.Fatalf("status %d", w.Code)
	}
	if got := f.rec.refreshes(); !slices.Equal(got, []refresh{{"app", "refs/heads/main"}}) {
		t.Errorf("refreshes %v", got)
	}
}
