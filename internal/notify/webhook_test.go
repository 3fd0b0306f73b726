package notify_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shipwatch/shipwatch/internal/notify"
)

func sampleEvent() notify.Event {
	return notify.Event{
		Type:     notify.DriftDetected,
		App:      "web",
		Revision: "0123456789abcdef0123456789abcdef01234567",
		Message:  "2 resources drifted",
		Time:     time.Date(2025, 3, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600)),
		Resources: []notify.Resource{
			{Ref: "service/web", Action: "recreate", Reason: "config changed: environment", Diff: "-  FOO: ***\n+  FOO: ***\n"},
			{Ref: "network/default", Action: "create"},
		},
	}
}

func TestWebhookSignedPayload(t *testing.T) {
	rcv := newReceiver(t, nil)
	key := []byte("hmac-key-for-test")
	m := &fakeMetrics{}
	n := newNotifier(t, notify.Options{Metrics: m, Targets: []notify.Target{{
		Name: "hook", Kind: notify.KindWebhook, URL: urlOf(rcv.URL + "/hook"),
		Secret: func() ([]byte, error) { return key, nil },
	}}})
	run(t, n)
	n.Notify(sampleEvent())
	rcv.wait(t, 1)
	got := rcv.requests()[0]

	mac := hmac.New(sha256.New, key)
	mac.Write(got.body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if sig := got.header.Get("X-Shipwatch-Signature-256"); !hmac.Equal([]byte(sig), []byte(want)) {
		t.Errorf("signature = %q, want %q", sig, want)
	}
	for h, want := range map[string]string{"Content-Type": "application/json", "X-Shipwatch-Event": "drift-detected"} {
		if v := got.header.Get(h); v != want {
			t.Errorf("header %s = %q, want %q", h, v, want)
		}
	}
	if got.header.Get("X-Shipwatch-Delivery") == "" {
		t.Error("no X-Shipwatch-Delivery header")
	}

	var fields map[string]json.RawMessage
	if err := json.Unmarshal(got.body, &fields); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, got.body)
	}
	var keys []string
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"app", "message", "resources", "revision", "time", "type"}; !slices.Equal(keys, want) {
		t.Errorf("fields = %v, want %v", keys, want)
	}
	var p struct {
		Type, App, Revision, Message, Time string
		Resources                          []map[string]string
	}
	if err := json.Unmarshal(got.body, &p); err != nil {
		t.Fatal(err)
	}
	ev := sampleEvent()
	if p.Type != "drift-detected" || p.App != "web" || p.Revision != ev.Revision || p.Message != ev.Message {
		t.Errorf("payload = %+v", p)
	}
	if p.Time != "2025-03-04T04:06:07Z" {
		t.Errorf("time = %q, want RFC3339 UTC 2025-03-04T04:06:07Z", p.Time)
	}
	wantRes := []map[string]string{
		{"ref": "service/web", "action": "recreate", "reason": "config changed: environment", "diff": "-  FOO: ***\n+  FOO: ***\n"},
		{"ref": "network/default", "action": "create", "reason": "", "diff": ""},
	}
	if len(p.Resources) != len(wantRes) {
		t.Fatalf("resources = %v", p.Resources)
	}
	for i := range wantRes {
		if !mapsEqual(p.Resources[i], wantRes[i]) {
			t.Errorf("resource %d = %v, want %v", i, p.Resources[i], wantRes[i])
		}
	}
	waitFor(t, func() bool { return m.get("hook", notify.ResultSent) == 1 })
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

// waitFor polls cond: used only for counters updated just after a response is read.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWebhookUnsignedAndEmptyResources(t *testing.T) {
	rcv := newReceiver(t, nil)
	n := newNotifier(t, notify.Options{Targets: []notify.Target{{Name: "hook", Kind: notify.KindWebhook, URL: urlOf(rcv.URL)}}})
	if err := n.Send(t.Context(), notify.Event{Type: notify.SyncSucceeded, App: "web"}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := rcv.requests()[0]
	if _, ok := got.header["X-Shipwatch-Signature-256"]; ok {
		t.Error("unsigned target sent a signature header")
	}
	if !strings.Contains(string(got.body), `"resources":[]`) {
		t.Errorf("resources should be an empty list, body %s", got.body)
	}
}

func TestDeliveryIDsDiffer(t *testing.T) {
	rcv := newReceiver(t, nil)
	n := newNotifier(t, notify.Options{Targets: []notify.Target{{Name: "hook", Kind: notify.KindWebhook, URL: urlOf(rcv.URL)}}})
	for range 2 {
		if err := n.Send(t.Context(), sampleEvent()); err != nil {
			t.Fatal(err)
		}
	}
	r := rcv.requests()
	if a, b := r[0].header.Get("X-Shipwatch-Delivery"), r[1].header.Get("X-Shipwatch-Delivery"); a == b {
		t.Errorf("two deliveries share id %q", a)
	}
}

func TestFilters(t *testing.T) {
	rcvApp, rcvEvent, rcvAll := newReceiver(t, nil), newReceiver(t, nil), newReceiver(t, nil)
	n := newNotifier(t, notify.Options{Targets: []notify.Target{
		{Name: "app", Kind: notify.KindWebhook, URL: urlOf(rcvApp.URL), Apps: []string{"web"}},
		{Name: "event", Kind: notify.KindWebhook, URL: urlOf(rcvEvent.URL), Events: []notify.EventType{notify.DriftDetected, notify.DriftHealed}},
		{Name: "all", Kind: notify.KindWebhook, URL: urlOf(rcvAll.URL)},
	}})
	run(t, n)
	events := []notify.Event{
		{Type: notify.SyncSucceeded, App: "web", Message: "1"},
		{Type: notify.DriftDetected, App: "api", Message: "2"},
		{Type: notify.SyncFailed, App: "api", Message: "3"},
		{Type: notify.DriftHealed, App: "web", Message: "4"}, // matches every target: the sentinel
	}
	for _, ev := range events {
		n.Notify(ev)
	}
	rcvAll.wait(t, 4)
	rcvApp.wait(t, 2)
	rcvEvent.wait(t, 2)
	for _, c := range []struct {
		rcv  *receiver
		want []string
	}{{rcvApp, []string{"1", "4"}}, {rcvEvent, []string{"2", "4"}}, {rcvAll, []string{"1", "2", "3", "4"}}} {
		if got := messages(t, c.rcv); !slices.Equal(got, c.want) {
			t.Errorf("received %v, want %v", got, c.want)
		}
	}
}

// messages returns the message field of every webhook body received, in order.
func messages(t *testing.T, r *receiver) []string {
	t.Helper()
	var out []string
	for _, req := range r.requests() {
		var p struct{ Message string }
		if err := json.Unmarshal(req.body, &p); err != nil {
			t.Fatalf("body: %v", err)
		}
		out = append(out, p.Message)
	}
	return out
}

func hmacHex(key string, body []byte) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func TestNewValidation(t *testing.T) {
	u := urlOf("http://127.0.0.1:1")
	key := func() ([]byte, error) { return []byte("k"), nil }
	for name, opts := range map[string]notify.Options{
		"no name":        {Targets: []notify.Target{{Kind: notify.KindWebhook, URL: u}}},
		"no url":         {Targets: []notify.Target{{Name: "a", Kind: notify.KindWebhook}}},
		"bad kind":       {Targets: []notify.Target{{Name: "a", Kind: "email", URL: u}}},
		"slack secret":   {Targets: []notify.Target{{Name: "a", Kind: notify.KindSlack, URL: u, Secret: key}}},
		"unknown event":  {Targets: []notify.Target{{Name: "a", Kind: notify.KindWebhook, URL: u, Events: []notify.EventType{"exploded"}}}},
		"duplicate name": {Targets: []notify.Target{{Name: "a", Kind: notify.KindWebhook, URL: u}, {Name: "a", Kind: notify.KindSlack, URL: u}}},
		"negative queue": {QueueSize: -1},
		"max below base": {RetryBase: time.Minute, RetryMax: time.Second},
	} {
		if _, err := notify.New(opts); err == nil {
			t.Errorf("%s: New accepted invalid options", name)
		}
	}
	if _, err := notify.New(notify.Options{Targets: []notify.Target{{Name: "a", Kind: notify.KindWebhook, URL: u, Secret: key,
		Apps: []string{"web"}, Events: notify.EventTypes()}}}); err != nil {
		t.Errorf("valid options rejected: %v", err)
	}
}
