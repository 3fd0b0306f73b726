// Package testproxy puts a proxy in front of a TCP or unix-socket server that a fault test
// can take down and bring back: Down closes every connection and stops listening, so
// clients see the server gone (connection refused), as when a Git host or a Docker Engine
// goes away; Up listens again on the same address.
package testproxy

import (
	"io"
	"net"
	"os"
	"sync"
	"testing"
)

// Proxy forwards connections on Addr to a target while it is up.
type Proxy struct {
	// Network and Addr are where clients connect: "tcp" and host:port, or "unix" and a path.
	Network, Addr string
	target        string
	targetNet     string
	t             testing.TB

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// Start listens on a new address of network ("tcp": a loopback port; "unix": a socket in a
// temporary directory) and forwards to target on targetNetwork until the test ends.
func Start(t testing.TB, network, targetNetwork, target string) *Proxy {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = t.TempDir() + "/proxy.sock"
	}
	p := &Proxy{Network: network, Addr: addr, target: target, targetNet: targetNetwork, t: t, conns: map[net.Conn]bool{}}
	p.Up()
	t.Cleanup(p.Down)
	return p
}

// Up listens (again) on the proxy's address. It fails the test if the address is taken.
func (p *Proxy) Up() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		return
	}
	if p.Network == "unix" {
		_ = os.Remove(p.Addr)
	}
	ln, err := net.Listen(p.Network, p.Addr)
	if err != nil {
		p.t.Fatalf("proxy listen on %s: %v", p.Addr, err)
	}
	p.Addr = ln.Addr().String() // the port chosen for "127.0.0.1:0", kept for the next Up
	p.ln = ln
	p.wg.Add(1)
	go p.accept(ln)
}

// Down stops listening and cuts every connection, and returns once nothing is forwarded.
func (p *Proxy) Down() {
	p.mu.Lock()
	ln := p.ln
	p.ln = nil
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	p.wg.Wait()
}

func (p *Proxy) accept(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return // closed by Down
		}
		up, err := net.Dial(p.targetNet, p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		if !p.track(c, up) {
			return
		}
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

// track records a pair of connections, unless the proxy went down meanwhile.
func (p *Proxy) track(c, up net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		_ = c.Close()
		_ = up.Close()
		return false
	}
	p.conns[c], p.conns[up] = true, true
	return true
}

func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src) // until either side closes, or Down cuts both
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}
