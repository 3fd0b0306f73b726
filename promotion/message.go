package promotion

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

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
	if pinned, ok := pinKustomizeImages(content, images); ok {
		return pinned
	}
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

// pinKustomizeImages pins the entries of a kustomization's (or component's) `images:` list:
// an entry whose newName (or name) and newTag name an image the source stage runs by digest
// gets `digest:` instead of `newTag:`, which kustomize then writes as name@digest. ok is false
// for a file that is not a YAML document with such a list; it is then handled as text.
func pinKustomizeImages(content []byte, images []drivers.Image) ([]byte, bool) {
	var doc yaml.Node
	if yaml.Unmarshal(content, &doc) != nil || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, false
	}
	list := mappingValue(doc.Content[0], "images")
	if list == nil || list.Kind != yaml.SequenceNode {
		return nil, false
	}
	for _, entry := range list.Content {
		if entry.Kind != yaml.MappingNode {
			continue
		}
		name := scalar(mappingValue(entry, "newName"))
		if name == "" {
			name = scalar(mappingValue(entry, "name"))
		}
		tag := mappingValue(entry, "newTag")
		if tag == nil {
			continue
		}
		i := slices.IndexFunc(images, func(img drivers.Image) bool { return img.Digest != "" && img.Ref == name+":"+tag.Value })
		if i < 0 {
			continue
		}
		_, digest, _ := strings.Cut(images[i].Digest, "@")
		tagKey := slices.IndexFunc(entry.Content, func(n *yaml.Node) bool { return n.Value == "newTag" })
		entry.Content[tagKey].Value, tag.Value, tag.Style = "digest", digest, 0
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return nil, false
	}
	return out, true
}

// mappingValue returns the value of key in a mapping node, or nil.
func mappingValue(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func scalar(n *yaml.Node) string {
	if n == nil {
		return ""
	}
	return n.Value
}
