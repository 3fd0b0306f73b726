package manifests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// kubeDoc is one object read from a file, with where it came from for messages.
type kubeDoc struct {
	obj  *unstructured.Unstructured
	file string
	doc  int
	line int
}

// yamlLineErr matches the line yaml.v3 puts in its syntax errors.
var yamlLineErr = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseKubeFile splits a file into objects. YAML is parsed into nodes first so that every
// error can name the document and line; JSON files go through the same parser (JSON is
// YAML). Empty documents are skipped but still counted, so document numbers match what an
// editor shows between `---` separators.
func parseKubeFile(file string, content []byte) ([]kubeDoc, error) {
	dec := yaml.NewDecoder(bytes.NewReader(content))
	var out []kubeDoc
	for n := 1; ; n++ {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, yamlError(file, n, err)
		}
		objs, err := docObjects(file, n, &doc)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
}

// yamlQuoted matches what the parser quotes in a message: a key, an anchor, a tag.
var yamlQuoted = regexp.MustCompile("'[^']*'|\"[^\"]*\"|`[^`]*`")

// yamlError turns a parser error into a KubeError with the line pulled out. Anything the
// parser quoted is masked: an alias like `*hunter2` in a Secret puts the value there.
func yamlError(file string, doc int, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLineErr.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	msg = yamlQuoted.ReplaceAllString(msg, "(masked)")
	return &KubeError{File: file, Doc: doc, Line: line, Msg: "invalid YAML: " + msg}
}

// docObjects validates one document and returns its object, or a List's items.
func docObjects(file string, n int, doc *yaml.Node) ([]kubeDoc, error) {
	node := doc
	if node.Kind == yaml.DocumentNode {
		if len(node.Content) == 0 {
			return nil, nil
		}
		node = node.Content[0]
	}
	if node.Kind == yaml.ScalarNode && node.Tag == "!!null" {
		return nil, nil
	}
	obj, err := nodeObject(file, n, node, "")
	if err != nil {
		return nil, err
	}
	if !isList(obj) {
		return []kubeDoc{{obj: obj, file: file, doc: n, line: node.Line}}, nil
	}
	items := mapValue(node, "items")
	if items == nil || items.Kind != yaml.SequenceNode {
		return nil, &KubeError{File: file, Doc: n, Line: node.Line, Msg: obj.GetKind() + ": items must be a list"}
	}
	out := make([]kubeDoc, 0, len(items.Content))
	for i, it := range items.Content {
		o, err := nodeObject(file, n, it, fmt.Sprintf("items[%d]: ", i))
		if err != nil {
			return nil, err
		}
		out = append(out, kubeDoc{obj: o, file: file, doc: n, line: it.Line})
	}
	return out, nil
}

// isList reports a kubectl-style list (v1/List, or any *List kind with items), whose items
// are the objects to apply.
func isList(o *unstructured.Unstructured) bool {
	if !strings.HasSuffix(o.GetKind(), "List") {
		return false
	}
	_, ok := o.Object["items"]
	return ok
}

// nodeObject decodes a mapping node into an object and checks the fields server-side apply
// needs. prefix locates list items in messages.
func nodeObject(file string, n int, node *yaml.Node, prefix string) (*unstructured.Unstructured, error) {
	fail := func(line int, msg string) error {
		return &KubeError{File: file, Doc: n, Line: line, Msg: prefix + msg}
	}
	if node.Kind != yaml.MappingNode {
		return nil, fail(node.Line, "not an object (want a mapping with apiVersion, kind and metadata)")
	}
	var raw any
	if err := node.Decode(&raw); err != nil {
		return nil, decodeError(file, n, node.Line, prefix, err)
	}
	v, err := jsonValue(raw)
	if err != nil {
		return nil, fail(node.Line, err.Error())
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fail(node.Line, "not an object")
	}
	if msg := requireString(m, "apiVersion", "apiVersion"); msg != "" {
		return nil, fail(keyLine(node, "apiVersion"), msg)
	}
	if msg := requireString(m, "kind", "kind"); msg != "" {
		return nil, fail(keyLine(node, "kind"), msg)
	}
	obj := &unstructured.Unstructured{Object: m}
	if isList(obj) {
		return obj, nil
	}
	meta, ok := m["metadata"].(map[string]any)
	if !ok {
		if _, present := m["metadata"]; present {
			return nil, fail(keyLine(node, "metadata"), "metadata must be an object")
		}
		return nil, fail(node.Line, "missing metadata.name")
	}
	if msg := requireString(meta, "name", "metadata.name"); msg != "" {
		return nil, fail(keyLine(node, "metadata"), msg)
	}
	if ns, present := meta["namespace"]; present {
		if _, ok := ns.(string); !ok {
			return nil, fail(keyLine(node, "metadata"), "metadata.namespace must be a string")
		}
	}
	return obj, nil
}

// decodeError reports what yaml.v3 found while decoding a parsed document (a duplicate
// key, a bad merge), at its line, with anything it quoted masked.
func decodeError(file string, n, line int, prefix string, err error) error {
	msg := "cannot decode document"
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
		if m := typeErrLine.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		msg = yamlQuoted.ReplaceAllString(msg, "(masked)")
	}
	return &KubeError{File: file, Doc: n, Line: line, Msg: prefix + "invalid YAML: " + msg}
}

// typeErrLine matches the line yaml.v3 puts in each decoding error.
var typeErrLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// requireString checks that m[key] is a non-empty string and returns what is wrong, or "".
// field is the key's full path, for the message.
func requireString(m map[string]any, key, field string) string {
	v, ok := m[key]
	if !ok || v == nil {
		return "missing " + field
	}
	s, ok := v.(string)
	if !ok {
		return field + " must be a string"
	}
	if s == "" {
		return "missing " + field
	}
	return ""
}

// mapValue is the value node of key in a mapping node, following an alias.
func mapValue(node *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(node.Content); i += 2 {
		if node.Content[i].Value == key {
			v := node.Content[i+1]
			if v.Kind == yaml.AliasNode && v.Alias != nil {
				v = v.Alias
			}
			return v
		}
	}
	return nil
}

// keyLine is the line of key in a mapping node, else the node's own line.
func keyLine(node *yaml.Node, key string) int {
	for i := 0; i+1 < len(node.Content); i += 2 {
		if node.Content[i].Value == key {
			return node.Content[i].Line
		}
	}
	return node.Line
}

// jsonValue converts what yaml.v3 decodes into the types unstructured objects hold:
// string-keyed maps, int64 and float64 numbers, timestamps as RFC 3339 strings.
func jsonValue(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			c, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			c, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[fmt.Sprint(k)] = c
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case int:
		return int64(x), nil
	case int64:
		return x, nil
	case uint64:
		if x > math.MaxInt64 {
			return float64(x), nil
		}
		return int64(x), nil
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return nil, errors.New("a number is not finite (.inf or .nan cannot be sent to the API)")
		}
		return x, nil
	case time.Time:
		return x.Format(time.RFC3339Nano), nil
	case string, bool, nil:
		return x, nil
	case []byte:
		return string(x), nil
	default:
		return nil, fmt.Errorf("unsupported YAML value of type %T", v)
	}
}
