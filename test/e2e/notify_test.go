package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shipwatch/shipwatch/internal/testdaemon"
)

// receiver is a notification endpoint that verifies every delivery's signature.
type receiver struct {
	t      *testing.T
	secret []byte
	mu     sync.Mutex
	bodies []string
	types  []string
	bad    int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	mac := hmac.New(sha256.New, rc.secret)
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if !hmac.Equal([]byte(r.Header.Get("X-Shipwatch-Signature-256")), []byte(want)) {
		rc.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var ev struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(body, &ev)
	rc.bodies = append(rc.bodies, string(body))
	rc.types = append(rc.types, ev.Type)
}

func (rc *receiver) got(typ string) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, t := range rc.types {
		if t == typ {
			return true
		}
	}
	return false
}

func TestNotificationsAreSignedAndMasked(t *testing.T) {
	const oldSecret, newSecret = "db-password-hunter2", "db-password-correct-horse"
	rc := &receiver{t: t, secret: []byte("hmac-key-for-test")}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	dir := t.TempDir()
	urlFile, keyFile := filepath.Join(dir, "url"), filepath.Join(dir, "key")
	if err := os.WriteFile(urlFile, []byte(srv.URL+"/hook/token-in-path-xyz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, rc.secret, 0o600); err != nil {
		t.Fatal(err)
	}

	project := uniqueProject(t)
	repo := newRepo(t, simpleApp(oldSecret))
	addr := testdaemon.FreeAddr(t)
	cfg := testdaemon.Config{RepoURL: repo.Dir, Addr: addr, Project: project, Drift: "heal", Sync: "auto", Token: "t0k",
		Extra: fmt.Sprintf("notify:\n  - name: ops\n    type: webhook\n    urlFile: %s\n    secretFile: %s\n", urlFile, keyFile)}.Write(t)
	d := startDaemon(t, cfg, addr)
	eventually(t, 60*time.Second, "first sync notified", func() bool { return rc.got("sync-succeeded") })

	repo.Commit("rotate", simpleApp(newSecret))
	if code := d.Post(t, "/api/v1/apps/app/refresh", "t0k"); code != http.StatusAccepted {
		t.Fatalf("refresh = %d", code)
	}
	eventually(t, 60*time.Second, "the rotation deployed and notified", func() bool {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		n := 0
		for _, ty := range rc.types {
			if ty == "sync-succeeded" {
				n++
			}
		}
		return n >= 2
	})
	removeContainer(t, containers(t, project)["web"][0])
	eventually(t, 30*time.Second, "drift detected and healed notified", func() bool {
		return rc.got("drift-detected") && rc.got("drift-healed")
	})

	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.bad > 0 {
		t.Errorf("%d deliveries had a wrong signature", rc.bad)
	}
	all := strings.Join(rc.bodies, "\n")
	for _, secret := range []string{oldSecret, newSecret} {
		if strings.Contains(all, secret) {
			t.Errorf("a notification carries the environment value %q", secret)
		}
	}
	if !strings.Contains(all, "MESSAGE") {
		t.Errorf("no notification names the changed variable:\n%s", all)
	}
	logs := d.Logs(t)
	if strings.Contains(logs, "token-in-path-xyz") || strings.Contains(logs, oldSecret) || strings.Contains(logs, newSecret) {
		t.Errorf("logs hold the target URL or an environment value")
	}
}
