package kubernetes

import (
	"fmt"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// Secret masks, the same words ssa and Flux use, so users see one vocabulary.
const (
	maskSame   = "***"
	maskBefore = "*** (before)"
	maskAfter  = "*** (after)"
)

// normalize returns a copy of u without the fields the server owns, so a diff shows only
// what a user could have written. nil stays nil.
func normalize(u *unstructured.Unstructured) *unstructured.Unstructured {
	if u == nil {
		return nil
	}
	c := u.DeepCopy()
	for _, f := range []string{"managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", "selfLink"} {
		unstructured.RemoveNestedField(c.Object, "metadata", f)
	}
	unstructured.RemoveNestedField(c.Object, "status")
	if md, ok := c.Object["metadata"].(map[string]any); ok {
		if a, ok := md["annotations"].(map[string]any); ok {
			delete(a, "kubectl.kubernetes.io/last-applied-configuration")
			if len(a) == 0 {
				delete(md, "annotations")
			}
		}
	}
	return c
}

func isSecret(u *unstructured.Unstructured) bool {
	return u != nil && u.GetKind() == "Secret" && u.GroupVersionKind().Group == ""
}

// maskSecrets replaces every value under data and stringData of live and desired (either may
// be nil) with a mask that still says whether the value changed, and nothing else. Values are
// compared before masking: a key present on both sides with different values becomes
// "*** (before)" / "*** (after)"; anything else "***".
func maskSecrets(live, desired *unstructured.Unstructured) {
	if !isSecret(live) && !isSecret(desired) {
		return
	}
	for _, field := range []string{"data", "stringData"} {
		before := fieldMap(live, field)
		after := fieldMap(desired, field)
		changed := map[string]bool{}
		for k, v := range before {
			if w, ok := after[k]; ok && fmt.Sprint(v) != fmt.Sprint(w) {
				changed[k] = true
				before[k] = maskBefore
				continue
			}
			before[k] = maskSame
		}
		for k := range after {
			after[k] = maskSame
			if changed[k] {
				after[k] = maskAfter
			}
		}
	}
}

// fieldMap returns u's top-level map field for in-place edits; nil when absent.
func fieldMap(u *unstructured.Unstructured, field string) map[string]any {
	if u == nil {
		return nil
	}
	m, _ := u.Object[field].(map[string]any)
	return m
}

// renderDiff is a unified diff of the normalised, masked YAML of live (nil: absent) and
// desired (nil: to be deleted). The inputs are not modified. Identical inputs give "".
func renderDiff(name string, live, desired *unstructured.Unstructured) (string, error) {
	l, d := normalize(live), normalize(desired)
	maskSecrets(l, d)
	a, err := toYAML(l)
	if err != nil {
		return "", fmt.Errorf("render live %s: %w", name, err)
	}
	b, err := toYAML(d)
	if err != nil {
		return "", fmt.Errorf("render desired %s: %w", name, err)
	}
	if a == b {
		return "", nil
	}
	text, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: splitLines(a), B: splitLines(b),
		FromFile: "live/" + name, ToFile: "desired/" + name, Context: 3,
	})
	if err != nil {
		return "", fmt.Errorf("diff %s: %w", name, err)
	}
	return text, nil
}

// splitLines splits text into newline-terminated lines; difflib's own SplitLines adds an
// empty last line (and gives an absent object one line).
func splitLines(text string) []string {
	lines := strings.SplitAfter(text, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// toYAML renders u with sorted keys (sigs.k8s.io/yaml goes through JSON, whose maps
// marshal sorted), so the same object always prints the same.
func toYAML(u *unstructured.Unstructured) (string, error) {
	if u == nil {
		return "", nil
	}
	out, err := yaml.Marshal(u.Object)
	if err != nil {
		return "", err
	}
	return string(out), nil
}
