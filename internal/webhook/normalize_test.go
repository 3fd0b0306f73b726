package webhook

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalizeURLEqualForms(t *testing.T) {
	groups := [][]string{
		{
			"https://github.com/acme/app.git",
			"https://github.com/acme/app",
			"https://github.com/acme/app/",
			"https://github.com/acme/app.git/",
			"HTTPS://GitHub.COM/acme/app",
			"http://github.com/acme/app",
			"https://github.com:443/acme/app",
			"https://x-access-token:s3cret@github.com/acme/app.git",
			"ssh://git@github.com/acme/app.git",
			"ssh://git@github.com:22/acme/app",
			"git+ssh://git@github.com/acme/app",
			"git://github.com/acme/app.git",
			"git@github.com:acme/app.git",
			"git@GITHUB.com:acme/app",
			"github.com:acme/app.git",
			"git@github.com:/acme/app.git",
			"https://github.com//acme//app.git",
			"https://github.com/acme/app.git?query=1#frag",
			"  https://github.com/acme/app.git\n",
		},
		{
			"ssh://git@gitea.example.com:2222/ops/infra.git",
			"https://gitea.example.com:2222/ops/infra",
		},
		{
			"git@[::1]:org/repo.git",
			"ssh://git@[::1]/org/repo",
			"https://[::1]/org/repo.git",
		},
		{
			"file:///srv/git/app.git",
			"file:///srv/git/app",
			"file://localhost/srv/git/app/",
			"/srv/git/app.git",
		},
	}
	for _, g := range groups {
		want, err := NormalizeURL(g[0])
		if err != nil {
			t.Fatalf("NormalizeURL(%q): %v", g[0], err)
		}
		for _, u := range g[1:] {
			got, err := NormalizeURL(u)
			if err != nil {
				t.Errorf("NormalizeURL(%q): %v", u, err)
				continue
			}
			if got != want {
				t.Errorf("NormalizeURL(%q) = %q, want %q (as %q)", u, got, want, g[0])
			}
		}
	}
}

func TestNormalizeURLDistinct(t *testing.T) {
	// Each pair names different repositories and must not compare equal.
	pairs := [][2]string{
		{"https://github.com/acme/app", "https://github.com/acme/App"},
		{"https://github.com/acme/app", "https://github.com/acme/app2"},
		{"https://github.com/acme/app", "https://gitlab.com/acme/app"},
		{"https://github.com/acme/app", "https://github.com:8443/acme/app"},
		{"ssh://git@host:2222/org/repo", "ssh://git@host/org/repo"},
		{"file:///srv/git/app", "https://srv/git/app"},
		{"https://github.com/acme/app", "https://github.com/acme/app/sub"},
	}
	for _, p := range pairs {
		a, errA := NormalizeURL(p[0])
		b, errB := NormalizeURL(p[1])
		if errA != nil || errB != nil {
			t.Fatalf("NormalizeURL(%q, %q): %v, %v", p[0], p[1], errA, errB)
		}
		if a == b {
			t.Errorf("%q and %q both normalise to %q", p[0], p[1], a)
		}
	}
}

func TestNormalizeURLKeys(t *testing.T) {
	cases := map[string]string{
		"https://GitHub.com/Acme/App.git":        "github.com/Acme/App",
		"git@gitlab.example.com:grp/sub/lab.git": "gitlab.example.com/grp/sub/lab",
		"ssh://git@host:2222/org/repo.git":       "host:2222/org/repo",
		"file:///tmp/x/repo.git":                 "file:///tmp/x/repo",
	}
	for in, want := range cases {
		got, err := NormalizeURL(in)
		if err != nil || got != want {
			t.Errorf("NormalizeURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestNormalizeURLErrors(t *testing.T) {
	bad := []string{
		"",
		"   ",
		"relative/path",
		"https://",
		"https://github.com",
		"https://github.com/",
		"https://github.com/.git",
		"ftp://github.com/acme/app",
		"ssh://git@host:notaport/org/repo",
		"https://user:pa ss@host/%zz",
		"git@host:",
		":org/repo",
		"file://remote.example.com/srv/git/app",
		"git@[::1:org/repo",
	}
	for _, in := range bad {
		got, err := NormalizeURL(in)
		if err == nil {
			t.Errorf("NormalizeURL(%q) = %q, want an error", in, got)
			continue
		}
		if !errors.Is(err, ErrInvalidURL) {
			t.Errorf("NormalizeURL(%q) error %v is not ErrInvalidURL", in, err)
		}
	}
}

func TestNormalizeURLErrorHidesCredentials(t *testing.T) {
	_, err := NormalizeURL("https://user:hunter2@host:badport/org/repo")
	if err == nil {
		t.Fatal("want an error")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

func FuzzNormalizeURL(f *testing.F) {
	for _, s := range []string{
		"https://github.com/acme/app.git", "git@github.com:acme/app.git",
		"ssh://git@[::1]:2222/org/repo", "file:///srv/git/app", "/srv/app", "host:/a//b/",
		"https://u:p@h/a%2Fb", "git@[fe80::1%25eth0]:x/y",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		key, err := NormalizeURL(s)
		if err != nil {
			return
		}
		if key == "" || strings.HasSuffix(key, "/") {
			t.Fatalf("NormalizeURL(%q) = %q", s, key)
		}
		if host, _, _ := strings.Cut(key, "/"); !strings.HasPrefix(key, "file://") && strings.Contains(host, "@") {
			t.Fatalf("NormalizeURL(%q) = %q keeps userinfo", s, key)
		}
		// A trailing slash never changes the repository named.
		if !strings.ContainsAny(s, "?#") && s == strings.TrimSpace(s) {
			if k2, err := NormalizeURL(s + "/"); err == nil && k2 != key {
				t.Fatalf("NormalizeURL(%q) = %q but NormalizeURL(%q) = %q", s, key, s+"/", k2)
			}
		}
	})
}
