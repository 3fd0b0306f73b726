package webhook

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// limiter counts each client's attempts in fixed windows, before anything of a request is
// read: an attempt is counted when the request arrives and taken back only when the request
// proved itself (its signature matched). So a failure is an attempt never taken back, and a
// client's requests still being read count against it too: a flood of unsigned, oversized
// or stalled bodies from one address is refused with 429 once max attempts are pending or
// failed, without the daemon reading (or buffering) any more of them. A fixed window
// (rather than a sliding one, or a reset on success) keeps one rule easy to reason about:
// a client that guesses wrong max times waits until its window ends, whatever it sends
// meanwhile.
type limiter struct {
	mu       sync.Mutex
	max      int
	window   time.Duration
	capacity int
	clients  map[string]failureWindow
}

type failureWindow struct {
	start time.Time
	// count is the window's failures plus its attempts still in flight.
	count int
}

// attempt is one counted request: its client and the window it was counted in.
type attempt struct {
	client string
	start  time.Time
}

func newLimiter(maxFailures int, window time.Duration, capacity int) *limiter {
	return &limiter{
		max:      maxFailures,
		window:   window,
		capacity: capacity,
		clients:  make(map[string]failureWindow),
	}
}

// begin counts one attempt of client; ok is false, and nothing is counted, when the
// client's window already holds max failed or pending attempts.
func (l *limiter) begin(client string, now time.Time) (a attempt, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, held := l.clients[client]
	if held && l.expired(w, now) {
		w, held = failureWindow{}, false
		delete(l.clients, client)
	}
	if !held {
		if len(l.clients) >= l.capacity {
			l.makeRoom(now)
		}
		w = failureWindow{start: now}
	}
	if w.count >= l.max {
		return attempt{}, false
	}
	w.count++
	l.clients[client] = w
	return attempt{client: client, start: w.start}, true
}

// succeed takes back an attempt that proved itself. An attempt of a window that has since
// ended or been evicted is not taken from its successor.
func (l *limiter) succeed(a attempt) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.clients[a.client]
	if !ok || !w.start.Equal(a.start) || w.count == 0 {
		return
	}
	w.count--
	if w.count == 0 {
		delete(l.clients, a.client)
		return
	}
	l.clients[a.client] = w
}

// tracked is the number of clients held, for tests of the bound.
func (l *limiter) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}

func (l *limiter) expired(w failureWindow, now time.Time) bool {
	return now.Sub(w.start) >= l.window
}

// makeRoom drops expired windows and, when that frees nothing, the oldest one: under a
// flood of addresses the map stays bounded, and the clients forgotten first are the ones
// whose block would end soonest anyway.
func (l *limiter) makeRoom(now time.Time) {
	var oldestKey string
	var oldest time.Time
	for k, w := range l.clients {
		if l.expired(w, now) {
			delete(l.clients, k)
			continue
		}
		if oldestKey == "" || w.start.Before(oldest) {
			oldestKey, oldest = k, w.start
		}
	}
	if len(l.clients) >= l.capacity && oldestKey != "" {
		delete(l.clients, oldestKey)
	}
}

// ClientKey returns the key a client is counted under: the host part of RemoteAddr. An
// IPv6 client is counted by its /64, since one host usually holds a whole /64 and could
// otherwise rotate addresses to dodge the limit. The HTTP server counts connections under
// the same key.
func ClientKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	addr = addr.Unmap()
	if addr.Is6() {
		p, err := addr.WithZone("").Prefix(64)
		if err == nil {
			return p.String()
		}
	}
	return addr.String()
}
