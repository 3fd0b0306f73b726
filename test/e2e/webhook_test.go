package e2e

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func githubPush(t *testing.T, addr string, secret, body []byte) int {
	t.Helper()
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/hooks/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /hooks/github: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestSignedPushWebhookDeploysAtOnce(t *testing.T) {
	secret := []byte("webhook-secret-e2e")
	secretFile := filepath.Join(t.TempDir(), "hook-secret")
	if err := os.WriteFile(secretFile, append(secret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	project := uniqueProject(t)
	repo := newRepo(t, simpleApp("before-webhook"))
	url := "file://" + repo.dir
	addr := freeAddr(t)
	cfg := daemonConfig{repoURL: url, addr: addr, project: project, drift: "heal", sync: "auto", token: "t0k",
		repoAuth: fmt.Sprintf("\n    webhook: {secretFile: %s}", secretFile),
		extra:    "webhooks: {maxBodyBytes: 4096}\n"}.write(t)
	d := startDaemon(t, cfg, addr)
	eventually(t, 60*time.Second, "deployed", func() bool {
		return len(containers(t, project)["web"]) == 1 && d.appStatus().AppliedRevision != ""
	})
	first := containers(t, project)["web"][0]
	rev := repo.commit("after", simpleApp("after-webhook"))
	push := []byte(fmt.Sprintf(`{"ref":"refs/heads/main","after":%q,"repository":{"clone_url":%q}}`, rev, url))
	polls := func() float64 {
		return d.metric("shipwatch_git_requests_total", map[string]string{"repo": "deploy", "op": "ls-remote", "result": "success"})
	}
	before := polls()

	// Refused requests trigger nothing.
	if code := githubPush(t, addr, []byte("wrong-secret"), push); code != http.StatusUnauthorized {
		t.Errorf("bad signature = %d, want 401", code)
	}
	if code := githubPush(t, addr, secret, append(push, bytes.Repeat([]byte(" "), 8192)...)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body = %d, want 413", code)
	}
	time.Sleep(2 * time.Second) // room for a wrongly triggered pass to show
	if got := polls(); got != before {
		t.Fatalf("refused webhooks caused %v ls-remotes", got-before)
	}

	// A signed push deploys the new commit without waiting for the hour-long poll.
	if code := githubPush(t, addr, secret, push); code != http.StatusAccepted {
		t.Fatalf("signed push = %d, want 202", code)
	}
	eventually(t, 30*time.Second, "new commit running", func() bool {
		cs := containers(t, project)["web"]
		return len(cs) == 1 && cs[0] != first && d.appStatus().AppliedRevision == rev
	})
	if got := d.metric("shipwatch_webhook_requests_total", map[string]string{"provider": "github", "result": "accepted"}); got != 1 {
		t.Errorf("webhook_requests_total{accepted} = %v", got)
	}

	// A flood of bad requests from one address is cut off with 429.
	codes := map[int]int{}
	for range 12 {
		codes[githubPush(t, addr, []byte("flood"), push)]++
	}
	if codes[http.StatusTooManyRequests] == 0 {
		t.Errorf("a flood of bad requests got %v, want some 429", codes)
	}
	if strings.Contains(d.logs.String(), string(secret)) {
		t.Errorf("the webhook secret reached the logs")
	}
}
