package manifests

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"go.yaml.in/yaml/v3"
)

// composeFile is one compose file read from the checkout, with its YAML tree kept to
// point errors at a file and line.
type composeFile struct {
	rel     string
	abs     string
	content []byte
	docs    []*yaml.Node
}

// parseComposeFile parses the file up front so a syntax error names the file relative to
// the checkout and the line, rather than compose-go's absolute path.
func parseComposeFile(rel, abs string, content []byte) (composeFile, error) {
	f := composeFile{rel: rel, abs: abs, content: content}
	dec := yaml.NewDecoder(bytes.NewReader(content))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return f, fmt.Errorf("%s: %w", rel, err)
		}
		f.docs = append(f.docs, &doc)
	}
	return f, nil
}

// locate finds the last compose file (the one whose value wins the merge) that sets
// services.<service>.<first key segment>, or the top-level key, and its line.
func (l *composeLoad) locate(service, key string) (string, int) {
	path := []string{}
	if service != "" {
		path = append(path, "services", service)
	}
	path = append(path, firstSegment(key))
	for i := len(l.files) - 1; i >= 0; i-- {
		f := l.files[i]
		for _, doc := range f.docs {
			if n := lookup(doc, path); n != nil {
				return f.rel, n.Line
			}
		}
	}
	if len(l.files) == 1 {
		return l.files[0].rel, 0
	}
	return "", 0
}

// firstSegment is the key's first map key: "deploy" of "deploy.resources", "secrets" of
// "secrets[].uid".
func firstSegment(key string) string {
	for i, r := range key {
		if r == '.' || r == '[' {
			return key[:i]
		}
	}
	return key
}

// lookup returns the key node at path in a YAML document, following plain mappings only.
func lookup(n *yaml.Node, path []string) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	var key *yaml.Node
	for _, want := range path {
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == want {
				key, next = n.Content[i], n.Content[i+1]
				break
			}
		}
		if next == nil {
			return nil
		}
		n = next
	}
	return key
}
