package webhook

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// limiter counts failed requests per client in fixed windows. A fixed window (rather than a
// sliding one, or a reset on success) keeps one rule easy to reason about: a client that
// guesses wrong Failures times waits until its window ends, whatever it sends meanwhile.
type limiter struct {
	mu       sync.Mutex
	max      int
	window   time.Duration
	capacity int
	clients  map[string]failureWindow
}

type failureWindow struct {
	start time.Time
	count int
}

func newLimiter(maxFailures int, window time.Duration, capacity int) *limiter {
	return &limiter{
		max:      maxFailures,
		window:   window,
		capacity: capacity,
		clients:  make(map[string]failureWindow),
	}
}

// blocked reports whether client has used up its failures in the current window.
func (l *limiter) blocked(client string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.clients[client]
	if !ok {
		return false
	}
	if l.expired(w, now) {
		delete(l.clients, client)
		return false
	}
	return w.count >= l.max
}

// fail records one failed request of client.
func (l *limiter) fail(client string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w, ok := l.clients[client]; ok && !l.expired(w, now) {
		w.count++
		l.clients[client] = w
		return
	}
	if _, ok := l.clients[client]; !ok && len(l.clients) >= l.capacity {
		l.makeRoom(now)
	}
	l.clients[client] = failureWindow{start: now, count: 1}
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

// clientKey returns the key failures are counted under: the host part of RemoteAddr. An
// IPv6 client is counted by its /64, since one host usually holds a whole /64 and could
// otherwise rotate addresses to dodge the limit.
func clientKey(remoteAddr string) string {
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
