package promotion

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/shipwatch/shipwatch/drivers"
)

// commitNote is what a promotion commit says.
type commitNote struct {
	App, From, To  string
	SourceRevision string
	Files          []string
	Images         []drivers.Image
	Gate           string
}

// message renders the promotion commit's message: a subject naming the stages and the
// source revision, then the images by digest and the gate, so `git log` alone tells what
// reached the stage and why it was let in.
func (n commitNote) message() string {
	var b strings.Builder
	fmt.Fprintf(&b, "promote %s to %s: %s at %s\n\n", n.App, n.To, n.From, short(n.SourceRevision))
	fmt.Fprintf(&b, "Source: %s@%s running %s\n", n.App, n.From, n.SourceRevision)
	fmt.Fprintf(&b, "Files: %s\n", strings.Join(n.Files, ", "))
	if len(n.Images) > 0 {
		b.WriteString("Images:\n")
		for _, img := range n.Images {
			fmt.Fprintf(&b, "  %s: %s\n", img.Resource, imageText(img))
		}
	}
	fmt.Fprintf(&b, "Gate: %s\n", n.Gate)
	return b.String()
}

// imageText is an image by digest when known.
func imageText(img drivers.Image) string {
	if img.Digest != "" {
		return img.Digest
	}
	return img.Ref + " (no registry digest)"
}

// imageTexts lists the images for history.
func imageTexts(images []drivers.Image) []string {
	out := make([]string, 0, len(images))
	for _, img := range images {
		out = append(out, img.Resource.String()+" "+imageText(img))
	}
	return out
}

// pinImages rewrites, in a promotion file, each image reference the source stage runs to
// its digest form, so that a tag moved later cannot change what the next stage gets. A
// reference is replaced only as a whole word: at the start of a line or after whitespace,
// a quote, "=" or ":" + space, and before whitespace, a quote or the end of the line.
func pinImages(content []byte, images []drivers.Image) []byte {
	// Longest references first, so "web:1.2" is not rewritten inside "web:1.2.3".
	sorted := slices.Clone(images)
	slices.SortFunc(sorted, func(a, b drivers.Image) int { return len(b.Ref) - len(a.Ref) })
	out := string(content)
	for _, img := range sorted {
		if img.Digest == "" || img.Ref == "" || img.Ref == img.Digest {
			continue
		}
		re := regexp.MustCompile(`(^|[\s"'=])` + regexp.QuoteMeta(img.Ref) + `($|[\s"'])`)
		out = re.ReplaceAllString(out, "${1}"+strings.ReplaceAll(img.Digest, "$", "$$")+"${2}")
	}
	return []byte(out)
}
