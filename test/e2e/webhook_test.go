package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shipwatch/shipwatch/internal/testdaemon"
)

func TestSignedPushWebhookDeploysAtOnce(t *testing.T) {
	secret := []byte("webhook-secret-e2e")
	project := uniqueProject(t)
	repo := newRepo(t, simpleApp("before-webhook"))
	url := "file://" + repo.Dir
	addr := testdaemon.FreeAddr(t)
	cfg := testdaemon.Config{RepoURL: url, Addr: addr, Project: project, Drift: "heal", Sync: "auto", Token: "t0k",
		WebhookSecret: string(secret), Extra: "webhooks: {maxBodyBytes: 4096}\n"}.Write(t)
	d := startDaemon(t, cfg, addr)
	eventually(t, 60*time.Second, "deployed", func() bool {
		return len(containers(t, project)["web"]) == 1 && d.Status(t, "app").AppliedRevision != ""
	})
	first := containers(t, project)["web"][0]
	rev := repo.Commit("after", simpleApp("after-webhook"))
	push := []byte(fmt.Sprintf(`{"ref":"refs/heads/main","after":%q,"repository":{"clone_url":%q}}`, rev, url))
	polls := func() float64 {
		return d.Metric(t, "shipwatch_git_requests_total", map[string]string{"repo": "deploy", "op": "ls-remote", "result": "success"})
	}
	before := polls()

	// Refused requests trigger nothing.
	if code := d.GitHubPush(t, []byte("wrong-secret"), push); code != http.StatusUnauthorized {
		t.Errorf("bad signature = %d, want 401", code)
	}
	if code := d.GitHubPush(t, secret, append(push, bytes.Repeat([]byte(" "), 8192)...)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body = %d, want 413", code)
	}
	time.Sleep(2 * time.Second) // room for a wrongly triggered pass to show
	if got := polls(); got != before {
		t.Fatalf("refused webhooks caused %v ls-remotes", got-before)
	}

	// A signed push deploys the new commit without waiting for the hour-long poll.
	if code := d.GitHubPush(t, secret, push); code != http.StatusAccepted {
		t.Fatalf("signed push = %d, want 202", code)
	}
	eventually(t, 30*time.Second, "new commit running", func() bool {
		cs := containers(t, project)["web"]
		return len(cs) == 1 && cs[0] != first && d.Status(t, "app").AppliedRevision == rev
	})
	if got := d.Metric(t, "shipwatch_webhook_requests_total", map[string]string{"provider": "github", "result": "accepted"}); got != 1 {
		t.Errorf("webhook_requests_total{accepted} = %v", got)
	}

	// A flood of bad requests from one address is cut off with 429.
	codes := map[int]int{}
	for range 12 {
		codes[d.GitHubPush(t, []byte("flood"), push)]++
	}
	if codes[http.StatusTooManyRequests] == 0 {
		t.Errorf("a flood of bad requests got %v, want some 429", codes)
	}
	if strings.Contains(d.Logs(t), string(secret)) {
		t.Errorf("the webhook secret reached the logs")
	}
}
