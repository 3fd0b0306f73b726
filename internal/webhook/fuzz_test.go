package webhook

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzPayloads feeds arbitrary bodies and content types to every provider's payload parser
// and to the URL normaliser: no panic, and an accepted push always names a full ref.
func FuzzPayloads(f *testing.F) {
	f.Add("github", "application/json", []byte(`{"ref":"refs/heads/main","after":"0000","repository":{"clone_url":"https://git.example.com/org/r.git"}}`))
	f.Add("github", "application/x-www-form-urlencoded", []byte(`payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D`))
	f.Add("gitea", "application/json", []byte(`{"ref":"refs/tags/v1","repository":{"ssh_url":"git@host:org/r.git"}}`))
	f.Add("gitlab", "", []byte(`{"ref":"refs/heads/x","project":{"git_http_url":"http://h/p.git"}}`))
	f.Add("generic", "", []byte(`{"repository":"file:///srv/git/r","ref":"refs/heads/main"}`))
	f.Add("generic", "", []byte(`{"repository":"ssh://u@[::1]:22/../../x","ref":"refs/"}`))
	f.Add("github", "application/json; charset=utf-8", []byte(`[`))
	f.Fuzz(func(t *testing.T, name, contentType string, body []byte) {
		p, ok := lookupProvider(name)
		if !ok {
			return
		}
		h := http.Header{}
		h.Set("Content-Type", contentType)
		ev, err := p.parse(h, body)
		if err != nil {
			return
		}
		if !strings.HasPrefix(ev.ref, "refs/") || len(ev.ref) == len("refs/") {
			t.Fatalf("accepted push with ref %q", ev.ref)
		}
		for _, u := range ev.urls {
			if u == "" {
				continue
			}
			a, errA := NormalizeURL(u)
			b, errB := NormalizeURL(u)
			if a != b || (errA == nil) != (errB == nil) {
				t.Fatalf("NormalizeURL(%q) is not deterministic: %q/%v vs %q/%v", u, a, errA, b, errB)
			}
		}
	})
}
