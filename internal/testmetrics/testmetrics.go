// Package testmetrics reads pages in the Prometheus text exposition format, so tests assert
// on what a user's Prometheus would scrape from /metrics rather than on internal counters.
package testmetrics

import (
	"bytes"
	"strconv"
	"strings"
)

// Sum adds up the samples of the metric name in page whose labels include every pair of
// labels (nil matches every sample of name). It is 0 when no sample matches, so a test can
// poll until a series appears. Label values are compared unescaped; a malformed line is
// skipped, as are other metrics whose names merely start with name (name_bucket).
func Sum(page []byte, name string, labels map[string]string) float64 {
	sum := 0.0
	for line := range bytes.Lines(page) {
		got, v, ok := parseSample(strings.TrimRight(string(line), "\r\n"), name)
		if ok && includes(got, labels) {
			sum += v
		}
	}
	return sum
}

func includes(got, want map[string]string) bool {
	for k, v := range want {
		if gv, ok := got[k]; !ok || gv != v {
			return false
		}
	}
	return true
}

// parseSample reads `name{k="v",...} value [timestamp]`; ok is false for comments, other
// metrics and malformed lines.
func parseSample(line, name string) (labels map[string]string, value float64, ok bool) {
	rest, ok := strings.CutPrefix(line, name)
	if !ok {
		return nil, 0, false
	}
	if after, found := strings.CutPrefix(rest, "{"); found {
		if labels, rest, ok = parseLabels(after); !ok {
			return nil, 0, false
		}
	}
	fields := strings.Fields(rest)
	// No space after the name means a longer name (name_bucket) that only starts with it.
	if len(fields) == 0 || !strings.HasPrefix(rest, " ") && !strings.HasPrefix(rest, "\t") {
		return nil, 0, false
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return nil, 0, false
	}
	return labels, v, true
}

// parseLabels reads `k="v",k2="v2"}` (the part after the opening brace) and returns the
// labels and what follows the closing brace. Values may hold the format's escapes \\, \"
// and \n.
func parseLabels(s string) (map[string]string, string, bool) {
	labels := map[string]string{}
	for {
		s = strings.TrimLeft(s, " ")
		if rest, ok := strings.CutPrefix(s, "}"); ok {
			return labels, rest, true
		}
		key, rest, ok := strings.Cut(s, "=")
		if !ok {
			return nil, "", false
		}
		value, rest, ok := parseQuoted(strings.TrimLeft(rest, " "))
		if !ok {
			return nil, "", false
		}
		labels[strings.TrimSpace(key)] = value
		s = strings.TrimPrefix(strings.TrimLeft(rest, " "), ",")
	}
}

// parseQuoted reads a double-quoted label value and returns it unescaped with the rest.
func parseQuoted(s string) (string, string, bool) {
	if !strings.HasPrefix(s, `"`) {
		return "", "", false
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return b.String(), s[i+1:], true
		case c == '\\' && i+1 < len(s):
			i++
			if s[i] == 'n' {
				b.WriteByte('\n')
			} else {
				b.WriteByte(s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false
}
