package notify

import (
	"context"
	"sync"
)

// queue is a bounded FIFO that overwrites its oldest entry when full, so a producer never
// waits: the newest state of an app matters more than an old one nobody could deliver.
type queue struct {
	mu      sync.Mutex
	buf     []Event
	head    int // index of the oldest entry
	n       int // entries in buf
	dropped int // drops since the consumer last looked
	// ready holds one token while the queue may be non-empty, waking the consumer.
	ready chan struct{}
}

func newQueue(size int) *queue {
	return &queue{buf: make([]Event, size), ready: make(chan struct{}, 1)}
}

// push appends ev and reports whether the oldest entry was dropped to make room.
func (q *queue) push(ev Event) (dropped bool) {
	q.mu.Lock()
	if q.n == len(q.buf) {
		q.buf[q.head] = ev
		q.head = (q.head + 1) % len(q.buf)
		q.dropped++
		dropped = true
	} else {
		q.buf[(q.head+q.n)%len(q.buf)] = ev
		q.n++
	}
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return dropped
}

// tryPop removes the oldest entry, if any.
func (q *queue) tryPop() (Event, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 {
		return Event{}, false
	}
	ev := q.buf[q.head]
	q.buf[q.head] = Event{} // let the event's resources be collected
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return ev, true
}

// pop waits for the oldest entry; false means ctx ended first.
func (q *queue) pop(ctx context.Context) (Event, bool) {
	for {
		if ctx.Err() != nil {
			return Event{}, false
		}
		if ev, ok := q.tryPop(); ok {
			return ev, true
		}
		select {
		case <-ctx.Done():
			return Event{}, false
		case <-q.ready:
		}
	}
}

// drain removes and returns every entry left.
func (q *queue) drain() []Event {
	var out []Event
	for {
		ev, ok := q.tryPop()
		if !ok {
			return out
		}
		out = append(out, ev)
	}
}

// takeDropped returns the drops since the last call and resets the count.
func (q *queue) takeDropped() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	d := q.dropped
	q.dropped = 0
	return d
}
