package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

var (
	errNoSignature        = errors.New("no signature header")
	errSignatureAlg       = errors.New("signature algorithm is not sha256")
	errSignatureMalformed = errors.New("signature is not a hex sha256 digest")
	errNoRef              = errors.New("payload names no ref")
)

// provider is what differs between forges: where the proof is, which events are pushes,
// and where the payload keeps the repository URLs and the ref.
type provider struct {
	credential func(http.Header) (credential, error)
	isPush     func(http.Header) bool
	parse      func(http.Header, []byte) (push, error)
}

// push is all that is ever read from a payload: it picks what to refresh, nothing more.
type push struct {
	ref     string
	urls    []string
	deleted bool
}

func lookupProvider(name string) (provider, bool) {
	switch name {
	case "github":
		return provider{
			credential: func(h http.Header) (credential, error) {
				return prefixedHMAC(h.Get("X-Hub-Signature-256"))
			},
			isPush: func(h http.Header) bool { return h.Get("X-GitHub-Event") == "push" },
			parse:  parseGitHub,
		}, true
	case "gitea":
		return provider{
			credential: giteaCredential,
			isPush: func(h http.Header) bool {
				return firstHeader(h, "X-Gitea-Event", "X-Forgejo-Event", "X-Gogs-Event") == "push"
			},
			parse: parseGitea,
		}, true
	case "gitlab":
		return provider{
			credential: gitlabCredential,
			isPush: func(h http.Header) bool {
				ev := h.Get("X-Gitlab-Event")
				return ev == "Push Hook" || ev == "Tag Push Hook"
			},
			parse: parseGitLab,
		}, true
	case "generic":
		return provider{
			credential: func(h http.Header) (credential, error) {
				return prefixedHMAC(h.Get("X-Shipwatch-Signature-256"))
			},
			isPush: func(http.Header) bool { return true },
			parse:  parseGeneric,
		}, true
	default:
		return provider{}, false
	}
}

// credential is the proof a request carries: an HMAC-SHA256 of the body, or a shared token.
type credential struct {
	mac   []byte
	token []byte
}

// matches checks the proof against one secret in constant time.
func (c credential) matches(secret, body []byte) bool {
	if c.token != nil {
		// Comparing digests hides the secret's length, which ConstantTimeCompare leaks.
		got, want := sha256.Sum256(c.token), sha256.Sum256(secret)
		return hmac.Equal(got[:], want[:])
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hmac.Equal(m.Sum(nil), c.mac)
}

// prefixedHMAC reads "sha256=<hex>". Any other algorithm is refused rather than tried, so
// a sender cannot downgrade the check to a weaker hash.
func prefixedHMAC(v string) (credential, error) {
	if v == "" {
		return credential{}, errNoSignature
	}
	alg, sig, ok := strings.Cut(v, "=")
	if !ok || !strings.EqualFold(alg, "sha256") {
		return credential{}, errSignatureAlg
	}
	return plainHMAC(sig)
}

func plainHMAC(v string) (credential, error) {
	mac, err := hex.DecodeString(strings.TrimSpace(v))
	if err != nil || len(mac) != sha256.Size {
		return credential{}, errSignatureMalformed
	}
	return credential{mac: mac}, nil
}

// giteaCredential takes the first signature header present. Gitea, Forgejo and Gogs send
// several at once with the same digest; the GitHub-style one is the only prefixed form.
func giteaCredential(h http.Header) (credential, error) {
	if v := h.Get("X-Hub-Signature-256"); v != "" {
		return prefixedHMAC(v)
	}
	if v := firstHeader(h, "X-Gitea-Signature", "X-Forgejo-Signature", "X-Gogs-Signature"); v != "" {
		return plainHMAC(v)
	}
	return credential{}, errNoSignature
}

func gitlabCredential(h http.Header) (credential, error) {
	v := h.Get("X-Gitlab-Token")
	if v == "" {
		return credential{}, errNoSignature
	}
	return credential{token: []byte(v)}, nil
}

func firstHeader(h http.Header, names ...string) string {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			return v
		}
	}
	return ""
}

// jsonBody returns the JSON document of a GitHub or Gitea delivery, which may be sent as a
// form with the document in the "payload" field. The signature covers the raw body.
func jsonBody(h http.Header, body []byte) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return body, nil
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("decode form payload: %w", err)
	}
	return []byte(form.Get("payload")), nil
}

// zeroSHA reports the all-zero revision forges send as "after" when a ref is deleted.
func zeroSHA(rev string) bool {
	return rev != "" && strings.Trim(rev, "0") == ""
}

func parseGitHub(h http.Header, body []byte) (push, error) {
	doc, err := jsonBody(h, body)
	if err != nil {
		return push{}, err
	}
	var p struct {
		Ref        string `json:"ref"`
		After      string `json:"after"`
		Deleted    bool   `json:"deleted"`
		Repository struct {
			CloneURL string `json:"clone_url"`
			SSHURL   string `json:"ssh_url"`
			GitURL   string `json:"git_url"`
			HTMLURL  string `json:"html_url"`
		} `json:"repository"`
	}
	if err := json.Unmarshal(doc, &p); err != nil {
		return push{}, fmt.Errorf("decode github push: %w", err)
	}
	r := p.Repository
	return checkRef(push{
		ref:     p.Ref,
		urls:    []string{r.CloneURL, r.SSHURL, r.GitURL, r.HTMLURL},
		deleted: p.Deleted || zeroSHA(p.After),
	})
}

func parseGitea(h http.Header, body []byte) (push, error) {
	doc, err := jsonBody(h, body)
	if err != nil {
		return push{}, err
	}
	var p struct {
		Ref        string `json:"ref"`
		After      string `json:"after"`
		Repository struct {
			CloneURL string `json:"clone_url"`
			SSHURL   string `json:"ssh_url"`
			HTMLURL  string `json:"html_url"`
		} `json:"repository"`
	}
	if err := json.Unmarshal(doc, &p); err != nil {
		return push{}, fmt.Errorf("decode gitea push: %w", err)
	}
	r := p.Repository
	return checkRef(push{
		ref:     p.Ref,
		urls:    []string{r.CloneURL, r.SSHURL, r.HTMLURL},
		deleted: zeroSHA(p.After),
	})
}

func parseGitLab(_ http.Header, body []byte) (push, error) {
	var p struct {
		Ref     string `json:"ref"`
		After   string `json:"after"`
		Project struct {
			GitHTTPURL string `json:"git_http_url"`
			GitSSHURL  string `json:"git_ssh_url"`
			WebURL     string `json:"web_url"`
		} `json:"project"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return push{}, fmt.Errorf("decode gitlab push: %w", err)
	}
	r := p.Project
	return checkRef(push{
		ref:     p.Ref,
		urls:    []string{r.GitHTTPURL, r.GitSSHURL, r.WebURL},
		deleted: zeroSHA(p.After),
	})
}

func parseGeneric(_ http.Header, body []byte) (push, error) {
	var p struct {
		Repository string `json:"repository"`
		Ref        string `json:"ref"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return push{}, fmt.Errorf("decode generic push: %w", err)
	}
	return checkRef(push{ref: p.Ref, urls: []string{p.Repository}})
}

// checkRef insists on a full ref name: "main" could be a branch or a tag, and guessing
// would refresh apps that track the other one.
func checkRef(p push) (push, error) {
	if !strings.HasPrefix(p.ref, "refs/") || len(p.ref) == len("refs/") {
		return push{}, errNoRef
	}
	return p, nil
}
