package config

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary documents to the config loader: it must never panic, and every
// refusal must be an ErrInvalid that names the file, as users rely on.
func FuzzParse(f *testing.F) {
	f.Add([]byte(valid))
	f.Add([]byte(strings.Replace(valid, "drift: alert", "drift: [x]", 1)))
	f.Add([]byte("stateDir: /x\nrepos: [{name: a, url: u, interval: 1ns}]\napps: [{name: b, repo: a, onFailure: rollback}]\n"))
	f.Add([]byte("apps:\n  - name: web\n    repo: deploy\n    healthTimeout: -1s\n"))
	f.Add([]byte("notify: [{name: n, type: slack, urlFile: /f, events: [rollback]}]\n"))
	f.Add([]byte("history: {limit: 9223372036854775807}\nworkers: -3\n"))
	f.Add([]byte("&a [*a, *a, *a]\n"))
	f.Add([]byte("listen: '[::1]:0'\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		cfg, err := Parse("fuzz.yaml", doc)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			if !strings.Contains(err.Error(), "fuzz.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, a := range cfg.Apps {
			if _, ok := cfg.Repo(a.Repo); !ok {
				t.Fatalf("accepted app %q on unknown repo %q", a.Name, a.Repo)
			}
			if a.HealthTimeout.Duration <= 0 {
				t.Fatalf("accepted app %q with health timeout %v", a.Name, a.HealthTimeout)
			}
		}
	})
}
