// Package notify delivers notifications about syncs, drift and health to outgoing
// webhooks: a generic JSON webhook signed with HMAC-SHA256, and Slack incoming webhooks.
//
// Delivery is asynchronous and lossy by design: a reconcile must never wait on a slow
// receiver, so each target has a bounded queue that drops its oldest event when full.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// EventType is what happened.
type EventType string

// The events shipwatch notifies about.
const (
	SyncSucceeded   EventType = "sync-succeeded"
	SyncFailed      EventType = "sync-failed"
	DriftDetected   EventType = "drift-detected"
	DriftHealed     EventType = "drift-healed"
	HealthDegraded  EventType = "health-degraded"
	HealthRecovered EventType = "health-recovered"
	// Rollback: an app was rolled back, by a person or after a revision failed.
	Rollback EventType = "rollback"
	// Promoted and PromotionFailed: a promotion into a stage was committed, or failed.
	Promoted        EventType = "promoted"
	PromotionFailed EventType = "promotion-failed"
)

// EventTypes lists every known EventType, in a stable order. It is the one list of event
// names: the reconciler emits them and the config's notify filters are checked against it.
func EventTypes() []EventType {
	return []EventType{SyncSucceeded, SyncFailed, DriftDetected, DriftHealed, HealthDegraded, HealthRecovered,
		Rollback, Promoted, PromotionFailed}
}

// Target kinds.
const (
	KindWebhook = "webhook"
	KindSlack   = "slack"
)

// Delivery results reported to Metrics.
const (
	ResultSent    = "sent"
	ResultFailed  = "failed"
	ResultDropped = "dropped"
)

// Event is one notification. Diffs are already masked by the driver (never raw env
// values); notify sends only what is in the Event and adds nothing to it.
type Event struct {
	Type     EventType
	App      string
	Revision string
	Message  string
	// Time is when it happened; zero means the time Notify was called.
	Time      time.Time
	Resources []Resource
}

// Resource is one changed, drifted or unhealthy resource of an Event.
type Resource struct {
	Ref    string `json:"ref"`
	Action string `json:"action"`
	Reason string `json:"reason"`
	Diff   string `json:"diff"`
}

// Target is one place notifications go.
type Target struct {
	// Name identifies the target in logs, errors and metrics; the URL never does.
	Name string
	// Kind is KindWebhook or KindSlack.
	Kind string
	// URL is called at each send so a rotated file is picked up without a restart. A Slack
	// webhook URL is a credential: it never reaches logs, errors or metrics.
	URL func() (string, error)
	// Secret is the HMAC-SHA256 key of a webhook target, called at each send; nil means
	// requests are unsigned. Slack targets cannot have one.
	Secret func() ([]byte, error)
	// Apps and Events filter what the target receives; empty means all.
	Apps   []string
	Events []EventType
}

// Metrics counts delivery outcomes; result is ResultSent, ResultFailed or ResultDropped.
type Metrics interface {
	ObserveNotification(target, result string)
}

// Options configure a Notifier.
type Options struct {
	Targets []Target
	// QueueSize is the per-target queue length; default 256.
	QueueSize int
	// Client sends the requests; default is a client that does not follow redirects.
	Client *http.Client
	Logger *slog.Logger
	// Retries is how many times a failed delivery is retried after the first attempt;
	// default 5.
	Retries int
	// RetryBase and RetryMax bound the exponential backoff (default 1s and 1m); RetryMax
	// also caps a receiver's Retry-After.
	RetryBase, RetryMax time.Duration
	// Metrics may be nil.
	Metrics Metrics
	// Now defaults to time.Now.
	Now func() time.Time
}

// ErrAlreadyRunning is returned by a second concurrent call of Run.
var ErrAlreadyRunning = errors.New("notifier already running")

// attemptTimeout bounds one HTTP attempt, so a receiver that never answers cannot hold a
// target's queue for longer than that.
const attemptTimeout = 10 * time.Second

// Notifier fans events out to targets and delivers them in the background.
type Notifier struct {
	opts    Options
	log     *slog.Logger
	targets []*target
	running atomic.Bool
}

// target is one configured Target with its queue.
type target struct {
	Target
	apps   map[string]bool
	events map[EventType]bool
	queue  *queue
}

// New validates opts and returns a Notifier; call Run to start delivering.
func New(opts Options) (*Notifier, error) {
	if err := applyDefaults(&opts); err != nil {
		return nil, err
	}
	n := &Notifier{opts: opts, log: opts.Logger}
	seen := map[string]bool{}
	for i, t := range opts.Targets {
		if err := validateTarget(t); err != nil {
			return nil, fmt.Errorf("notify target %d (%q): %w", i, t.Name, err)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("notify target %d: duplicate name %q", i, t.Name)
		}
		seen[t.Name] = true
		tg := &target{Target: t, queue: newQueue(opts.QueueSize)}
		if len(t.Apps) > 0 {
			tg.apps = map[string]bool{}
			for _, a := range t.Apps {
				tg.apps[a] = true
			}
		}
		if len(t.Events) > 0 {
			tg.events = map[EventType]bool{}
			for _, e := range t.Events {
				tg.events[e] = true
			}
		}
		n.targets = append(n.targets, tg)
	}
	return n, nil
}

func applyDefaults(opts *Options) error {
	switch {
	case opts.QueueSize < 0:
		return fmt.Errorf("notify: queue size %d is negative", opts.QueueSize)
	case opts.Retries < 0:
		return fmt.Errorf("notify: retries %d is negative", opts.Retries)
	case opts.RetryBase < 0 || opts.RetryMax < 0:
		return errors.New("notify: retry durations must not be negative")
	}
	if opts.QueueSize == 0 {
		opts.QueueSize = 256
	}
	if opts.Retries == 0 {
		opts.Retries = 5
	}
	if opts.RetryBase == 0 {
		opts.RetryBase = time.Second
	}
	if opts.RetryMax == 0 {
		opts.RetryMax = time.Minute
	}
	if opts.RetryMax < opts.RetryBase {
		return fmt.Errorf("notify: retry max %s is below retry base %s", opts.RetryMax, opts.RetryBase)
	}
	if opts.Client == nil {
		// A webhook that redirects is misconfigured; following it would send the body
		// (and its signature) somewhere nobody configured.
		opts.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return nil
}

func validateTarget(t Target) error {
	if t.Name == "" {
		return errors.New("name is required")
	}
	if t.URL == nil {
		return errors.New("URL is required")
	}
	switch t.Kind {
	case KindWebhook:
	case KindSlack:
		if t.Secret != nil {
			return errors.New("slack webhooks are not signed: secret must be nil")
		}
	default:
		return fmt.Errorf("kind %q is not %s or %s", t.Kind, KindWebhook, KindSlack)
	}
	for _, e := range t.Events {
		if !slices.Contains(EventTypes(), e) {
			return fmt.Errorf("unknown event %q", e)
		}
	}
	return nil
}

func (t *target) matches(ev *Event) bool {
	// An app's name also selects all its environments ("web" takes "web@prod").
	base, _, _ := strings.Cut(ev.App, "@")
	return (t.apps == nil || t.apps[ev.App] || t.apps[base]) && (t.events == nil || t.events[ev.Type])
}

// Notify enqueues ev for every matching target and returns at once; it never blocks a
// reconcile: when a target's queue is full the oldest queued event is dropped (counted).
// A nil Notifier drops everything, so callers need no "notifications configured?" check.
func (n *Notifier) Notify(ev Event) {
	if n == nil {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = n.opts.Now()
	}
	// The caller may reuse its slice after we return; targets only read this copy.
	ev.Resources = slices.Clone(ev.Resources)
	for _, t := range n.targets {
		if !t.matches(&ev) {
			continue
		}
		if t.queue.push(ev) {
			n.observe(t.Name, ResultDropped)
		}
	}
}

// Send delivers ev synchronously to every matching target, with retries, bypassing the
// queues; it is for a "send a test notification" command. The error joins one error per
// failed target, each naming the target.
func (n *Notifier) Send(ctx context.Context, ev Event) error {
	if ev.Time.IsZero() {
		ev.Time = n.opts.Now()
	}
	var errs []error
	for _, t := range n.targets {
		if !t.matches(&ev) {
			continue
		}
		if err := n.deliver(ctx, t, &ev); err != nil {
			n.observe(t.Name, ResultFailed)
			errs = append(errs, err)
			continue
		}
		n.observe(t.Name, ResultSent)
	}
	return errors.Join(errs...)
}

// Run delivers until ctx ends, one goroutine per target so a slow target never delays
// another. When ctx ends it stops promptly: in-flight requests are cancelled and events
// still queued are counted as dropped. It returns nil after a clean stop.
func (n *Notifier) Run(ctx context.Context) error {
	if !n.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer n.running.Store(false)
	if len(n.targets) == 0 {
		// Keep the contract "runs until ctx ends" for callers that supervise Run.
		<-ctx.Done()
		return nil
	}
	var wg sync.WaitGroup
	for _, t := range n.targets {
		wg.Go(func() { n.runTarget(ctx, t) })
	}
	wg.Wait()
	return nil
}

func (n *Notifier) runTarget(ctx context.Context, t *target) {
	for {
		ev, ok := t.queue.pop(ctx)
		if !ok {
			for range t.queue.drain() {
				n.observe(t.Name, ResultDropped)
			}
			return
		}
		if dropped := t.queue.takeDropped(); dropped > 0 {
			n.log.LogAttrs(ctx, slog.LevelWarn, "notifications dropped: queue full",
				slog.String("target", t.Name), slog.Int("count", dropped))
		}
		err := n.deliver(ctx, t, &ev)
		switch {
		case err == nil:
			n.observe(t.Name, ResultSent)
			n.log.LogAttrs(ctx, slog.LevelDebug, "notification sent", slog.String("target", t.Name),
				slog.String("app", ev.App), slog.String("revision", ev.Revision), slog.String("event", string(ev.Type)))
		case ctx.Err() != nil:
			// Shutting down: the event is lost, not failed.
			n.observe(t.Name, ResultDropped)
		default:
			n.observe(t.Name, ResultFailed)
			n.log.LogAttrs(ctx, slog.LevelWarn, "notification failed", slog.String("target", t.Name),
				slog.String("app", ev.App), slog.String("revision", ev.Revision), slog.String("event", string(ev.Type)),
				slog.String("err", err.Error()))
		}
	}
}

func (n *Notifier) observe(target, result string) {
	if n.opts.Metrics != nil {
		n.opts.Metrics.ObserveNotification(target, result)
	}
}
