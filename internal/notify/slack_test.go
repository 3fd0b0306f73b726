package notify_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/shipwatch/shipwatch/internal/notify"
)

func TestSlackBody(t *testing.T) {
	rcv := newReceiver(t, nil)
	n := newNotifier(t, notify.Options{Targets: []notify.Target{{Name: "chat", Kind: notify.KindSlack, URL: urlOf(rcv.URL + "/services/T0/B0/x")}}})
	ev := notify.Event{
		Type:     notify.SyncFailed,
		App:      "web",
		Revision: "0123456789abcdef0123456789abcdef01234567",
		Message:  "apply: image <none> & co\nsecond line",
	}
	for i := range 12 {
		r := notify.Resource{Ref: fmt.Sprintf("service/s%02d", i), Action: "recreate", Reason: "config changed: environment"}
		if i%4 == 0 {
			r.Diff = "-  TOKEN: ***\n+  TOKEN: ***\nUNIQUE-DIFF-TEXT\n"
		}
		ev.Resources = append(ev.Resources, r)
	}
	if err := n.Send(t.Context(), ev); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := rcv.requests()[0]
	var body map[string]any
	if err := json.Unmarshal(got.body, &body); err != nil {
		t.Fatalf("body: %v", err)
	}
	if len(body) != 1 {
		t.Errorf("slack body has keys %v, want only text", body)
	}
	text, _ := body["text"].(string)
	lines := strings.Split(text, "\n")
	want := []string{"shipwatch: sync failed: app web at 0123456789ab: apply: image &lt;none&gt; &amp; co …"}
	for i := range 10 {
		want = append(want, fmt.Sprintf("• recreate service/s%02d: config changed: environment", i))
	}
	want = append(want, "…and 2 more", "3 diffs not shown")
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("text:\n%s\nwant:\n%s", text, strings.Join(want, "\n"))
	}
	if strings.Contains(string(got.body), "UNIQUE-DIFF-TEXT") {
		t.Error("a diff was sent to Slack")
	}
	if got.header.Get("X-Shipwatch-Event") != "" {
		t.Error("slack target got generic webhook headers")
	}
}

func TestSlackShortEvent(t *testing.T) {
	rcv := newReceiver(t, nil)
	n := newNotifier(t, notify.Options{Targets: []notify.Target{{Name: "chat", Kind: notify.KindSlack, URL: urlOf(rcv.URL)}}})
	ev := notify.Event{Type: notify.HealthRecovered, App: "api", Revision: "main",
		Resources: []notify.Resource{{Ref: "service/api", Action: "update"}}}
	if err := n.Send(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	var body struct{ Text string }
	if err := json.Unmarshal(rcv.requests()[0].body, &body); err != nil {
		t.Fatal(err)
	}
	if want := "shipwatch: health recovered: app api at main\n• update service/api"; body.Text != want {
		t.Errorf("text = %q, want %q", body.Text, want)
	}
}
