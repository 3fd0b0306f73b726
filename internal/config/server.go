package config

import (
	"fmt"
	"net/netip"
	"regexp"
)

// Defaults of the server block.
const (
	DefaultMaxConnections           = 256
	DefaultMaxConnectionsPerAddress = 32
)

// Server limits the HTTP server: which Host names it answers, and how many connections it
// holds in all and per client address.
type Server struct {
	// AllowedHosts are the names a request's Host header may carry besides IP addresses and
	// localhost, which are always allowed: the names the daemon is reached by (its public
	// name for webhooks, a reverse proxy that passes the client's Host on). A request naming
	// another host gets 421, so a web page cannot reach the API through DNS rebinding. "*"
	// turns the check off.
	AllowedHosts []string `yaml:"allowedHosts"`
	// MaxConnections bounds the connections held at once; more are refused. Default 256.
	MaxConnections int `yaml:"maxConnections"`
	// MaxConnectionsPerAddress bounds the connections of one client address (an IPv6
	// client's /64); more are refused. Default 32.
	MaxConnectionsPerAddress int `yaml:"maxConnectionsPerAddress"`
}

// hostPattern is a DNS name without scheme, port or path, optionally ending in a dot.
var hostPattern = regexp.MustCompile(`^(?i)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$`)

// applyServerDefaults fills in what the file leaves out; a value written in the file is
// kept, so that 0 is refused rather than silently replaced.
func (c *Config) applyServerDefaults() {
	if !c.has("server.maxConnections") {
		c.Server.MaxConnections = DefaultMaxConnections
	}
	if !c.has("server.maxConnectionsPerAddress") {
		c.Server.MaxConnectionsPerAddress = min(DefaultMaxConnectionsPerAddress, max(c.Server.MaxConnections, 1))
	}
}

func (c *Config) validateServer(add addFunc) {
	s := c.Server
	if s.MaxConnections < 1 {
		add("server.maxConnections", "must be at least 1, not %d", s.MaxConnections)
	}
	switch {
	case s.MaxConnectionsPerAddress < 1:
		add("server.maxConnectionsPerAddress", "must be at least 1, not %d", s.MaxConnectionsPerAddress)
	case s.MaxConnectionsPerAddress > s.MaxConnections && s.MaxConnections >= 1:
		add("server.maxConnectionsPerAddress", "%d is more than server.maxConnections (%d)", s.MaxConnectionsPerAddress, s.MaxConnections)
	}
	for i, h := range s.AllowedHosts {
		if h == "*" {
			continue
		}
		if _, err := netip.ParseAddr(h); err == nil {
			continue
		}
		if len(h) > 253 || !hostPattern.MatchString(h) {
			add(fmt.Sprintf("server.allowedHosts[%d]", i),
				"%q is not a host name: write the name alone, without scheme, port or path (shipwatch.example.com)", h)
		}
	}
}
