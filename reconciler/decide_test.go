package reconciler

import (
	"strings"
	"testing"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/internal/state"
)

const (
	revA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	revB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	revC = "cccccccccccccccccccccccccccccccccccccccc"
)

func TestDecide(t *testing.T) {
	manualPin := &state.Pin{Revision: revA, Reason: state.PinRollback}
	autoPin := &state.Pin{Revision: revA, Reason: state.PinAutoRollback, FailedRevision: revB}
	base := decideInput{Head: revB, Target: revB, Running: revA, Pending: true, Sync: SyncAuto, Drift: DriftHeal}
	cases := []struct {
		name   string
		edit   func(*decideInput)
		want   Verdict
		reason string // a word the reason must hold; "" means no reason
	}{
		{"new revision, auto", func(*decideInput) {}, VerdictDeploy, ""},
		{"first deploy", func(in *decideInput) { in.Running = "" }, VerdictDeploy, ""},
		{"new revision, manual", func(in *decideInput) { in.Sync = SyncManual }, VerdictManual, "manual"},
		{"new revision, manual, a person syncs", func(in *decideInput) { in.Sync, in.Force = SyncManual, true }, VerdictDeploy, ""},
		{"new revision, alert policy does not hold it", func(in *decideInput) { in.Drift = DriftAlert }, VerdictDeploy, ""},
		{"drift, heal", func(in *decideInput) { in.Running = revB }, VerdictHeal, ""},
		{"drift, alert", func(in *decideInput) { in.Running, in.Drift = revB, DriftAlert }, VerdictAlert, "alert"},
		{"drift, alert, a person syncs", func(in *decideInput) { in.Running, in.Drift, in.Force = revB, DriftAlert, true }, VerdictHeal, ""},
		{"drift, manual sync still heals", func(in *decideInput) { in.Running, in.Sync = revB, SyncManual }, VerdictHeal, ""},
		{"suspended new revision", func(in *decideInput) { in.Suspend = true }, VerdictSuspended, "suspended"},
		{"suspended drift", func(in *decideInput) { in.Running, in.Suspend = revB, true }, VerdictSuspended, "suspended"},
		{"suspended beats a person", func(in *decideInput) { in.Suspend, in.Force = true, true }, VerdictSuspended, "suspended"},
		{"in sync", func(in *decideInput) { in.Running, in.Pending = revB, false }, VerdictInSync, ""},
		{"in sync at a new revision that changes nothing", func(in *decideInput) { in.Pending = false }, VerdictInSync, ""},
		{"pinned, new commit on the ref, in sync", func(in *decideInput) {
			in.Head, in.Target, in.Running, in.Pin, in.Pending = revC, revA, revA, manualPin, false
		}, VerdictInSync, "pinned at aaaaaaaaaaaa by rollback"},
		{"pinned, drift healed at the pin", func(in *decideInput) {
			in.Head, in.Target, in.Running, in.Pin = revC, revA, revA, manualPin
		}, VerdictHeal, "pinned"},
		{"pinned, drift alert at the pin", func(in *decideInput) {
			in.Head, in.Target, in.Running, in.Pin, in.Drift = revC, revA, revA, manualPin, DriftAlert
		}, VerdictAlert, "alert"},
		{"pin not applied yet goes through manual sync", func(in *decideInput) {
			in.Head, in.Target, in.Running, in.Pin, in.Sync = revC, revA, revB, manualPin, SyncManual
		}, VerdictDeploy, "pinned"},
		{"auto-rollback pin", func(in *decideInput) {
			in.Head, in.Target, in.Running, in.Pin, in.Pending = revB, revA, revA, autoPin, false
		}, VerdictInSync, "auto-rollback after bbbbbbbbbbbb failed"},
		{"pin at the ref's own revision is no reason", func(in *decideInput) {
			in.Head, in.Target, in.Running, in.Pin, in.Pending = revA, revA, revA, manualPin, false
		}, VerdictInSync, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := base
			c.edit(&in)
			got := decide(in)
			if got.Verdict != c.want {
				t.Errorf("verdict = %s, want %s", got.Verdict, c.want)
			}
			switch {
			case c.reason == "" && got.Reason != "":
				t.Errorf("reason = %q, want none", got.Reason)
			case c.reason != "" && !strings.Contains(got.Reason, c.reason):
				t.Errorf("reason = %q, want it to say %q", got.Reason, c.reason)
			}
		})
	}
}

func TestPickTarget(t *testing.T) {
	cases := []struct {
		name        string
		head        string
		pin         *state.Pin
		want        string
		wantRelease bool
	}{
		{"no pin follows the ref", revB, nil, revB, false},
		{"a rollback pin holds against new commits", revC, &state.Pin{Revision: revA, Reason: state.PinRollback}, revA, false},
		{"an auto pin holds while the ref names the failed revision", revB,
			&state.Pin{Revision: revA, Reason: state.PinAutoRollback, FailedRevision: revB}, revA, false},
		{"a newer commit lifts an auto pin", revC,
			&state.Pin{Revision: revA, Reason: state.PinAutoRollback, FailedRevision: revB}, revC, true},
		{"a revert to the good revision lifts an auto pin", revA,
			&state.Pin{Revision: revA, Reason: state.PinAutoRollback, FailedRevision: revB}, revA, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, release := pickTarget(c.head, c.pin)
			if got != c.want || release != c.wantRelease {
				t.Errorf("pickTarget = %s, %t; want %s, %t", got, release, c.want, c.wantRelease)
			}
		})
	}
}

func TestRunningRevision(t *testing.T) {
	cases := []struct {
		name   string
		live   drivers.LiveRevision
		stored string
		want   string
	}{
		{"a complete live record wins over a stale store (another replica applied)", drivers.LiveRevision{Revision: revB, Complete: true}, revA, revB},
		{"an empty complete record does not erase the store", drivers.LiveRevision{Complete: true}, revA, revA},
		{"the store wins over a partial record", drivers.LiveRevision{Revision: revA}, revB, revB},
		{"a fresh store falls back to the partial record", drivers.LiveRevision{Revision: revA}, "", revA},
		{"nothing deployed anywhere", drivers.LiveRevision{}, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := runningRevision(c.live, c.stored); got != c.want {
				t.Errorf("runningRevision = %q, want %q", got, c.want)
			}
		})
	}
}
