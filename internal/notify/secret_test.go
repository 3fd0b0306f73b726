package notify_test

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shipwatch/shipwatch/internal/notify"
)

// token is what a Slack webhook URL's path looks like: a credential.
const token = "T0SECRETA/B0SECRETB/xoxbSECRETtoken123"

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func TestURLNeverInLogsOrErrors(t *testing.T) {
	failing := newReceiver(t, status(http.StatusInternalServerError))
	missing := newReceiver(t, status(http.StatusNotFound))
	redirecting := newReceiver(t, func(_ int, w http.ResponseWriter) {
		w.Header().Set("Location", "/moved/"+token)
		w.WriteHeader(http.StatusTemporaryRedirect)
	})
	closed := newReceiver(t, nil)
	closedURL := closed.URL
	closed.Close()

	cases := map[string]string{
		"failing":     failing.URL + "/services/" + token,
		"missing":     missing.URL + "/services/" + token,
		"redirecting": redirecting.URL + "/services/" + token,
		"refused":     closedURL + "/services/" + token,
		"unparseable": "http://[::1/services/" + token,
		"badscheme":   "ftp://127.0.0.1/services/" + token,
		"query":       closedURL + "/hook?token=" + token,
	}
	var targets []notify.Target
	for name, u := range cases {
		for _, kind := range []string{notify.KindSlack, notify.KindWebhook} {
			targets = append(targets, notify.Target{Name: kind + "-" + name, Kind: kind, URL: urlOf(u)})
		}
	}
	logs := &lockedBuffer{}
	m := &fakeMetrics{}
	n := newNotifier(t, fastRetries(notify.Options{Retries: 2, Metrics: m, Logger: debugLogger(logs), Targets: targets}))

	err := n.Send(t.Context(), sampleEvent())
	if err == nil {
		t.Fatal("Send to failing targets succeeded")
	}
	for _, tg := range targets {
		if !strings.Contains(err.Error(), "notify target "+tg.Name+":") {
			t.Errorf("error does not name target %s: %v", tg.Name, err)
		}
	}
	assertNoToken(t, "Send error", err.Error())
	for e := error(err); e != nil; e = errors.Unwrap(e) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, inner := range j.Unwrap() {
				for ie := inner; ie != nil; ie = errors.Unwrap(ie) {
					assertNoToken(t, "wrapped error", ie.Error())
				}
			}
		}
	}

	stop := run(t, n)
	n.Notify(sampleEvent())
	waitFor(t, func() bool {
		total := 0
		for _, tg := range targets {
			total += m.get(tg.Name, notify.ResultFailed)
		}
		return total == 2*len(targets) // once from Send, once from Run
	})
	_ = stop()
	out := logs.String()
	if !containsAll(out, "notification failed", "target=slack-refused", "connection refused", "500 Internal Server Error") {
		t.Errorf("failures not logged usefully:\n%s", out)
	}
	assertNoToken(t, "logs", out)
}

func assertNoToken(t *testing.T, what, s string) {
	t.Helper()
	for _, part := range strings.Split(token, "/") {
		if strings.Contains(s, part) {
			t.Errorf("%s leak the URL (%q):\n%s", what, part, s)
		}
	}
}

func TestURLAndSecretReadFromFileAtEachSend(t *testing.T) {
	first, second := newReceiver(t, nil), newReceiver(t, nil)
	dir := t.TempDir()
	urlFile, keyFile := filepath.Join(dir, "url"), filepath.Join(dir, "key")
	write := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(urlFile, first.URL+"\n")
	write(keyFile, "key-one\n")
	n := newNotifier(t, fastRetries(notify.Options{Targets: []notify.Target{{Name: "hook", Kind: notify.KindWebhook,
		URL: notify.URLFromFile(urlFile), Secret: notify.SecretFromFile(keyFile)}}}))
	if err := n.Send(t.Context(), sampleEvent()); err != nil {
		t.Fatal(err)
	}
	write(urlFile, second.URL)
	write(keyFile, "key-two")
	if err := n.Send(t.Context(), sampleEvent()); err != nil {
		t.Fatal(err)
	}
	if len(first.requests()) != 1 || len(second.requests()) != 1 {
		t.Fatalf("requests: first %d, second %d; want 1 each", len(first.requests()), len(second.requests()))
	}
	for _, c := range []struct {
		r   *receiver
		key string
	}{{first, "key-one"}, {second, "key-two"}} {
		req := c.r.requests()[0]
		if got, want := req.header.Get("X-Shipwatch-Signature-256"), "sha256="+hmacHex(c.key, req.body); got != want {
			t.Errorf("signature %q, want %q (key %s without the line break)", got, want, c.key)
		}
	}

	write(keyFile, "")
	err := n.Send(t.Context(), sampleEvent())
	if !errors.Is(err, notify.ErrEmptyFile) {
		t.Errorf("empty secret file: err = %v, want ErrEmptyFile", err)
	}
}
