package server

import (
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/shipwatch/shipwatch/internal/webhook"
)

// refusedWarnEvery spaces the warnings about refused connections: a flood is reported, not
// logged line by line.
const refusedWarnEvery = 10 * time.Second

// Canned answers to a refused connection, written before it is closed so that a client
// sees why. They are written once with a short deadline: a refusal never waits.
var (
	answerBusy        = []byte("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	answerTooManyConn = []byte("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
)

// limitListener caps the connections held at once, in all and per client address (its
// /64 for IPv6, as the webhook limiter counts): one beyond a cap is answered and closed at
// once, before a byte of it is read, so a flood from one address can neither exhaust the
// file descriptors the daemon needs for Git and the Engine nor crowd out other clients.
type limitListener struct {
	net.Listener
	max, perAddr int
	log          *slog.Logger
	now          func() time.Time

	mu      sync.Mutex
	total   int
	byAddr  map[string]int
	refused int
	warned  time.Time
}

func newLimitListener(ln net.Listener, maxConns, perAddr int, log *slog.Logger) *limitListener {
	return &limitListener{Listener: ln, max: maxConns, perAddr: perAddr, log: log, now: time.Now, byAddr: map[string]int{}}
}

// Accept returns the next connection within the caps, refusing those beyond them.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := webhook.ClientKey(c.RemoteAddr().String())
		if answer := l.admit(key); answer != nil {
			_ = c.SetWriteDeadline(l.now().Add(100 * time.Millisecond))
			_, _ = c.Write(answer)
			_ = c.Close()
			continue
		}
		return &trackedConn{Conn: c, done: func() { l.release(key) }}, nil
	}
}

// admit counts a new connection of key, or returns the answer refusing it.
func (l *limitListener) admit(key string) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	var answer []byte
	switch {
	case l.byAddr[key] >= l.perAddr:
		answer = answerTooManyConn
	case l.total >= l.max:
		answer = answerBusy
	default:
		l.total++
		l.byAddr[key]++
		return nil
	}
	l.refused++
	if now := l.now(); now.Sub(l.warned) >= refusedWarnEvery {
		l.log.Warn("connections refused: a connection limit is reached",
			"refused", l.refused, "connections", l.total, "max", l.max, "maxPerAddress", l.perAddr)
		l.warned, l.refused = now, 0
	}
	return answer
}

func (l *limitListener) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byAddr[key]--; l.byAddr[key] <= 0 {
		delete(l.byAddr, key)
	}
}

// trackedConn gives its slot back once, at its first Close.
type trackedConn struct {
	net.Conn
	once sync.Once
	done func()
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.done)
	return err
}
