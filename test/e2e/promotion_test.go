package e2e

import (
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
)

// promoFlow is the state of TestPromotionThroughStages as it goes: the pipeline and the
// registry's references and digests.
type promoFlow struct {
	p  *pipeline
	rc *receiver
	// tagV1 and tagV2 are the registry tags of image and variantImage; digestA and digestB
	// their digest references.
	tagV1, tagV2, digestA, digestB string
	// idA and idB are the local IDs of image and variantImage.
	idA, idB string
}

// Issue 9 end to end on the real Engine, with a real registry in this process and a repo
// served over smart HTTP with a token (promotions are pushed over the network): web runs
// through dev, staging (auto-promoted after 20s healthy) and prod (10s healthy and an
// approval), each stage pinned to digests.
func TestPromotionThroughStages(t *testing.T) {
	t.Parallel()
	buildVariant(t)
	reg := startRegistry(t)
	f := &promoFlow{tagV1: reg + "/web:v1", tagV2: reg + "/web:v2", idA: imageID(t, image), idB: imageID(t, variantImage)}
	f.digestA = pushImage(t, image, f.tagV1)
	f.digestB = pushImage(t, variantImage, f.tagV2)
	rc, notify := rollbackReceiver(t)
	f.rc = rc
	// The later stages start at what a promotion of dev's first revision would write, so
	// that one changes nothing.
	f.p = startPipeline(t, "web", "push", []stageSpec{
		{env: "dev"},
		{env: "staging", from: "dev", gate: "healthyFor: 20s", auto: true},
		{env: "prod", from: "staging", gate: "healthyFor: 10s, approval: true"},
	}, map[string]string{"dev": f.tagV1, "staging": f.digestA, "prod": f.digestA}, notify)

	// One test, not subtests: the daemon, its restart and the registry's references must
	// live as long as the whole flow.
	start := time.Now()
	step := func(name string) { t.Logf("%s: done at %s", name, time.Since(start).Round(time.Second)) }
	f.initial(t)
	step("initial deploy pulls from the registry")
	d1 := f.devOnly(t)
	step("a commit to dev deploys to dev only")
	f.gateClosed(t, d1)
	step("promote is refused while dev is younger than the gate")
	f.autoPromoted(t, d1)
	step("auto-promotion once the gate opens")
	f.restartMidSoak(t)
	step("a restart mid-soak keeps the gate's clock")
	f.rollbackHolds(t)
	step("a rollback in staging holds auto-promotion")
	f.prodApproval(t)
	step("prod waits for an approval")
	f.visible(t)
}

// initial: every stage runs its first revision; dev pulled its tag from the registry.
func (f *promoFlow) initial(t *testing.T) {
	p := f.p
	r0 := p.head(t)
	for _, env := range []string{"dev", "staging", "prod"} {
		c := p.waitStage(t, env, r0)
		want := map[string]string{"dev": f.tagV1}[env]
		if want == "" {
			want = f.digestA
		}
		if c.imageRef != want || c.imageID != f.idA {
			t.Errorf("%s runs %s (%s), want %s (%s)", env, c.imageRef, c.imageID, want, f.idA)
		}
	}
	if _, err := engine.ImageInspect(t.Context(), f.tagV1); err != nil {
		t.Errorf("%s is not on the Engine after dev's deploy (pushImage removed it, the driver should have pulled it): %v", f.tagV1, err)
	}
}

// devOnly commits dev's images.env (web v2) and returns the commit: dev runs it, staging and
// prod settle on the revision with their containers untouched.
func (f *promoFlow) devOnly(t *testing.T) string {
	p := f.p
	before := map[string]stageContainer{}
	for _, env := range []string{"staging", "prod"} {
		before[env], _ = p.web(t, env)
	}
	if _, err := engine.ImageInspect(t.Context(), f.tagV2); !cerrdefs.IsNotFound(err) {
		t.Fatalf("%s is on the Engine before dev uses it (%v): the pull would not be real", f.tagV2, err)
	}
	r0 := p.head(t)
	eventually(t, 30*time.Second, "staging healthy 5s at "+r0[:12], func() bool {
		soak, ok := soaked(p.gate(t, "prod"), r0)
		return ok && soak >= 5*time.Second
	})
	committed := time.Now()
	d1 := p.repo.Commit("dev: web v2", map[string]string{"web/envs/dev/images.env": imagesEnv(f.tagV2)})
	if c := p.waitStage(t, "dev", d1); c.imageRef != f.tagV2 || c.imageID != f.idB {
		t.Errorf("dev runs %s (%s), want %s (%s)", c.imageRef, c.imageID, f.tagV2, f.idB)
	}
	for _, env := range []string{"staging", "prod"} {
		if c := p.waitStage(t, env, d1); c.id != before[env].id {
			t.Errorf("%s's container changed (%s -> %s) for a commit to dev", env, before[env].id[:12], c.id[:12])
		}
	}
	if n := len(p.promotions(t)); n != 0 {
		t.Errorf("%d promotion commits before any gate opened", n)
	}
	// d1 changed nothing in staging: its healthy streak, prod's gate clock, goes on from
	// r0 (restarted, it could not be longer than the time since the commit).
	gate := p.gate(t, "prod")
	if soak, ok := soaked(gate, d1); !ok || soak < time.Since(committed)+3*time.Second {
		t.Errorf("prod's gate = %q, want staging healthy at %s for its time at %s too", gate, d1[:12], r0[:12])
	}
	return d1
}

// gateClosed: `promote --to staging` through the daemon exits 1 and says why.
func (f *promoFlow) gateClosed(t *testing.T, d1 string) {
	code, out := f.p.cli(t, "promote", "web", "--to", "staging")
	if code != 1 || !strings.Contains(out, "gate closed") || !strings.Contains(out, "web@dev") ||
		!strings.Contains(out, "of the 20s required") && !strings.Contains(out, "not Synced and Healthy at "+d1[:12]) {
		t.Fatalf("promote --to staging = %d, want 1 saying dev is younger than the gate:\n%s", code, out)
	}
	if !strings.Contains(out, "shipwatch serve (pid") {
		t.Errorf("promote did not go through the daemon:\n%s", out)
	}
	if n := len(f.p.promotions(t)); n != 0 {
		t.Errorf("%d promotion commits after a refused promote", n)
	}
}

// autoPromoted: once dev has been healthy 20s the daemon commits staging's images.env
// pinned to dev's digest, once; staging runs exactly dev's image.
func (f *promoFlow) autoPromoted(t *testing.T, d1 string) {
	p := f.p
	p1 := p.waitPromotions(t, 1, "the auto-promotion of "+d1[:12]+" into staging")
	p.assertCommit(t, p1, "staging", imagesEnv(f.digestB),
		"promote web to staging: dev at "+d1[:12], "Source: web@dev running "+d1,
		"service/web: "+f.digestB, "Gate: web@dev healthy at "+d1[:12]+" for ")
	dev, _ := p.web(t, "dev")
	if c := p.waitStage(t, "staging", p1); c.imageRef != f.digestB || c.imageID != dev.imageID {
		t.Errorf("staging runs %s (%s), want dev's image %s (%s)", c.imageRef, c.imageID, f.digestB, dev.imageID)
	}
	if got := repoDigest(t, dev.imageID, f.tagV2); got != f.digestB {
		t.Errorf("dev's image has the registry digest %q, want %s", got, f.digestB)
	}
	eventually(t, 10*time.Second, "promotions_total{staging,promoted} = 1", func() bool {
		return p.promoted(t, "staging", "promoted") == 1
	})
	eventually(t, 30*time.Second, "the promotion notified", func() bool { return len(f.rc.notified("promoted")) == 1 })
	if ev := f.rc.notified("promoted")[0]; ev["app"] != "web@staging" || ev["revision"] != d1 {
		t.Errorf("promoted notification = %v, want web@staging at %s", ev, d1[:12])
	}
}

// restartMidSoak: a second dev revision soaks; the daemon restarts in the middle; the gate's
// clock goes on from the store and the revision is promoted once, by digest, although its
// tag has meanwhile moved in the registry to another image.
func (f *promoFlow) restartMidSoak(t *testing.T) {
	p := f.p
	d2 := p.repo.Commit("dev: web v1 again", map[string]string{"web/envs/dev/images.env": imagesEnv(f.tagV1)})
	if c := p.waitStage(t, "dev", d2); c.imageID != f.idA {
		t.Fatalf("dev runs %s, want %s", c.imageID, f.idA)
	}
	if moved := pushImage(t, variantImage, f.tagV1); moved != f.digestB {
		t.Fatalf("the moved tag has the digest %s, want %s", moved, f.digestB)
	}
	var before time.Duration
	eventually(t, 30*time.Second, "dev soaked 5s at "+d2[:12], func() bool {
		var ok bool
		before, ok = soaked(p.gate(t, "staging"), d2)
		return ok && before >= 5*time.Second
	})
	stopped := time.Now()
	p.restart(t, "staging")
	var after time.Duration
	eventually(t, 30*time.Second, "the restarted daemon's gate names "+d2[:12], func() bool {
		var ok bool
		after, ok = soaked(p.gate(t, "staging"), d2)
		return ok
	})
	if want := before + time.Since(stopped) - 2*time.Second; after < want {
		t.Errorf("after the restart dev has soaked %s, want ≥ %s: the gate's clock started again", after, want)
	}
	p2 := p.waitPromotions(t, 2, "the auto-promotion of "+d2[:12]+" after the restart")
	p.assertCommit(t, p2, "staging", imagesEnv(f.digestA), "promote web to staging: dev at "+d2[:12], "service/web: "+f.digestA)
	if c := p.waitStage(t, "staging", p2); c.imageRef != f.digestA || c.imageID != f.idA {
		t.Errorf("staging runs %s (%s), want %s (%s): the moved tag must not matter", c.imageRef, c.imageID, f.digestA, f.idA)
	}
	eventually(t, 10*time.Second, "promotions_total{staging,promoted} = 1 in the new daemon", func() bool {
		return p.promoted(t, "staging", "promoted") == 1
	})
}

// rollbackHolds: a rollback pins staging; a newer dev revision whose gate is open is not
// promoted while the pin holds (a dry run shows it and writes nothing); after unpin it is.
func (f *promoFlow) rollbackHolds(t *testing.T) {
	p := f.p
	if code, out := p.cli(t, "rollback", "web@staging"); code != 0 {
		t.Fatalf("rollback web@staging = %d:\n%s", code, out)
	}
	if st, _ := p.status(t, "staging"); st.Pin == nil {
		t.Fatalf("staging is not pinned after the rollback: %+v", st.Status)
	}
	d3 := p.repo.Commit("dev: web v2 again", map[string]string{"web/envs/dev/images.env": imagesEnv(f.tagV2)})
	p.waitStage(t, "dev", d3)
	// The pin closes staging's gate, and the report says why.
	eventually(t, 30*time.Second, "staging's gate closed by its pin", func() bool {
		return strings.Contains(p.gate(t, "staging"), "closed: web@staging is pinned at")
	})
	if st, _ := p.status(t, "staging"); st.Promotion == nil || st.Promotion.Behind != 1 {
		t.Errorf("staging's promotion report = %+v, want 1 revision behind dev", st.Promotion)
	}
	// Longer than the gate's healthyFor plus a promoter tick: dev's revision would have been
	// promoted by now but for the pin.
	holds(t, 30*time.Second, "no promotion into the pinned staging", func() bool {
		st, ok := p.status(t, "staging")
		return len(p.promotions(t)) == 2 && (!ok || st.Pin != nil)
	})
	head := p.head(t)
	code, out := p.cli(t, "promote", "web", "--to", "staging", "--dry-run")
	for _, want := range []string{"-WEB_IMAGE=" + f.digestA, "+WEB_IMAGE=" + f.digestB, "plan of web@staging", "service/web", "is pinned at"} {
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("promote --dry-run into the pinned staging = %d, want 1 and %q in:\n%s", code, want, out)
		}
	}
	if p.head(t) != head || len(p.promotions(t)) != 2 || strings.Contains(p.repo.Git("branch", "--list"), "shipwatch/") {
		t.Errorf("the dry run wrote something: head %s (was %s)", p.head(t), head)
	}
	if code, out := p.cli(t, "unpin", "web@staging"); code != 0 {
		t.Fatalf("unpin web@staging = %d:\n%s", code, out)
	}
	p3 := p.waitPromotions(t, 3, "the auto-promotion of "+d3[:12]+" after unpin")
	p.assertCommit(t, p3, "staging", imagesEnv(f.digestB), "promote web to staging: dev at "+d3[:12], "service/web: "+f.digestB)
	if c := p.waitStage(t, "staging", p3); c.imageRef != f.digestB || c.imageID != f.idB {
		t.Errorf("staging runs %s (%s), want %s (%s)", c.imageRef, c.imageID, f.digestB, f.idB)
	}
}

// prodApproval: prod's gate waits for an approval of staging's revision; a dry run shows
// the diff and the plan and still exits 1; after `approve`, promote succeeds.
func (f *promoFlow) prodApproval(t *testing.T) {
	p := f.p
	p3 := p.head(t)
	eventually(t, 60*time.Second, "prod's gate waiting only for an approval", func() bool {
		return strings.Contains(p.gate(t, "prod"), "waits for an approval")
	})
	if code, out := p.cli(t, "promote", "web", "--to", "prod"); code != 1 || !strings.Contains(out, "web@staging healthy at "+p3[:12]) ||
		!strings.Contains(out, "waits for an approval") {
		t.Errorf("promote --to prod = %d, want 1 naming the approval:\n%s", code, out)
	}
	code, out := p.cli(t, "promote", "web", "--to", "prod", "--dry-run")
	for _, want := range []string{"-WEB_IMAGE=" + f.digestA, "+WEB_IMAGE=" + f.digestB, "plan of web@prod", "service/web", "waits for an approval"} {
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("promote --to prod --dry-run = %d, want 1 and %q in:\n%s", code, want, out)
		}
	}
	if code, out := p.cli(t, "approve", "web@prod", p3[:12]); code != 0 || !strings.Contains(out, "approved "+p3+" for web@prod") {
		t.Fatalf("approve web@prod %s = %d:\n%s", p3[:12], code, out)
	}
	if code, out := p.cli(t, "promote", "web", "--to", "prod"); code != 0 || !strings.Contains(out, "web@staging -> web@prod: promoted") {
		t.Fatalf("promote --to prod after the approval = %d:\n%s", code, out)
	}
	p4 := p.waitPromotions(t, 4, "the promotion into prod")
	p.assertCommit(t, p4, "prod", imagesEnv(f.digestB), "promote web to prod: staging at "+p3[:12],
		"service/web: "+f.digestB, "approved by api")
	if c := p.waitStage(t, "prod", p4); c.imageRef != f.digestB || c.imageID != f.idB {
		t.Errorf("prod runs %s (%s), want staging's %s (%s)", c.imageRef, c.imageID, f.digestB, f.idB)
	}
	// Forced past the gate (staging's revision is now the promotion commit, neither soaked
	// nor approved), the same files again change nothing: nothing is committed.
	if code, out := p.cli(t, "promote", "web", "--to", "prod", "--force"); code != 0 || !strings.Contains(out, "web@staging -> web@prod: nothing-to-do") {
		t.Errorf("promote --to prod --force again = %d, want 0 and nothing to do:\n%s", code, out)
	}
	if n := len(p.promotions(t)); n != 4 {
		t.Errorf("%d promotion commits after a promotion with nothing to do, want 4", n)
	}
}

// visible: both sides' history records each promotion; the receiver got one `promoted`
// per promotion; the counters of the daemon now running agree.
func (f *promoFlow) visible(t *testing.T) {
	p := f.p
	commits := p.promotions(t) // newest first: prod's, then staging's three
	want := map[string][]string{"dev": commits[1:], "staging": commits, "prod": commits[:1]}
	for env, w := range want {
		if got := p.promotionEntries(t, env); strings.Join(got, ",") != strings.Join(w, ",") {
			t.Errorf("%s's history has the promotions %v, want %v", env, got, w)
		}
	}
	eventually(t, 30*time.Second, "four promoted notifications", func() bool { return len(f.rc.notified("promoted")) == 4 })
	var apps []string
	for _, ev := range f.rc.notified("promoted") {
		apps = append(apps, ev["app"].(string))
	}
	if strings.Join(apps, ",") != "web@staging,web@staging,web@staging,web@prod" {
		t.Errorf("promoted notifications for %v", apps)
	}
	if s, pr := p.promoted(t, "staging", "promoted"), p.promoted(t, "prod", "promoted"); s != 2 || pr != 1 {
		t.Errorf("promotions_total{promoted}: staging %v, prod %v since the restart; want 2 and 1", s, pr)
	}
	if n := p.promoted(t, "staging", "failed") + p.promoted(t, "prod", "failed"); n != 0 {
		t.Errorf("%v failed promotions", n)
	}
	// Staging settles on prod's promotion commit, which changed nothing there: neither stage
	// is behind its source (report and gauge).
	p.waitStage(t, "staging", commits[0])
	for _, env := range []string{"staging", "prod"} {
		eventually(t, 15*time.Second, env+" 0 revisions behind", func() bool {
			st, ok := p.status(t, env)
			return ok && st.Promotion != nil && st.Promotion.Behind == 0 &&
				p.d.Metric(t, "shipwatch_revisions_behind", map[string]string{"app": "web", "env": env}) == 0
		})
	}
}

// With mode: branch a promotion is pushed, over the network, to a review branch on top of
// the target's branch; main, and so every stage, stays as it was.
func TestPromotionBranchModeChangesNothingLive(t *testing.T) {
	t.Parallel()
	buildVariant(t)
	reg := startRegistry(t)
	tagV1, tagV2 := reg+"/api:v1", reg+"/api:v2"
	pushImage(t, image, tagV1)
	digestB := pushImage(t, variantImage, tagV2)
	p := startPipeline(t, "api", "branch", []stageSpec{{env: "dev"}, {env: "staging", from: "dev", gate: "healthyFor: 1s"}},
		map[string]string{"dev": tagV2, "staging": tagV1}, "")
	r0 := p.head(t)
	p.waitStage(t, "dev", r0)
	before := p.waitStage(t, "staging", r0)
	eventually(t, 30*time.Second, "staging's gate open", func() bool { return strings.HasPrefix(p.gate(t, "staging"), "open: ") })

	code, out := p.cli(t, "promote", "api", "--to", "staging")
	branch := "shipwatch/promote-api-staging-" + r0[:8]
	if code != 0 || !strings.Contains(out, "api@dev -> api@staging: promoted") || !strings.Contains(out, " on "+branch) {
		t.Fatalf("promote api --to staging = %d, want 0 and a commit on %s:\n%s", code, branch, out)
	}
	commit := p.repo.Git("rev-parse", "refs/heads/"+branch)
	if !strings.Contains(out, commit) || p.repo.Git("rev-parse", commit+"^") != r0 {
		t.Errorf("review branch %s = %s, want the printed commit on top of main's %s:\n%s", branch, commit[:12], r0[:12], out)
	}
	p.assertCommit(t, commit, "staging", imagesEnv(digestB), "promote api to staging: dev at "+r0[:12], "service/web: "+digestB)
	if head := p.head(t); head != r0 {
		t.Errorf("main moved to %s, want it left at %s", head[:12], r0[:12])
	}

	asked := time.Now()
	if code := p.d.Post(t, "/api/v1/apps/api@staging/refresh", swToken); code != 202 {
		t.Fatalf("refresh api@staging = %d", code)
	}
	eventually(t, 60*time.Second, "a pass of api@staging after the promotion", func() bool {
		st, ok := p.status(t, "staging")
		return ok && st.LastReconcile.After(asked) && st.Operation == nil
	})
	if c := p.waitStage(t, "staging", r0); c != before {
		t.Errorf("staging's container = %+v after the promotion, want the untouched %+v", c, before)
	}
	if got := p.promoted(t, "staging", "promoted"); got != 1 {
		t.Errorf("promotions_total{promoted} = %v, want 1", got)
	}
	if got := p.promotionEntries(t, "staging"); len(got) != 1 || got[0] != commit {
		t.Errorf("staging's history has the promotions %v, want [%s]", got, commit)
	}
}
