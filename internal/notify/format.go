package notify

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// webhookPayload is the generic webhook body. Its field names are a public contract:
// receivers parse them, so they never change meaning.
type webhookPayload struct {
	Type      EventType  `json:"type"`
	App       string     `json:"app"`
	Revision  string     `json:"revision"`
	Message   string     `json:"message"`
	Time      string     `json:"time"`
	Resources []Resource `json:"resources"`
}

// webhookBody renders ev as the generic webhook JSON.
func webhookBody(ev *Event) ([]byte, error) {
	p := webhookPayload{
		Type:      ev.Type,
		App:       ev.App,
		Revision:  ev.Revision,
		Message:   ev.Message,
		Time:      ev.Time.UTC().Format(time.RFC3339),
		Resources: ev.Resources,
	}
	if p.Resources == nil {
		// Receivers should not have to tell null from empty.
		p.Resources = []Resource{}
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode webhook payload: %w", err)
	}
	return b, nil
}

// slackMaxResources bounds the resource lines of a Slack message: a channel is read by
// people, and the full list is in shipwatch's API.
const slackMaxResources = 10

// slackBody renders ev as a Slack incoming-webhook message: one summary line and up to
// slackMaxResources resource lines. Diffs are too long for chat; only their count is sent.
func slackBody(ev *Event) ([]byte, error) {
	var b strings.Builder
	b.WriteString(slackSummary(ev))
	diffs := 0
	for i, r := range ev.Resources {
		if r.Diff != "" {
			diffs++
		}
		if i >= slackMaxResources {
			continue
		}
		b.WriteString("\n• ")
		b.WriteString(slackEscape(oneLine(r.Action + " " + r.Ref)))
		if r.Reason != "" {
			b.WriteString(": ")
			b.WriteString(slackEscape(oneLine(r.Reason)))
		}
	}
	if more := len(ev.Resources) - slackMaxResources; more > 0 {
		fmt.Fprintf(&b, "\n…and %d more", more)
	}
	if diffs > 0 {
		fmt.Fprintf(&b, "\n%d %s not shown", diffs, plural(diffs, "diff", "diffs"))
	}
	out, err := json.Marshal(struct {
		Text string `json:"text"`
	}{b.String()})
	if err != nil {
		return nil, fmt.Errorf("encode slack payload: %w", err)
	}
	return out, nil
}

// slackTitle is the human wording of an event type.
func slackTitle(t EventType) string {
	switch t {
	case SyncSucceeded:
		return "sync succeeded"
	case SyncFailed:
		return "sync failed"
	case DriftDetected:
		return "drift detected"
	case DriftHealed:
		return "drift healed"
	case HealthDegraded:
		return "health degraded"
	case HealthRecovered:
		return "health recovered"
	}
	return string(t)
}

// slackSummary is e.g. "shipwatch: sync failed: app web at 1a2b3c4d5e6f: plan: image not found".
func slackSummary(ev *Event) string {
	s := "shipwatch: " + slackTitle(ev.Type) + ": app " + ev.App
	if ev.Revision != "" {
		s += " at " + shortRevision(ev.Revision)
	}
	if ev.Message != "" {
		s += ": " + oneLine(ev.Message)
	}
	return slackEscape(s)
}

// shortRevision shortens a commit hash the way Git UIs do; other revisions are kept.
func shortRevision(rev string) string {
	if len(rev) > 12 && strings.Trim(rev, "0123456789abcdef") == "" {
		return rev[:12]
	}
	return rev
}

// oneLine keeps the first line so a multi-line message cannot break the layout.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if first, _, found := strings.Cut(s, "\n"); found {
		return strings.TrimSpace(first) + " …"
	}
	return s
}

// slackEscape escapes the three characters Slack's mrkdwn treats as control characters.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
