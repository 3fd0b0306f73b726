package docker

import (
	"testing"
)

func TestLiveRevisionIsTheNewestOwnContainers(t *testing.T) {
	own := func(name, rev string, created int64) ObservedContainer {
		return ObservedContainer{Name: name, Created: created, Labels: map[string]string{LabelApp: "web", LabelRevision: rev}}
	}
	cases := []struct {
		name       string
		containers []ObservedContainer
		want       string
	}{
		{"nothing deployed", nil, ""},
		{"one revision", []ObservedContainer{own("p-a-1", "r1", 10), own("p-b-1", "r1", 10)}, "r1"},
		{"a later recreate wins", []ObservedContainer{own("p-a-1", "r2", 20), own("p-b-1", "r1", 10)}, "r2"},
		{"order of the list does not matter", []ObservedContainer{own("p-b-1", "r1", 10), own("p-a-1", "r2", 20)}, "r2"},
		{"same second: the name breaks the tie", []ObservedContainer{own("p-b-1", "r3", 30), own("p-a-1", "r2", 30)}, "r3"},
		{"another app's container is ignored", []ObservedContainer{own("p-a-1", "r1", 10),
			{Name: "p-x-1", Created: 99, Labels: map[string]string{LabelApp: "other", LabelRevision: "rX"}}}, "r1"},
		{"a hand-made container is ignored", []ObservedContainer{own("p-a-1", "r1", 10),
			{Name: "p-debug-1", Created: 99, Labels: map[string]string{LabelProject: "p"}}}, "r1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := liveRevision("web", c.containers)
			if got.Revision != c.want || got.Complete {
				t.Errorf("liveRevision = %+v, want %q (partial)", got, c.want)
			}
		})
	}
}
