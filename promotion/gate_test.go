package promotion

import (
	"strings"
	"testing"
	"time"

	"github.com/shipwatch/shipwatch/internal/state"
	"github.com/shipwatch/shipwatch/reconciler"
)

func TestGate(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	const rev = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	healthy := reconciler.StageState{Name: "web@dev", Applied: rev, Sync: "Synced", Health: "Healthy",
		Healthy: &state.Streak{Revision: rev, Since: now.Add(-15 * time.Minute)}}
	tenMin := Gate{HealthyFor: 10 * time.Minute}
	cases := []struct {
		name string
		in   gateInput
		open bool
		says string
	}{
		{"healthy long enough", gateInput{Gate: tenMin, Source: healthy}, true, "healthy at aaaaaaaaaaaa for 15m0s (10m0s required)"},
		{"too young", gateInput{Gate: Gate{HealthyFor: time.Hour}, Source: healthy}, false, "for 15m0s of the 1h0m0s required"},
		{"nothing runs", gateInput{Gate: tenMin, Source: reconciler.StageState{Name: "web@dev"}}, false, "runs no revision"},
		{"unhealthy", gateInput{Gate: tenMin, Source: func() reconciler.StageState {
			s := healthy
			s.Healthy, s.Health = nil, "Degraded"
			return s
		}()}, false, "not Synced and Healthy at aaaaaaaaaaaa (sync Synced, health Degraded)"},
		{"streak of another revision", gateInput{Gate: tenMin, Source: func() reconciler.StageState {
			s := healthy
			s.Healthy = &state.Streak{Revision: "bbbb", Since: now.Add(-time.Hour)}
			return s
		}()}, false, "not Synced and Healthy"},
		{"pinned source", gateInput{Gate: tenMin, Source: func() reconciler.StageState {
			s := healthy
			s.Pin = &state.Pin{Revision: rev, Reason: state.PinRollback}
			return s
		}()}, false, "pinned"},
		{"approval missing", gateInput{Gate: Gate{HealthyFor: time.Minute, Approval: true}, Source: healthy,
			Approvals: []state.Approval{{Revision: "bbbb"}}}, false, "healthy at aaaaaaaaaaaa for 15m0s (1m0s required); waits for an approval"},
		{"pinned target", gateInput{Gate: tenMin, Source: healthy, Target: reconciler.StageState{Name: "web@staging",
			Pin: &state.Pin{Revision: rev, Reason: state.PinRollback}}}, false, "web@staging is pinned at aaaaaaaaaaaa by rollback"},
		{"approved before an unrelated commit", gateInput{Gate: Gate{HealthyFor: time.Minute, Approval: true}, Source: func() reconciler.StageState {
			s := healthy
			s.Applied = "cccc"
			s.Healthy = healthy.Healthy.Carried("cccc")
			return s
		}(), Approvals: []state.Approval{{Revision: rev, Actor: state.ActorAPI, At: now}}}, true, "approved by api"},
		{"approved", gateInput{Gate: Gate{HealthyFor: time.Minute, Approval: true}, Source: healthy,
			Approvals: []state.Approval{{Revision: rev, Actor: state.ActorCLI, At: now}}}, true, "approved by cli"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.in.Now = now
			v := evaluate(c.in)
			if v.Open != c.open || !strings.Contains(v.Reason, c.says) {
				t.Errorf("gate = %+v, want open %t saying %q", v, c.open, c.says)
			}
		})
	}
}
