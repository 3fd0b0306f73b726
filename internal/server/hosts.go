package server

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
)

// maxHostWarnings bounds how many distinct refused Host names are logged, so a client
// inventing names cannot fill the log.
const maxHostWarnings = 16

// hostPolicy is the Host allow list that keeps a web page from reaching the API through
// DNS rebinding. Such a page's requests carry the attacker's DNS name as their Host (a
// browser never lets a script set it), so a request is answered when its Host is an IP
// address, localhost, or a name the operator listed; "*" turns the check off.
type hostPolicy struct {
	any   bool
	names map[string]bool

	mu     sync.Mutex
	warned map[string]bool
}

func newHostPolicy(allowed []string) *hostPolicy {
	p := &hostPolicy{names: map[string]bool{}, warned: map[string]bool{}}
	for _, h := range allowed {
		if h == "*" {
			p.any = true
		}
		p.names[normalizeHost(h)] = true
	}
	return p
}

// allows reports whether a request naming host (r.Host: name or address, maybe a port)
// is answered.
func (p *hostPolicy) allows(host string) bool {
	if p.any || host == "" {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = normalizeHost(host)
	if host == "localhost" {
		return true
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return p.names[host]
}

// firstRefusal reports whether host is refused for the first time (of the first
// maxHostWarnings names), so the refusal is logged once per name.
func (p *hostPolicy) firstRefusal(host string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.warned[host] || len(p.warned) >= maxHostWarnings {
		return false
	}
	p.warned[host] = true
	return true
}

// normalizeHost lower-cases a name and drops a final dot and IPv6 brackets.
func normalizeHost(h string) string {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	return strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
}

// checkHost refuses requests whose Host is not allowed with 421 Misdirected Request,
// before anything else runs and without reading their body.
func (s *Server) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.hosts.allows(r.Host) {
			next.ServeHTTP(w, r)
			return
		}
		if host := truncate(r.Host, 100); s.hosts.firstRefusal(host) {
			s.opts.Logger.Warn("request refused: its Host is not in server.allowedHosts",
				"host", host, "path", truncate(r.URL.Path, 100), "remote", r.RemoteAddr)
		}
		refuse(w, r, http.StatusMisdirectedRequest,
			"this host name is not served: add it to server.allowedHosts in the shipwatch config")
	})
}

// refuse answers an error without reading the request's body: the connection is closed
// after the answer, since net/http would otherwise read (up to 256 KiB of) an unread body
// first, to reuse the connection.
func refuse(w http.ResponseWriter, r *http.Request, code int, msg string) {
	if r.ContentLength != 0 {
		w.Header().Set("Connection", "close")
	}
	http.Error(w, msg, code)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
