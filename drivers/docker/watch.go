package docker

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers"
)

// watchActions are the Engine event actions that can mean drift.
func watchActions() []string {
	return []string{"create", "start", "stop", "die", "destroy", "update", "rename", "disconnect"}
}

// Backoff bounds for reconnecting a broken event stream.
const (
	watchBackoffMin = 250 * time.Millisecond
	watchBackoffMax = 10 * time.Second
	// watchSettle is how long a fresh stream must stay up before it counts as reconnected.
	watchSettle = 200 * time.Millisecond
)

// Watch streams the Engine's events about the app's containers, networks and volumes.
// Containers carry their labels in events, so the Engine filters them by project label;
// network and volume events do not carry labels, so a second stream is filtered here by
// the project's name prefix and by attachments of the project's containers. When a stream
// breaks it is reopened with bounded backoff and one Event{Reason: "reconnected"} is sent,
// because events may have been missed: the receiver re-plans. An `update` event (`docker
// update` by hand) also marks the container so the next Plan inspects its limits, and each
// (re)connection makes the next Plan inspect every container of the app.
//
// An Engine that is down when Watch is called is not an error: the streams keep trying
// with backoff, and the first one that connects sends "reconnected". Failing here instead
// left a daemon started before its Engine without drift detection for good.
func (d *Driver) Watch(ctx context.Context, app drivers.App) (<-chan drivers.Event, error) {
	out := make(chan drivers.Event, 16)
	project := app.Project
	containerFilters := projectFilter(project).
		Add("type", string(events.ContainerEventType)).
		Add("event", watchActions()...)
	otherFilters := client.Filters{}.
		Add("type", string(events.NetworkEventType), string(events.VolumeEventType)).
		Add("event", watchActions()...)
	log := d.log.With("app", app.Name)
	var wg sync.WaitGroup
	for _, s := range []stream{
		{filters: containerFilters, accept: func(m events.Message) (drivers.Ref, bool) {
			if m.Actor.Attributes[LabelProject] != project {
				return drivers.Ref{}, false
			}
			if m.Action == events.ActionUpdate {
				// Marked before the event is sent, so the Plan it triggers inspects it.
				d.markUpdated(app.Name, m.Actor.ID)
			}
			return drivers.Ref{Kind: "service", Name: m.Actor.Attributes[LabelService]}, true
		}, up: func() {
			// Updates made while no stream was up were not seen: inspect everything again.
			d.forgetRuntime(app.Name)
		}},
		{filters: otherFilters, accept: func(m events.Message) (drivers.Ref, bool) {
			return projectResource(project, m)
		}},
	} {
		wg.Go(func() { d.runStream(ctx, s, out, log) })
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out, nil
}

// stream is one filtered event subscription and the test that maps its messages to refs.
type stream struct {
	filters client.Filters
	accept  func(events.Message) (drivers.Ref, bool)
	// up, when set, runs each time the stream is (re)established.
	up func()
}

// projectResource accepts network and volume events of the project's resources: named
// <project>_<key> as compose names them.
func projectResource(project string, m events.Message) (drivers.Ref, bool) {
	name := m.Actor.Attributes["name"]
	kind := "network"
	if m.Type == events.VolumeEventType {
		kind, name = "volume", m.Actor.ID
	}
	key, ok := strings.CutPrefix(name, project+"_")
	return drivers.Ref{Kind: kind, Name: key}, ok
}

func (d *Driver) runStream(ctx context.Context, s stream, out chan<- drivers.Event, log *slog.Logger) {
	backoff := watchBackoffMin
	reconnecting := false
	for ctx.Err() == nil {
		sub, cancel := context.WithCancel(ctx)
		res := d.api.Events(sub, client.EventsListOptions{Filters: s.filters})
		err := consume(ctx, s, res, out, func() {
			backoff = watchBackoffMin
			if s.up != nil {
				s.up()
			}
			if reconnecting {
				reconnecting = false
				send(ctx, out, drivers.Event{Reason: "reconnected", Time: time.Now()})
			}
		})
		cancel()
		if ctx.Err() != nil {
			return
		}
		log.Warn("event stream broken", "err", err)
		reconnecting = true
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, watchBackoffMax)
	}
}

// consume forwards a stream's accepted messages until it fails. up is called once the
// stream has stayed up for watchSettle or delivered a message.
func consume(ctx context.Context, s stream, res client.EventsResult, out chan<- drivers.Event, up func()) error {
	settle := time.NewTimer(watchSettle)
	defer settle.Stop()
	settled := false
	markUp := func() {
		if !settled {
			settled = true
			up()
		}
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-settle.C:
			markUp()
		case err := <-res.Err:
			if err == nil {
				err = fmt.Errorf("event stream closed")
			}
			return err
		case m := <-res.Messages:
			markUp()
			ref, ok := s.accept(m)
			if !ok {
				continue
			}
			send(ctx, out, drivers.Event{Ref: ref, Reason: string(m.Action), Time: eventTime(m)})
		}
	}
}

func send(ctx context.Context, out chan<- drivers.Event, e drivers.Event) {
	select {
	case out <- e:
	case <-ctx.Done():
	}
}

func eventTime(m events.Message) time.Time {
	if m.TimeNano != 0 {
		return time.Unix(0, m.TimeNano)
	}
	return time.Unix(m.Time, 0)
}
