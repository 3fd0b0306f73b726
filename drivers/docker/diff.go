package docker

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
)

const (
	masked        = "***"
	maskedChanged = "*** (changed)"
	// unreadable stands in for a document that is not JSON: it cannot be masked, so it
	// is never shown, since it may hold environment values.
	unreadable = "<unreadable configuration>"
)

// MaskedDiff renders a unified diff between two canonical JSON documents with environment
// values masked: every value under "environment" becomes "***", and on the desired side
// "*** (changed)" when the live value differs, so a user sees which variable changed
// without seeing a value. Labels are not masked: they are not secret. An empty document
// stands for "nothing"; equal documents give "".
func MaskedDiff(name string, live, desired []byte) string {
	liveDoc, liveOK := decodeObject(live)
	desiredDoc, desiredOK := decodeObject(desired)
	liveEnv, desiredEnv := envOf(liveDoc), envOf(desiredDoc)
	maskEnv(liveEnv, nil, masked)
	maskEnv(desiredEnv, envOf(mustDecodeObject(live, liveOK)), maskedChanged)

	diff := difflib.UnifiedDiff{
		A:        renderLines(liveDoc, liveOK, len(live) > 0),
		B:        renderLines(desiredDoc, desiredOK, len(desired) > 0),
		FromFile: "live/" + name,
		ToFile:   "desired/" + name,
		Context:  3,
	}
	out, err := difflib.GetUnifiedDiffString(diff)
	if err != nil {
		// difflib only fails on a failing writer; a strings.Builder never does.
		return ""
	}
	return out
}

// changedFields names the top-level keys whose values differ between two canonical
// documents, sorted. It returns nil when either side is not a JSON object.
func changedFields(live, desired []byte) []string {
	a, okA := decodeObject(live)
	b, okB := decodeObject(desired)
	if !okA || !okB {
		return nil
	}
	var out []string
	for k := range maps.Keys(a) {
		if !reflect.DeepEqual(a[k], b[k]) {
			out = append(out, k)
		}
	}
	for k := range maps.Keys(b) {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func decodeObject(raw []byte) (map[string]any, bool) {
	if len(strings.TrimSpace(string(raw))) == 0 {
		return map[string]any{}, true
	}
	v, err := decodeJSON(raw)
	if err != nil {
		return nil, false
	}
	m, ok := v.(map[string]any)
	return m, ok
}

// mustDecodeObject decodes a second, unmasked copy: maskEnv rewrites the first in place.
func mustDecodeObject(raw []byte, ok bool) map[string]any {
	if !ok {
		return nil
	}
	m, _ := decodeObject(raw)
	return m
}

func envOf(doc map[string]any) map[string]any {
	env, _ := doc["environment"].(map[string]any)
	return env
}

// maskEnv replaces every non-null value of env in place. When other is given, values that
// differ from other's for the same key get changedMark instead; a key other lacks shows as
// an added line anyway.
func maskEnv(env, other map[string]any, changedMark string) {
	for k, v := range env {
		if v == nil {
			continue // an unset variable reveals nothing
		}
		mark := masked
		if other != nil {
			if ov, ok := other[k]; ok && !reflect.DeepEqual(ov, v) {
				mark = changedMark
			}
		}
		env[k] = mark
	}
}

func renderLines(doc map[string]any, ok, present bool) []string {
	switch {
	case !present:
		return nil
	case !ok:
		return []string{unreadable + "\n"}
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return []string{unreadable + "\n"}
	}
	return difflib.SplitLines(string(out))
}

// sealedPrefix marks an environment value replaced by its keyed digest.
const sealedPrefix = "hmac-sha256:"

// sealEnvironment replaces each environment value of a canonical service document with a
// keyed digest of it. The document becomes the dev.shipwatch.desired label, which anyone
// who can `docker inspect` reads: values must not be in it. Equal values still give equal
// digests, so a diff of two documents names the variables that changed, and the key keeps a
// short password from being found by hashing guesses.
func sealEnvironment(canonical, key []byte) ([]byte, error) {
	doc, ok := decodeObject(canonical)
	if !ok {
		return nil, fmt.Errorf("seal environment: not a JSON object")
	}
	env := envOf(doc)
	if len(env) == 0 {
		return canonical, nil
	}
	for k, v := range env {
		s, isString := v.(string)
		if !isString {
			continue // null: an unset variable reveals nothing
		}
		mac := hmac.New(sha256.New, key)
		fmt.Fprintf(mac, "env\x00%s\x00%s", k, s)
		env[k] = sealedPrefix + hex.EncodeToString(mac.Sum(nil))[:32]
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("seal environment: %w", err)
	}
	return out, nil
}
