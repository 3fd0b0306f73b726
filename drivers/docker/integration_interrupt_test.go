package docker

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	ctr "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers"
)

// twoNetworks is one service on two networks, so its creation is a create plus a connect.
const twoNetworks = `
services:
  web:
    image: IMAGE
    environment:
      MESSAGE: MSG
    restart: unless-stopped
    networks: [default, back]
networks:
  back: {}
`

var errKilled = errors.New("shipwatch was killed")

// cutTransport makes one Engine request the last a driver makes, as a SIGKILL of the daemon
// or a lost connection would: the first request that matches reaches the Engine (or not,
// with before), then it and every later request fail without reaching it. With cancel set,
// the matching request instead cancels the Apply's context, as a Ctrl-C would, and still
// reaches the Engine; with lose also set, its response is lost as the client gave up.
type cutTransport struct {
	base   http.RoundTripper
	match  func(*http.Request) bool
	before bool
	cancel context.CancelFunc
	lose   bool
	dead   atomic.Bool
	hit    atomic.Bool
}

func (c *cutTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if c.dead.Load() {
		return nil, errKilled
	}
	if !c.match(req) || !c.hit.CompareAndSwap(false, true) {
		return c.base.RoundTrip(req)
	}
	if c.cancel != nil {
		c.cancel()
		resp, err := c.base.RoundTrip(req.WithContext(context.WithoutCancel(req.Context())))
		if !c.lose {
			return resp, err
		}
		discardBody(resp, err)
		return nil, context.Canceled
	}
	c.dead.Store(true)
	if c.before {
		return nil, errKilled
	}
	discardBody(c.base.RoundTrip(req))
	return nil, errKilled
}

func discardBody(resp *http.Response, err error) {
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// request matches an Engine API call by method and a pattern on its path without the
// version prefix, "{old}" standing for the old container's ID.
func request(method, pattern, old string) func(*http.Request) bool {
	re := regexp.MustCompile("^(/v[0-9.]+)?" + strings.ReplaceAll(pattern, "{old}", regexp.QuoteMeta(old)) + "$")
	return func(r *http.Request) bool { return r.Method == method && re.MatchString(r.URL.Path) }
}

// cutDriver is a driver on the fixture's Engine whose transport is t.
func (f *fixture) cutDriver(t *cutTransport) *Driver {
	f.t.Helper()
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = client.DefaultDockerHost
	}
	u, err := client.ParseHostURL(host)
	if err != nil {
		f.t.Fatal(err)
	}
	t.base = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, u.Scheme, u.Host)
	}}
	c, err := client.New(client.WithHost(host), client.WithHTTPClient(&http.Client{Transport: t}))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close() })
	d, err := New(Options{Client: c, FilesDir: f.t.TempDir()})
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

// deployWeb deploys twoNetworks with message and returns web's container ID.
func (f *fixture) deployWeb(message string) string {
	f.t.Helper()
	f.apply(f.plan(f.bundle(strings.ReplaceAll(twoNetworks, "MSG", message))), drivers.ApplyOptions{Prune: true})
	c, ok := f.containers()[f.name("web")]
	if !ok || c.State != ctr.StateRunning {
		f.t.Fatalf("web not running after deploy: %+v", c)
	}
	return c.ID
}

// checkConverged: one container, named as compose names it, running message, and a plan
// that is a no-op.
func (f *fixture) checkConverged(message string) {
	f.t.Helper()
	cs := f.containers()
	c, ok := cs[f.name("web")]
	if len(cs) != 1 || !ok || c.State != ctr.StateRunning {
		f.t.Fatalf("containers %v, want only %s running", slices.Collect(mapKeys(cs)), f.name("web"))
	}
	if env := f.inspect(f.name("web")).Config.Env; !slices.Contains(env, "MESSAGE="+message) {
		f.t.Errorf("web runs %v, want MESSAGE=%s", env, message)
	}
	if p := f.freshDriver().mustPlan(f, strings.ReplaceAll(twoNetworks, "MSG", message)); !p.InSync() {
		f.t.Errorf("plan after converging is not a no-op:\n%s\n%s", p, StepsText(p))
	}
}

func (d *Driver) mustPlan(f *fixture, yaml string) *drivers.Plan {
	f.t.Helper()
	p, err := d.Plan(f.t.Context(), f.app, f.bundle(yaml))
	if err != nil {
		f.t.Fatalf("plan: %v", err)
	}
	return p
}

// TestRecreateKilledAnywhereConverges kills a recreate at each of its Engine calls, as a
// SIGKILL of the daemon would, and checks that the next plan of a fresh driver (a restarted
// daemon) recognises what was left by label, finishes or removes it, and converges with one
// container and no temporary one. The old code failed every case but the last: the retry
// collided with the leftover's name, or started the replacement under its temporary name.
func TestRecreateKilledAnywhereConverges(t *testing.T) {
	cases := []struct {
		name           string
		method, path   string
		before         bool
		wantStep       StepKind
		wantLeftover   bool
		wantOldRunning bool
	}{
		{"after the create", "POST", "/containers/create", false, StepRecreateContainer, true, true},
		{"after the connect", "POST", "/networks/[^/]+/connect", false, StepRecreateContainer, true, true},
		{"during the stop", "POST", "/containers/{old}/stop", true, StepRecreateContainer, true, true},
		{"after the stop", "POST", "/containers/{old}/stop", false, StepFinishRecreate, true, false},
		{"after the removal", "DELETE", "/containers/{old}", false, StepFinishRecreate, true, false},
		{"after the rename", "POST", "/containers/[^/]+/rename", false, StepStartContainer, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			old := f.deployWeb("one")
			v2 := strings.ReplaceAll(twoNetworks, "MSG", "two")
			killed := f.cutDriver(&cutTransport{match: request(tc.method, tc.path, old), before: tc.before})
			p := killed.mustPlan(f, v2)
			if _, err := killed.Apply(t.Context(), p, drivers.ApplyOptions{Prune: true}); !errors.Is(err, errKilled) {
				t.Fatalf("apply was not killed: %v", err)
			}
			left := 0
			for name, c := range f.containers() {
				if name != f.name("web") {
					left++
				}
				if c.ID == old && (c.State == ctr.StateRunning) != tc.wantOldRunning {
					t.Errorf("old container %s, want running=%t", c.State, tc.wantOldRunning)
				}
			}
			if (left == 1) != tc.wantLeftover || left > 1 {
				t.Fatalf("%d containers left under another name than web's, want leftover=%t", left, tc.wantLeftover)
			}
			restarted := f.freshDriver()
			p = restarted.mustPlan(f, v2)
			if !strings.Contains(StepsText(p), string(tc.wantStep)) {
				t.Errorf("plan after the kill has no %s step:\n%s", tc.wantStep, StepsText(p))
			}
			if _, err := restarted.Apply(t.Context(), p, drivers.ApplyOptions{Prune: true}); err != nil {
				t.Fatalf("apply after the kill: %v\n%s", err, StepsText(p))
			}
			f.checkConverged("two")
		})
	}
}

// TestRecreateCancelledKeepsTheServiceUp cancels the Apply's context, as a Ctrl-C of a
// one-shot sync or an HTTP client giving up would, at points of a recreate. Before the
// old container is stopped, the replacement is removed and the old one runs on; once the
// swap has begun, it runs to its end. Either way nothing is left behind, and the old code
// left the replacement (its cleanup ran on the cancelled context) and, in the swap, no
// container running.
func TestRecreateCancelledKeepsTheServiceUp(t *testing.T) {
	for _, tc := range []struct {
		name, method, path string
		lose               bool
		wantMessage        string
	}{
		{"at the create, its response lost", "POST", "/containers/create", true, "one"},
		{"after the create", "POST", "/containers/create", false, "one"},
		{"at the stop", "POST", "/containers/{old}/stop", false, "two"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			old := f.deployWeb("one")
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			drv := f.cutDriver(&cutTransport{match: request(tc.method, tc.path, old), cancel: cancel, lose: tc.lose})
			p := drv.mustPlan(f, strings.ReplaceAll(twoNetworks, "MSG", "two"))
			_, err := drv.Apply(ctx, p, drivers.ApplyOptions{Prune: true})
			if tc.wantMessage == "one" && !errors.Is(err, context.Canceled) {
				t.Errorf("apply cancelled before the swap = %v, want context.Canceled", err)
			}
			if tc.wantMessage == "two" && err != nil {
				t.Errorf("apply cancelled during the swap = %v, want the swap finished", err)
			}
			cs := f.containers()
			c, ok := cs[f.name("web")]
			if len(cs) != 1 || !ok || c.State != ctr.StateRunning {
				t.Fatalf("after the cancel: containers %v, want only %s running", slices.Collect(mapKeys(cs)), f.name("web"))
			}
			if env := f.inspect(f.name("web")).Config.Env; !slices.Contains(env, "MESSAGE="+tc.wantMessage) {
				t.Errorf("web runs %v, want MESSAGE=%s", env, tc.wantMessage)
			}
			if (c.ID == old) != (tc.wantMessage == "one") {
				t.Errorf("web is container %s (old %s)", c.ID, old)
			}
		})
	}
}

// TestReplacementLabelsCannotBeForged: compose labels that would mark the container as a
// replacement under its temporary name are not written, so the planner never takes a
// deployed container for the leftover of a recreate, to be removed on every pass.
func TestReplacementLabelsCannotBeForged(t *testing.T) {
	f := newFixture(t)
	labels := "    labels:\n      " + LabelTemporaryName + ": " + f.name("web") + "\n      " + LabelReplaces + ": forged\n"
	b := f.bundle(strings.Replace(strings.ReplaceAll(twoNetworks, "MSG", "one"), "    restart:", labels+"    restart:", 1))
	f.apply(f.plan(b), drivers.ApplyOptions{Prune: true})
	c := f.containers()[f.name("web")]
	if _, forged := c.Labels[LabelTemporaryName]; forged || c.Labels[LabelReplaces] != "" {
		t.Errorf("labels from the file were written: %v", c.Labels)
	}
	if p := f.plan(b); !p.InSync() {
		t.Errorf("plan after deploy is not a no-op:\n%s\n%s", p, StepsText(p))
	}
}
