package promotion

import (
	"strings"
	"testing"

	"github.com/shipwatch/shipwatch/drivers"
)

func TestPinImages(t *testing.T) {
	images := []drivers.Image{
		{Resource: drivers.Ref{Kind: "service", Name: "web"}, Ref: "127.0.0.1:5000/web:1.2", Digest: "127.0.0.1:5000/web@sha256:aaaa"},
		{Resource: drivers.Ref{Kind: "service", Name: "worker"}, Ref: "127.0.0.1:5000/web:1.2.3", Digest: "127.0.0.1:5000/web@sha256:bbbb"},
		{Resource: drivers.Ref{Kind: "service", Name: "local"}, Ref: "built:latest"},
	}
	in := "WEB_IMAGE=127.0.0.1:5000/web:1.2\nWORKER_IMAGE=\"127.0.0.1:5000/web:1.2.3\"\n# 127.0.0.1:5000/web:1.2.30 is another\nLOCAL=built:latest\n"
	want := "WEB_IMAGE=127.0.0.1:5000/web@sha256:aaaa\nWORKER_IMAGE=\"127.0.0.1:5000/web@sha256:bbbb\"\n# 127.0.0.1:5000/web:1.2.30 is another\nLOCAL=built:latest\n"
	if got := string(pinImages([]byte(in), images)); got != want {
		t.Errorf("pinImages =\n%s\nwant\n%s", got, want)
	}
}

func TestCommitMessage(t *testing.T) {
	n := commitNote{App: "web", From: "dev", To: "staging", SourceRevision: "0123456789abcdef0123456789abcdef01234567",
		Files: []string{"images.env"}, Gate: "web@dev healthy at 0123456789ab for 12m0s (10m0s required)",
		Images: []drivers.Image{{Resource: drivers.Ref{Kind: "service", Name: "web"}, Ref: "r/web:1", Digest: "r/web@sha256:abc"}}}
	msg := n.message()
	for _, want := range []string{"promote web to staging: dev at 0123456789ab\n\n", "Source: web@dev running 0123456789abcdef0123456789abcdef01234567",
		"  service/web: r/web@sha256:abc", "Gate: web@dev healthy"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
}

func TestPinKustomizeImages(t *testing.T) {
	images := []drivers.Image{{Resource: drivers.Ref{Kind: "Deployment", Name: "shop"},
		Ref: "registry.example.com/shop:2.1.0", Digest: "registry.example.com/shop@sha256:cccc"}}
	in := `apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
images:
  # the shop image
  - name: shop
    newName: registry.example.com/shop
    newTag: "2.1.0"
  - name: other
    newTag: "9"
`
	got := string(pinImages([]byte(in), images))
	for _, want := range []string{"digest: sha256:cccc", "# the shop image", `newTag: "9"`} {
		if !strings.Contains(got, want) {
			t.Errorf("pinned component lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, `newTag: "2.1.0"`) {
		t.Errorf("the pinned entry kept its tag:\n%s", got)
	}
}
