package main

import (
	"github.com/shipwatch/shipwatch/internal/notify"
	"github.com/shipwatch/shipwatch/internal/webhook"
	"github.com/shipwatch/shipwatch/reconciler"
)

// newNotifier builds the notification targets of the config; nil when there are none.
func (e *env) newNotifier() (*notify.Notifier, error) {
	if len(e.cfg.Notify) == 0 {
		return nil, nil
	}
	targets := make([]notify.Target, 0, len(e.cfg.Notify))
	for _, n := range e.cfg.Notify {
		t := notify.Target{Name: n.Name, Kind: n.Type, URL: notify.URLFromFile(n.URLFile), Apps: n.Apps}
		if n.SecretFile != "" {
			t.Secret = notify.SecretFromFile(n.SecretFile)
		}
		for _, ev := range n.Events {
			t.Events = append(t.Events, notify.EventType(ev))
		}
		targets = append(targets, t)
	}
	return notify.New(notify.Options{Targets: targets, Logger: e.log, Metrics: e.metrics})
}

// notifyAdapter turns the reconciler's events into notifications.
type notifyAdapter struct{ n *notify.Notifier }

func (a notifyAdapter) Notify(ev reconciler.Event) {
	out := notify.Event{
		Type: notify.EventType(ev.Type), App: ev.App, Revision: ev.Revision, Message: ev.Message, Time: ev.Time,
	}
	for _, c := range ev.Changes {
		action := string(c.Action)
		if c.Unmanaged {
			action = "unmanaged"
		}
		out.Resources = append(out.Resources, notify.Resource{Ref: c.Ref.String(), Action: action, Reason: c.Reason, Diff: c.Diff})
	}
	a.n.Notify(out)
}

// newWebhooks builds the /hooks handler for the repos that have a webhook secret; nil when
// none has one.
func (e *env) newWebhooks(rec *reconciler.Reconciler) (*webhook.Handler, error) {
	var repos []webhook.Repo
	for _, r := range e.cfg.Repos {
		if r.Webhook.SecretFile == "" {
			continue
		}
		repos = append(repos, webhook.Repo{Name: r.Name, URL: r.URL, Secret: notify.SecretFromFile(r.Webhook.SecretFile)})
	}
	if len(repos) == 0 {
		return nil, nil
	}
	return webhook.New(webhook.Options{
		Repos: repos, Target: rec, MaxBody: e.cfg.Webhooks.MaxBodyBytes, Metrics: e.metrics, Logger: e.log,
	})
}
