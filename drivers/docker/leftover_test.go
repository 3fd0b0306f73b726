package docker

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// apiImage sets api's image: a change that recreates api.
func apiImage(tag string) func(c *manifestsCompose) {
	return func(c *manifestsCompose) {
		s := c.Project.Services["api"]
		s.Image = "shop/api:" + tag
		c.Project.Services["api"] = s
	}
}

// webImage sets web's image: a change that recreates web.
func webImage(tag string) func(c *manifestsCompose) {
	return func(c *manifestsCompose) {
		s := c.Project.Services["web"]
		s.Image = "nginx:" + tag
		c.Project.Services["web"] = s
	}
}

// interrupted is the base live state plus what a recreate of replica 1 of service to the
// compose shaped by spec left when it was cut off after creating the replacement: that
// container under the temporary name suffix, labelled, never started, attached to its
// networks. live then changes the state further (the old container stopped or gone).
func interrupted(spec func(c *manifestsCompose), service, suffix string, live func(o *Observed)) func(t *testing.T) *Observed {
	return func(t *testing.T) *Observed {
		o := baseObserved(t)
		c := shopCompose()
		spec(c)
		fresh := observedFrom(mustDesire(t, c))
		name := "shop-" + service + "-1"
		old := liveContainer(o, name)
		l := *liveContainer(fresh, name)
		tmp := name + "_" + shortID(old.ID) + "_" + suffix
		l.ID, l.Name, l.State, l.Created = "id-"+tmp, tmp, "created", 2000
		l.Labels = maps.Clone(l.Labels)
		l.Labels[LabelReplaces], l.Labels[LabelTemporaryName] = old.ID, tmp
		o.Containers = append(o.Containers, l)
		for i := range o.Networks {
			if slices.Contains(o.Networks[i].Containers, name) {
				o.Networks[i].Containers = append(o.Networks[i].Containers, tmp)
			}
		}
		if live != nil {
			live(o)
		}
		slices.SortFunc(o.Containers, func(a, b ObservedContainer) int { return strings.Compare(a.Name, b.Name) })
		return o
	}
}

// stopped marks a container exited by a stop (the test program exits 0 on SIGTERM).
func stopped(name string) func(o *Observed) {
	return func(o *Observed) {
		c := liveContainer(o, name)
		c.State, c.ExitCode = "exited", 0
	}
}

// removed deletes a container from the live state, and its network attachments.
func removed(name string) func(o *Observed) {
	return func(o *Observed) {
		o.Containers = slices.DeleteFunc(o.Containers, func(c ObservedContainer) bool { return c.Name == name })
		for i := range o.Networks {
			o.Networks[i].Containers = slices.DeleteFunc(o.Networks[i].Containers, func(n string) bool { return n == name })
		}
	}
}

// detached removes one container's attachment to one network.
func detached(name, network string) func(o *Observed) {
	return func(o *Observed) {
		for i := range o.Networks {
			if o.Networks[i].Name == network {
				o.Networks[i].Containers = slices.DeleteFunc(o.Networks[i].Containers, func(n string) bool { return n == name })
			}
		}
	}
}

func all(fs ...func(o *Observed)) func(o *Observed) {
	return func(o *Observed) {
		for _, f := range fs {
			f(o)
		}
	}
}

// leftoverPlanCases are the states an interrupted Apply leaves (a daemon killed, the
// Engine's connection cut), each a golden plan. The tmp names are what recreate gives:
// "<name>_<12 characters of the old ID>_<random>".
func leftoverPlanCases() []planCase {
	const tmpAPI = "shop-api-1_id-shop-api-_0badc0de"
	return []planCase{
		// Cut off before the old container was stopped: it still serves, so the
		// replacement goes and the recreate starts over.
		{name: "interrupted-recreate-old-running", live: interrupted(apiImage("1.1"), "api", "0badc0de", nil),
			want: desiredWith(apiImage("1.1"))},
		// Cut off after the stop: the service is down; finish (remove, rename, start).
		{name: "interrupted-recreate-old-stopped", live: interrupted(apiImage("1.1"), "api", "0badc0de", stopped("shop-api-1")),
			want: desiredWith(apiImage("1.1"))},
		// Cut off after the removal: only the rename and the start are left.
		{name: "interrupted-recreate-old-removed", live: interrupted(apiImage("1.1"), "api", "0badc0de", removed("shop-api-1")),
			want: desiredWith(apiImage("1.1"))},
		// Git moved on meanwhile: the replacement is not what is wanted any more.
		{name: "interrupted-recreate-git-moved-on", live: interrupted(apiImage("1.1"), "api", "0badc0de", stopped("shop-api-1")),
			want: desiredWith(apiImage("1.2"))},
		// Cut off between the create and the network connections: not started as is.
		{name: "interrupted-recreate-not-attached", live: interrupted(webImage("1.28"), "web", "0badc0de", all(
			stopped("shop-web-1"), detached("shop-web-1_id-shop-web-_0badc0de", "shop_backend"))),
			want: desiredWith(webImage("1.28"))},
		// Two attempts cut off, the old container gone: the newest is finished, the other removed.
		{name: "interrupted-recreate-twice", live: interrupted(apiImage("1.1"), "api", "0badc0de", all(
			removed("shop-api-1"), func(o *Observed) {
				older := *liveContainer(o, tmpAPI)
				older.Labels = maps.Clone(older.Labels)
				older.ID, older.Name, older.Created = "id-older", "shop-api-1_id-shop-api-_00000001", 1000
				older.Labels[LabelTemporaryName] = older.Name
				o.Containers = append(o.Containers, older)
				o.Networks[0].Containers = append(o.Networks[0].Containers, older.Name)
			})),
			want: desiredWith(apiImage("1.1"))},
		// Left by an earlier version: the same temporary name on every attempt, no labels.
		{name: "interrupted-recreate-legacy", live: interrupted(apiImage("1.1"), "api", "0badc0de", all(
			stopped("shop-api-1"), func(o *Observed) {
				l := liveContainer(o, tmpAPI)
				l.Name = "shop-api-1_0123456789ab"
				delete(l.Labels, LabelReplaces)
				delete(l.Labels, LabelTemporaryName)
			})),
			want: desiredWith(apiImage("1.1"))},
		// A fresh create cut off before its second network was connected.
		{name: "interrupted-create-not-attached", live: observedWith(nil, all(func(o *Observed) {
			liveContainer(o, "shop-web-1").State = "created"
		}, detached("shop-web-1", "shop_backend"))), want: baseDesired},
	}
}

// TestPlanLeftoverNeverCollides: whatever an interrupted recreate left, the plan never
// creates a container under a name that is taken, never keeps a replacement under its
// temporary name, and a plan of the state after a finish is a no-op.
func TestPlanLeftoverNeverCollides(t *testing.T) {
	for _, tc := range leftoverPlanCases() {
		t.Run(tc.name, func(t *testing.T) {
			live := tc.live(t)
			plan := BuildPlan(testApp, tc.want(t), live)
			checkPlanInvariants(t, plan)
			if plan.InSync() {
				t.Fatalf("a leftover leaves the plan in sync:\n%s", golden(plan))
			}
			removedIDs := map[string]bool{}
			for _, s := range plan.Payload.(*Payload).Steps {
				switch s.Kind {
				case StepRemoveContainer:
					removedIDs[s.Existing.ID] = true
				case StepCreateContainer:
					name := containerName("shop", s.Service, s.Number)
					for _, c := range live.Containers {
						if c.Name == name && !removedIDs[c.ID] {
							t.Errorf("creates %s while %s holds the name", name, c.ID)
						}
					}
				}
			}
		})
	}
}

func TestHealthAndRevisionIgnoreTemporaries(t *testing.T) {
	o := interrupted(apiImage("1.1"), "api", "0badc0de", nil)(t)
	for i := range o.Containers {
		o.Containers[i].Labels = maps.Clone(o.Containers[i].Labels)
		o.Containers[i].Labels[LabelRevision] = "old"
	}
	l := liveContainer(o, "shop-api-1_id-shop-api-_0badc0de")
	l.Labels[LabelRevision] = "new"
	if got := liveRevision("shop", o.Containers); got.Revision != "old" {
		t.Errorf("live revision = %q, want old: a replacement never started does not run", got.Revision)
	}
	renamed := *l
	renamed.Name = "shop-api-1"
	if !isTemporary(l) || isTemporary(&renamed) {
		t.Errorf("isTemporary: under its temporary name %t, renamed %t", isTemporary(l), isTemporary(&renamed))
	}
}

func TestTemporaryNamesDifferPerAttempt(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		n, err := temporaryName("shop-api-1", "0123456789abcdef")
		if err != nil {
			t.Fatal(err)
		}
		if seen[n] || !strings.HasPrefix(n, "shop-api-1_0123456789ab_") {
			t.Fatalf("temporary name %q repeats or is malformed", n)
		}
		seen[n] = true
	}
}
