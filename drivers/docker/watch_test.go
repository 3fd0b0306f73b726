package docker

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers"
)

// flakyEvents is an engine whose event stream breaks on the first subscription and then
// works: it exercises the reconnect logic, nothing else.
type flakyEvents struct {
	engine
	calls atomic.Int32
}

func (f *flakyEvents) Ping(context.Context, client.PingOptions) (client.PingResult, error) {
	return client.PingResult{}, nil
}

func (f *flakyEvents) Events(ctx context.Context, opts client.EventsListOptions) client.EventsResult {
	msgs := make(chan events.Message)
	errs := make(chan error, 1)
	n := f.calls.Add(1)
	isContainers := opts.Filters["type"]["container"]
	go func() {
		switch {
		case n <= 2: // both first subscriptions break at once
			errs <- errors.New("connection reset")
		case isContainers:
			select {
			case msgs <- events.Message{Type: events.ContainerEventType, Action: "die", Actor: events.Actor{
				Attributes: map[string]string{LabelProject: "p", LabelService: "web"}}}:
			case <-ctx.Done():
			}
			<-ctx.Done()
			errs <- ctx.Err()
		default:
			<-ctx.Done()
			errs <- ctx.Err()
		}
	}()
	return client.EventsResult{Messages: msgs, Err: errs}
}

func TestWatchReconnectsAndSaysSo(t *testing.T) {
	d := &Driver{api: &flakyEvents{}, log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := d.Watch(ctx, drivers.App{Name: "a", Project: "p"})
	if err != nil {
		t.Fatal(err)
	}
	var reconnected, die int
	timeout := time.After(5 * time.Second)
	for reconnected < 2 || die < 1 {
		select {
		case e := <-ch:
			switch {
			case e.Reason == "reconnected":
				reconnected++
			case e.Reason == "die" && e.Ref.String() == "service/web":
				die++
			}
		case <-timeout:
			t.Fatalf("got %d reconnected and %d die events, want 2 and 1", reconnected, die)
		}
	}
	cancel()
	for e := range ch {
		if e.Reason == "reconnected" {
			t.Errorf("extra reconnected event after a stable stream")
		}
	}
}

func TestProjectResource(t *testing.T) {
	for _, tc := range []struct {
		msg  events.Message
		want string
		ok   bool
	}{
		{events.Message{Type: events.NetworkEventType, Actor: events.Actor{Attributes: map[string]string{"name": "p_default"}}}, "network/default", true},
		{events.Message{Type: events.NetworkEventType, Actor: events.Actor{Attributes: map[string]string{"name": "other_default"}}}, "", false},
		{events.Message{Type: events.VolumeEventType, Actor: events.Actor{ID: "p_data"}}, "volume/data", true},
	} {
		ref, ok := projectResource("p", tc.msg)
		if ok != tc.ok || (ok && ref.String() != tc.want) {
			t.Errorf("%+v: got %s %t, want %s %t", tc.msg, ref, ok, tc.want, tc.ok)
		}
	}
}

// downAtStart is an Engine that is down when Watch is called: its ping fails and its first
// event subscriptions break, then it comes up.
type downAtStart struct{ flakyEvents }

func (f *downAtStart) Ping(context.Context, client.PingOptions) (client.PingResult, error) {
	return client.PingResult{}, errors.New("dial unix /var/run/docker.sock: connect: no such file or directory")
}

// TestWatchOutlastsAnEngineDownAtStart: a daemon started before its Engine still detects
// drift once the Engine is up, instead of giving up on the event stream for good.
func TestWatchOutlastsAnEngineDownAtStart(t *testing.T) {
	d := &Driver{api: &downAtStart{}, log: slog.New(slog.DiscardHandler)}
	ch, err := d.Watch(t.Context(), drivers.App{Name: "a", Project: "p"})
	if err != nil {
		t.Fatalf("Watch with the Engine down: %v, want it to keep trying", err)
	}
	seen := map[string]bool{}
	deadline := time.After(10 * time.Second)
	for !seen["reconnected"] || !seen["die"] {
		select {
		case ev := <-ch:
			seen[ev.Reason] = true
		case <-deadline:
			t.Fatalf("events after the Engine came up: %v, want reconnected and die", seen)
		}
	}
}
