package promotion

import (
	"testing"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/internal/state"
)

func TestCountBehind(t *testing.T) {
	changed := []drivers.Change{{Ref: drivers.Ref{Kind: "service", Name: "web"}, Action: drivers.ActionRecreate}}
	deploy := func(rev string) state.Entry {
		return state.Entry{Trigger: state.TriggerPoll, Revision: rev, Result: state.ResultSucceeded, Changes: changed}
	}
	settled := func(rev string) state.Entry { // a revision that changed nothing here
		return state.Entry{Trigger: state.TriggerPoll, Revision: rev, Result: state.ResultSucceeded}
	}
	promotion := state.Entry{Trigger: state.TriggerPromotion, Revision: "d1", Result: state.ResultSucceeded,
		Promotion: &state.Promotion{SourceRevision: "d1"}}
	heal := deploy("p1")
	heal.Trigger = state.TriggerDrift
	failed := deploy("d3")
	failed.Result = state.ResultFailed
	cases := []struct {
		name    string
		entries []state.Entry // newest first
		want    int
	}{
		{"the promotion commit only", []state.Entry{settled("p1"), promotion, deploy("d1"), deploy("d0")}, 0},
		{"a heal after it", []state.Entry{heal, settled("p1"), promotion, deploy("d1")}, 0},
		{"two new deploys", []state.Entry{deploy("d2b"), failed, settled("x"), deploy("d2"), settled("p1"), promotion, deploy("d1")}, 2},
		{"the same revision twice", []state.Entry{deploy("d2"), deploy("d2"), deploy("d1")}, 1},
		{"nothing promoted yet", []state.Entry{deploy("d1"), deploy("d0")}, 2},
	}
	for _, c := range cases {
		promoted := "d1"
		if c.name == "nothing promoted yet" {
			promoted = ""
		}
		if got := countBehind(c.entries, promoted); got != c.want {
			t.Errorf("%s: %d behind, want %d", c.name, got, c.want)
		}
	}
}
